#!/usr/bin/env bash
# ssmq against llama.cpp at real Mamba shapes (random weights from `ssmq synth`).
#
#   bash bench/llamacpp_side_by_side.sh LLAMA_BUILD_DIR [options]
#
# LLAMA_BUILD_DIR is a llama.cpp build directory holding bin/llama-bench (built
# separately; nothing of llama.cpp lives in this repository). Per preset:
#   ssmq synth -> ssmq convert to f16 / w8a8 / w4a8 / w4a16 .ssmq
#   -> ssmq export of the f16 file to GGUF F16 / Q8_0 / Q4_0
#   -> R rounds, each: llama-bench -p P -n G -t T -r 1 -o json on each GGUF, then
#      ssmq bench FILE --prompt-len P --gen-len G --threads T --reps 1 --json on each .ssmq
# and appends one markdown table (ours f16 vs llama F16, w8a8 vs Q8_0, w4a8 and
# w4a16 vs Q4_0, and f16 / w4a16 again with --f16-state; prefill and decode
# tokens/s, medians over the rounds, and the ratio ours/llama) to
# bench/results/llamacpp_side_by_side.md. The rounds interleave the two
# programs so that both see the same minutes of a shared machine, whose speed
# drifts by ±20% over a few minutes: R repetitions of one program followed by
# R of the other compared two different machines.
#
# Options:
#   --presets "mamba-370m mamba2-370m"   ssmq synth presets (ssmq synth --help lists them)
#   --threads 2 --prompt-len 512 --gen-len 64 --reps 3   (--reps: interleaved rounds)
#   --work DIR          where the model files go (default /tmp; ~3.5 GB per 370m preset)
#   --ssmq PATH         the ssmq binary (default build/release/ssmq)
#   --calib FILE        calibration text of the A8 conversions (default tests/fixtures/data/tinyshakespeare.txt)
#   --calib-samples 4 --calib-seqlen 256
#   --seed 0            ssmq synth seed
#   --gguf-from ssmq    how the Q8_0 / Q4_0 GGUF files are made: ssmq (`ssmq export --type q8_0|q4_0`,
#                       every matmul weight in that type) or llama-quantize (llama.cpp's own tool on
#                       our F16 GGUF; its Q4_0 keeps the tied embedding / LM head at Q6_K)
#   --out FILE          results file (default bench/results/llamacpp_side_by_side.md)
#   --reuse             keep model files already in --work (default: write them again)
#   --keep              leave the model files in --work afterwards (default: delete them;
#                       the JSON and logs of each run stay in WORK/ssmq_side_by_side/PRESET)
# Environment: LLAMA_COMMIT names llama.cpp's commit when its source tree has no .git.
set -euo pipefail

usage() { sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLAMA_BUILD=""
PRESETS="mamba-370m mamba2-370m"
THREADS=2
PROMPT_LEN=512
GEN_LEN=64
REPS=3
WORK=/tmp
SSMQ="$ROOT/build/release/ssmq"
CALIB="$ROOT/tests/fixtures/data/tinyshakespeare.txt"
CALIB_SAMPLES=4
CALIB_SEQLEN=256
SEED=0
GGUF_FROM=ssmq
OUT="$ROOT/bench/results/llamacpp_side_by_side.md"
REUSE=0
KEEP=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --presets) PRESETS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --prompt-len) PROMPT_LEN="$2"; shift 2 ;;
    --gen-len) GEN_LEN="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --ssmq) SSMQ="$2"; shift 2 ;;
    --calib) CALIB="$2"; shift 2 ;;
    --calib-samples) CALIB_SAMPLES="$2"; shift 2 ;;
    --calib-seqlen) CALIB_SEQLEN="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --gguf-from) GGUF_FROM="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --reuse) REUSE=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "unknown option $1" >&2; usage 2 >&2 ;;
    *) [[ -z "$LLAMA_BUILD" ]] || { echo "more than one llama.cpp build dir given" >&2; exit 2; }
       LLAMA_BUILD="$1"; shift ;;
  esac
done

