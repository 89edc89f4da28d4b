#!/usr/bin/env bash
# The main job on the bundled mamba2-tiny: set up, build, convert -> inspect
# -> generate -> report accuracy against the transformers reference.
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

echo; echo "== convert (Hugging Face bf16 checkpoint -> .ssmq f32 and f16) =="
$ssmq convert "$model" -o out/mamba2-tiny-f32.ssmq --scheme f32
$ssmq convert "$model" -o out/mamba2-tiny-f16.ssmq --scheme f16

echo; echo "== inspect =="
$ssmq inspect out/mamba2-tiny-f32.ssmq

echo; echo "== generate (greedy, 48 tokens) =="
$ssmq run out/mamba2-tiny-f32.ssmq -p $'ROMEO:\n' -n 48 --greedy

echo; echo "== accuracy against transformers (reference logits, perplexity 73.9905) =="
$ssmq eval out/mamba2-tiny-f32.ssmq --ref "$ref/ref.safetensors"
echo -n "f32: "; $ssmq eval out/mamba2-tiny-f32.ssmq --text "$text"
echo -n "f16: "; $ssmq eval out/mamba2-tiny-f16.ssmq --text "$text"
