#!/usr/bin/env bash
# The main job on the bundled mamba2-tiny: set up, build, convert -> inspect
# -> generate -> report accuracy against the transformers reference, with
# quantized files beside the float one: weight-only (w8a16, w4a16) and the
# integer weight+activation schemes (w8a8, w4a8; calibrated on the train split).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target ssmq
ssmq=build/release/ssmq
model=tests/fixtures/models/mamba2-tiny
ref=tests/fixtures/reference/mamba2-tiny
text=tests/fixtures/data/tinyshakespeare.txt
mkdir -p out

echo; echo "== convert (Hugging Face bf16 checkpoint -> .ssmq) =="
$ssmq convert "$model" -o out/mamba2-tiny-f32.ssmq --scheme f32
$ssmq convert "$model" -o out/mamba2-tiny-f16.ssmq --scheme f16
$ssmq convert "$model" -o out/mamba2-tiny-w8a16.ssmq --scheme w8a16
$ssmq convert "$model" -o out/mamba2-tiny-w4a16.ssmq --scheme w4a16
$ssmq convert "$model" -o out/mamba2-tiny-w8a8.ssmq --scheme w8a8 --calib "$text"
$ssmq convert "$model" -o out/mamba2-tiny-w4a8.ssmq --scheme w4a8 --calib "$text"

echo; echo "== inspect =="
$ssmq inspect out/mamba2-tiny-w8a8.ssmq
$ssmq inspect out/mamba2-tiny-w8a8.ssmq --validate

echo; echo "== generate (greedy, 48 tokens; the transformers reference continues identically) =="
$ssmq run out/mamba2-tiny-f32.ssmq -p $'ROMEO:\n' -n 48 --greedy
echo "-- w8a8 (int8 weights and activations, int8 SSM state):"
$ssmq run out/mamba2-tiny-w8a8.ssmq -p $'ROMEO:\n' -n 48 --greedy

echo; echo "== accuracy =="
echo "logits against transformers (max_abs_diff, top1_agreement):"
$ssmq eval out/mamba2-tiny-f32.ssmq --ref "$ref/ref.safetensors"
echo "validation perplexity (transformers reference: 73.9905):"
for scheme in f32 f16 w8a16 w4a16 w8a8 w4a8; do
  printf '%-6s %8s bytes  ' "$scheme" "$(stat -c %s out/mamba2-tiny-$scheme.ssmq)"
  $ssmq eval out/mamba2-tiny-$scheme.ssmq --text "$text"
done
echo; echo "== round trip of w8a8 against the float file (ssmq validate) =="
$ssmq validate out/mamba2-tiny-w8a8.ssmq --against out/mamba2-tiny-f32.ssmq --text "$text" --ppl-windows 40