[[ -n "$LLAMA_BUILD" ]] || { echo "usage: $0 LLAMA_BUILD_DIR [options] (--help)" >&2; exit 2; }
LLAMA_BENCH="$LLAMA_BUILD/bin/llama-bench"
[[ -x "$LLAMA_BENCH" ]] || { echo "no executable $LLAMA_BENCH" >&2; exit 1; }
[[ -x "$SSMQ" ]] || { echo "no ssmq binary at $SSMQ (build it, or pass --ssmq)" >&2; exit 1; }
[[ -f "$CALIB" ]] || { echo "no calibration text $CALIB" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to read the JSON" >&2; exit 1; }
case "$GGUF_FROM" in
  ssmq) ;;
  llama-quantize) [[ -x "$LLAMA_BUILD/bin/llama-quantize" ]] ||
                    { echo "no executable $LLAMA_BUILD/bin/llama-quantize" >&2; exit 1; } ;;
  *) echo "--gguf-from must be ssmq or llama-quantize" >&2; exit 2 ;;
esac
GGUF_SUFFIX=""  # Q8_0/Q4_0 file names: q4_0.gguf from ssmq export, q4_0-lq.gguf from llama-quantize
[[ $GGUF_FROM == ssmq ]] || GGUF_SUFFIX="-lq"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

RUN_DIR="$WORK/ssmq_side_by_side"
mkdir -p "$RUN_DIR"
log() { echo "[side-by-side $(date +%H:%M:%S)] $*" >&2; }

# Runs "$@" unless $1 (an output path) exists and --reuse was given.
make_file() {
  local out="$1"; shift
  if [[ $REUSE == 1 && -e "$out" ]]; then log "reusing $out"; return 0; fi
  log "$*"
  "$@" >&2
}

# llama.cpp's commit: its source tree (from the build's CMakeCache) or llama-bench's JSON.
LLAMA_SRC="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$LLAMA_BUILD/CMakeCache.txt" 2>/dev/null || true)"
# A source tree exported without .git (git archive) has no commit to read: LLAMA_COMMIT=... names it.
LLAMA_COMMIT="${LLAMA_COMMIT:-$(git -C "${LLAMA_SRC:-/nonexistent}" rev-parse HEAD 2>/dev/null || echo unknown)}"
SSMQ_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  SSMQ_COMMIT="$SSMQ_COMMIT (with uncommitted changes)"
fi

for preset in $PRESETS; do
  d="$RUN_DIR/$preset"
  mkdir -p "$d"
  # 1. checkpoint and .ssmq files
  if [[ $REUSE == 1 && -f "$d/hf/model.safetensors" ]]; then
    log "reusing $d/hf"
  else
    log "ssmq synth $preset"
    "$SSMQ" synth --preset "$preset" --seed "$SEED" --dtype f16 --force -o "$d/hf" >&2
  fi
  make_file "$d/f16.ssmq" "$SSMQ" convert "$d/hf" -o "$d/f16.ssmq" --scheme f16
  for scheme in w8a8 w4a8; do
    make_file "$d/$scheme.ssmq" "$SSMQ" convert "$d/f16.ssmq" -o "$d/$scheme.ssmq" --scheme "$scheme" \
      --calib "$CALIB" --calib-samples "$CALIB_SAMPLES" --calib-seqlen "$CALIB_SEQLEN"
  done
  make_file "$d/w4a16.ssmq" "$SSMQ" convert "$d/f16.ssmq" -o "$d/w4a16.ssmq" --scheme w4a16
  # 2. GGUF files from our f16 file
  make_file "$d/f16.gguf" "$SSMQ" export "$d/f16.ssmq" --to gguf --type f16 -o "$d/f16.gguf"
  for t in q8_0 q4_0; do
    if [[ $GGUF_FROM == ssmq ]]; then
      make_file "$d/$t.gguf" "$SSMQ" export "$d/f16.ssmq" --to gguf --type "$t" -o "$d/$t.gguf"
    else
      make_file "$d/$t$GGUF_SUFFIX.gguf" "$LLAMA_BUILD/bin/llama-quantize" "$d/f16.gguf" "$d/$t$GGUF_SUFFIX.gguf" \
        "${t^^}" "$THREADS"
    fi
  done
  # 3. R interleaved rounds: llama.cpp's three files, then our six runs.
  for ((round = 1; round <= REPS; round++)); do
    for t in f16 q8_0 q4_0; do
      log "round $round/$REPS: llama-bench $preset $t"
      g="$d/$t.gguf"
      [[ $t == f16 ]] || g="$d/$t$GGUF_SUFFIX.gguf"
      if ! "$LLAMA_BENCH" -m "$g" -p "$PROMPT_LEN" -n "$GEN_LEN" -t "$THREADS" -r 1 -o json \
          > "$d/llama_${t}_r$round.json" 2> "$d/llama_${t}_r$round.log"; then
        log "llama-bench failed on $g (see $d/llama_${t}_r$round.log)"
        echo "[]" > "$d/llama_${t}_r$round.json"
      fi
    done
    # ours; the float-state models again with the state kept in f16 (--f16-state)
    for run in f16 w8a8 w4a8 w4a16 f16_f16state w4a16_f16state; do
      s="${run%_f16state}"
      extra=()
      [[ $run == *_f16state ]] && extra=(--f16-state)
      log "round $round/$REPS: ssmq bench $preset $s ${extra[*]}"
      if ! "$SSMQ" bench "$d/$s.ssmq" --prompt-len "$PROMPT_LEN" --gen-len "$GEN_LEN" --threads "$THREADS" \
          --reps 1 "${extra[@]}" --json > "$d/ours_${run}_r$round.json" 2> "$d/ours_${run}_r$round.log"; then
        log "ssmq bench failed on $d/$s.ssmq ${extra[*]} (see $d/ours_${run}_r$round.log)"
        echo "{}" > "$d/ours_${run}_r$round.json"
      fi
    done
  done
