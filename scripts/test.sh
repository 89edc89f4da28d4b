#!/usr/bin/env bash
# The test command (README, CI): installs dependencies, builds the release
# preset and runs every test, then builds the ASan+UBSan preset and runs the
# tests again under the sanitizers.
#   bash scripts/test.sh           release + asan
#   bash scripts/test.sh release   release only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
presets=("${@:-release asan}")
read -r -a presets <<<"${presets[*]}"
for preset in "${presets[@]}"; do
  echo "=== $preset: configure + build ==="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j2
  echo "=== $preset: tests ==="
  ctest --preset "$preset"
  if [ "$preset" = release ]; then
    echo "=== release: C API example against the installed package ==="
    bash scripts/test_capi_example.sh build/release
  fi
done
