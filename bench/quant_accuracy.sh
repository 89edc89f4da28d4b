#!/usr/bin/env bash
# Perplexity of every quantization scheme and of the w8a8 recipe ablation on
# the bundled fixture models, against each model's own f32 file, measured the
# same way (val split of the fixture text, windows of 256, fixtures' convention).
# Calibration uses the train split only (convert --calib takes the first 90%).
#
#   bash bench/quant_accuracy.sh [BUILD_DIR] [OUT_MD]
# Writes a markdown table to OUT_MD (default bench/results/quant_accuracy.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
OUT=${2:-bench/results/quant_accuracy.md}
SSMQ="$BUILD/ssmq"
TEXT=tests/fixtures/data/tinyshakespeare.txt
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ppl() { "$SSMQ" eval "$1" --text "$TEXT" --json | sed -E 's/.*"perplexity":([0-9.]+).*/\1/'; }
size() { stat -c %s "$1"; }

{
echo "# Quantization accuracy (val perplexity, fixtures' convention)"
echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
echo
for model in mamba1-tiny mamba2-tiny; do
  SRC=tests/fixtures/models/$model
  "$SSMQ" convert "$SRC" -o "$TMP/f32.ssmq" --scheme f32 >/dev/null
  "$SSMQ" convert "$SRC" -o "$TMP/f16.ssmq" --scheme f16 >/dev/null
  base=$(ppl "$TMP/f32.ssmq"); f16=$(size "$TMP/f16.ssmq")
  echo "## $model (f32 perplexity $base)"
  echo
  echo "| scheme (default recipe) | perplexity | change vs f32 | file / f16 | convert s |"
  echo "|---|---|---|---|---|"
  schemes=(f16 w8a16 w4a16 w8a8 w4a8 "w8a8 --recipe quamba" "w4a8 --recipe quamba")
  if "$SSMQ" convert --help | grep -q -- --gptq; then
    schemes+=("w4a16 --gptq" "w4a8 --gptq")
  fi
  for scheme in "${schemes[@]}"; do
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$SSMQ" convert "$SRC" -o "$TMP/q.ssmq" --scheme $scheme --calib "$TEXT" >/dev/null
    t1=$(date +%s.%N)
    p=$(ppl "$TMP/q.ssmq")
    awk -v s="$scheme" -v p="$p" -v b="$base" -v z="$(size "$TMP/q.ssmq")" -v f="$f16" -v t0="$t0" -v t1="$t1" \
      'BEGIN { printf "| %s | %.4f | %+.2f%% | %.3f | %.1f |\n", s, p, (p / b - 1) * 100, z / f, t1 - t0 }'
  done
  echo
  echo "w8a8 ablation (each row adds components to the previous one):"
  echo
  echo "| w8a8 recipe | perplexity | change vs f32 |"
  echo "|---|---|---|"
  rows=("naive per-tensor min-max|--recipe naive"
        "+ percentile clip of x (and state)|--recipe naive --enable percentile"
        "+ Hadamard (residual rotation + online out_proj input)|--recipe naive --enable percentile,rotate-residual,hadamard")
  if [ "$model" = mamba2-tiny ]; then
    rows+=("+ reorder and x clusters (Quamba2)|--recipe naive --enable percentile,rotate-residual,hadamard,reorder,x-groups"
           "+ per-group B/C (Quamba2)|--recipe naive --enable percentile,rotate-residual,hadamard,reorder,x-groups,group-bc")
  fi
  rows+=("faithful Quamba (--recipe quamba, int8 conv/A_log)|--recipe quamba"
         "ours without the per-token out_proj input scale (--recipe ssmq --disable out-proj-dynamic)|--recipe ssmq --disable out-proj-dynamic"
         "ours + online Hadamard (--recipe ssmq --enable hadamard)|--recipe ssmq --enable hadamard"
         "ours (--recipe ssmq, default: per-token out_proj input, segment scales, no rotations)|--recipe ssmq")
  for row in "${rows[@]}"; do
    label=${row%%|*}; flags=${row#*|}
    # shellcheck disable=SC2086
    "$SSMQ" convert "$SRC" -o "$TMP/a.ssmq" --scheme w8a8 --calib "$TEXT" $flags >/dev/null
    p=$(ppl "$TMP/a.ssmq")
    awk -v l="$label" -v p="$p" -v b="$base" 'BEGIN { printf "| %s | %.4f | %+.2f%% |\n", l, p, (p / b - 1) * 100 }'
  done
  echo
done
} | tee "$OUT"