done

# 5. the table
MACHINE_CPU="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
MACHINE_FLAGS="$(lscpu 2>/dev/null | grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|amx_int8' | sort -u | paste -sd' ')"
MACHINE_MEM="$(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')"
LOAD="$LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?') at the end"
export PRESETS THREADS PROMPT_LEN GEN_LEN REPS RUN_DIR LLAMA_COMMIT SSMQ_COMMIT CALIB CALIB_SAMPLES CALIB_SEQLEN SEED
export GGUF_FROM GGUF_SUFFIX LOAD
export MACHINE="${MACHINE_CPU:-unknown CPU}, $(nproc) cores visible (nproc), ${MACHINE_MEM:-? GiB} RAM, flags: ${MACHINE_FLAGS:-?}, $(uname -sr)"
mkdir -p "$(dirname "$OUT")"
python3 - >> "$OUT" <<'PY'
import json, os, datetime

run_dir = os.environ["RUN_DIR"]
def load(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default

import statistics

reps = int(os.environ["REPS"])

def llama(preset, t):
    """Median and spread over the rounds of llama-bench's pp and tg tokens/s."""
    pp, tg, commit = [], [], None
    for r in range(1, reps + 1):
        rows = load(f"{run_dir}/{preset}/llama_{t}_r{r}.json", [])
        for row in rows:
            commit = commit or row.get("build_commit")
            if row.get("n_prompt", 0) > 0 and row.get("n_gen", 0) == 0:
                pp.append(row["avg_ts"])
            if row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0:
                tg.append(row["avg_ts"])
    def ts(v):
        return (statistics.median(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else None
    return ts(pp), ts(tg), commit

def ours(preset, run):
    """Medians over the rounds of our prefill / decode tokens/s and roofline fraction."""
    rows = [load(f"{run_dir}/{preset}/ours_{run}_r{r}.json", {}) for r in range(1, reps + 1)]
    def med(key):
        v = [o[key] for o in rows if isinstance(o.get(key), (int, float))]
        return statistics.median(v) if v else None
    return med("prefill_tokens_per_s"), med("decode_tokens_per_s"), med("roofline_fraction")

def size_mb(path):
    try:
        return os.path.getsize(path) / 1e6
    except OSError:
        return None

def fmt(v, sd=None):
    if v is None:
        return "n/a"
    return f"{v:.1f} ± {sd:.1f}" if sd else f"{v:.1f}"

def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"

presets = os.environ["PRESETS"].split()
# (our results file, our model file, GGUF type, llama.cpp label, our label)
pairs = [("f16", "f16", "f16", "F16", "f16"), ("w8a8", "w8a8", "q8_0", "Q8_0", "w8a8"),
         ("w4a8", "w4a8", "q4_0", "Q4_0", "w4a8"), ("w4a16", "w4a16", "q4_0", "Q4_0", "w4a16"),
         ("f16_f16state", "f16", "f16", "F16", "f16, f16 state"),
         ("w4a16_f16state", "w4a16", "q4_0", "Q4_0", "w4a16, f16 state")]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"\n## Run of {now}\n")
print(f"- machine: {os.environ['MACHINE']}; load average (1/5/15 min) {os.environ['LOAD']}")
print(f"- llama.cpp commit: {os.environ['LLAMA_COMMIT']}; ssmq commit: {os.environ['SSMQ_COMMIT']}")
print(f"- prompt {os.environ['PROMPT_LEN']} tokens, {os.environ['GEN_LEN']} decoded tokens, "
      f"{os.environ['THREADS']} threads, {os.environ['REPS']} interleaved rounds (llama.cpp's 3 files, "
      f"then our 6 runs, one repetition each); batch 1")
print(f"- models: `ssmq synth --seed {os.environ['SEED']}` (random weights, published shapes, f16); "
      f"GGUF F16 from `ssmq export` of our f16 file, Q8_0/Q4_0 from "
      f"{'`ssmq export --type q8_0|q4_0`' if os.environ['GGUF_FROM'] == 'ssmq' else '`llama-quantize` of that F16 GGUF'}; "
      f"A8 calibration: "
      f"{os.path.basename(os.environ['CALIB'])}, {os.environ['CALIB_SAMPLES']} windows x {os.environ['CALIB_SEQLEN']} tokens")
print("- llama.cpp: `llama-bench` pp/tg tokens/s, median ± stddev over the rounds; ours: `ssmq bench` "
      "prefill/decode tokens/s and roofline fraction, medians over the rounds. Both run one untimed "
      "warm-up prefill and decode step first (llama-bench's default warm-up; ours pages the mapped weights in)")
# The read probe each of our runs took after its decode (the roofline's
# denominator): hosts of one kind differ by 2x here, so the range goes with the table.
probe = [o["bandwidth_bytes_per_s"] / 1e9
         for preset in os.environ["PRESETS"].split()
         for run in ("f16", "w8a8", "w4a8", "w4a16", "f16_f16state", "w4a16_f16state")
         for o in [load(f"{run_dir}/{preset}/ours_{run}_r{r}.json", {}) for r in range(1, reps + 1)]
         if isinstance(o.get("bandwidth_bytes_per_s"), (int, float))]
if probe:
    print(f"- read probe after our runs ({os.environ['THREADS']} threads): "
          f"{min(probe):.1f}-{max(probe):.1f} GB/s, median {statistics.median(probe):.1f}")
print()
print("| preset | ours | llama.cpp | ours MB | llama MB | prefill ours | prefill llama | ratio | "
      "decode ours | decode llama | ratio | ours roofline frac |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for preset in presets:
    for ours_s, ours_file, gguf_t, label, ours_label in pairs:
        pp, tg, _ = llama(preset, gguf_t)
        op, od, rf = ours(preset, ours_s)
        om = size_mb(f"{run_dir}/{preset}/{ours_file}.ssmq")
        lm = size_mb(f"{run_dir}/{preset}/{gguf_t}{'' if gguf_t == 'f16' else os.environ['GGUF_SUFFIX']}.gguf")
        print(f"| {preset} | {ours_label} | {label} | {fmt(om)} | {fmt(lm)} | {fmt(op)} | "
              f"{fmt(*pp) if pp else 'n/a'} | {ratio(op, pp[0] if pp else None)} | {fmt(od)} | "
              f"{fmt(*tg) if tg else 'n/a'} | {ratio(od, tg[0] if tg else None)} | "
              f"{f'{rf:.2f}' if isinstance(rf, (int, float)) else 'n/a'} |")
PY
log "appended a table to $OUT"
tail -n $(( 6 * $(wc -w <<< "$PRESETS") + 2 )) "$OUT"
if [[ $KEEP == 0 ]]; then
  log "removing the model files under $RUN_DIR (pass --keep to leave them); the JSON and logs stay"
  for preset in $PRESETS; do
    rm -rf "${RUN_DIR:?}/$preset/hf" "$RUN_DIR/$preset"/*.ssmq "$RUN_DIR/$preset"/*.gguf
  done
fi
