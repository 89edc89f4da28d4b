#!/usr/bin/env bash
# Installs a build of ssmq into a temporary prefix, builds examples/ against
# the installed package twice (CMake find_package(ssmq) and pkg-config), runs
# both on a fixture model and checks that their greedy ids equal those of
# `ssmq run --greedy --json` for the same file and prompt.
#   bash scripts/test_capi_example.sh [BUILD_DIR]     (default: build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
ssmq="$build/ssmq"
[[ -x "$ssmq" ]] || { echo "no ssmq binary in $build (build it first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"

cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/ssmq.h"

# 1. CMake package
cmake -S examples -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/cmake-build" >/dev/null
# 2. pkg-config
libdir=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$(ls -d "$prefix"/lib/*/pkgconfig 2>/dev/null | tr '\n' ':')" \
         pkg-config --variable=libdir ssmq)
flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$(ls -d "$prefix"/lib/*/pkgconfig 2>/dev/null | tr '\n' ':')" \
        pkg-config --cflags --libs ssmq)
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -o "$tmp/greedy-pc" examples/greedy.c $flags -Wl,-rpath,"$libdir"

prompt=$'ROMEO:\n'
n_new=24
status=0
for name in mamba1-tiny mamba2-tiny; do
  model="$tmp/$name.ssmq"
  "$ssmq" convert "tests/fixtures/models/$name" -o "$model" >/dev/null
  want=$("$ssmq" run "$model" -p "$prompt" -n "$n_new" --greedy --json |
         sed -E 's/.*"ids":\[([-0-9,]*)\].*/\1/' | tr ',' ' ')
  for exe in "$tmp/cmake-build/ssmq_greedy" "$tmp/greedy-pc"; do
    got=$("$exe" "$model" "$prompt" "$n_new")
    if [[ "$got" == "$want" ]]; then
      echo "ok: $(basename "$exe") $name: $got"
    else
      echo "MISMATCH: $(basename "$exe") $name" >&2
      echo "  C API: $got" >&2
      echo "  CLI:   $want" >&2
      status=1
    fi
  done
done
exit $status
