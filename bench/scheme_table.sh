#!/usr/bin/env bash
# Speed of every scheme at real model shapes: for each preset, synthesize a
# checkpoint with random weights (`ssmq synth`), convert it to each scheme,
# run `ssmq bench --json` with 1 and 2 threads (one process per run: peak RSS
# is per process), and write ONE markdown table for the run with the machine
# description and the ratios to our own f16 file of the same preset and
# thread count in the same run.
#
#   bash bench/scheme_table.sh [options]
#     --presets "LIST"     synth presets (default "mamba-370m mamba2-370m"); an entry
#                          that is a directory is used as the checkpoint as is
#                          (e.g. tests/fixtures/models/mamba1-tiny)
#     --all-sizes          presets = 130m, 370m, 790m/780m, 1.4b/1.3b of both architectures
#     --schemes "LIST"     default "f16 w8a16 w8a8 w4a16 w4a8"
#     --threads "LIST"     default "1 2"
#     --prompt-len P --gen-len G --batch B --reps R   passed to ssmq bench (512, 64, 1, 1)
#     --calib-samples N --calib-seqlen L   A8 calibration windows (default 4 x 128 tokens of
#                          tests/fixtures/data/tinyshakespeare.txt: scales only; the
#                          weights are random, so accuracy means nothing here)
#     --layers N           override the presets' layer count (quick trial runs)
#     --build DIR          where ssmq is (default build/release)
#     --work DIR           big temporary files (default /tmp/ssmq-bench; never the repo)
#     --out FILE           the table (default bench/results/scheme_table.md)
#     --keep               keep the converted files in --work (checkpoints are always kept
#                          and reused: synth is deterministic for a seed)
set -euo pipefail
cd "$(dirname "$0")/.."

PRESETS="mamba-370m mamba2-370m"
SCHEMES="f16 w8a16 w8a8 w4a16 w4a8"
THREADS="1 2"
PROMPT_LEN=512 GEN_LEN=64 BATCH=1 REPS=1
CALIB_SAMPLES=4 CALIB_SEQLEN=128
LAYERS=""
BUILD=build/release
WORK=/tmp/ssmq-bench
OUT=bench/results/scheme_table.md
KEEP=0
TEXT=tests/fixtures/data/tinyshakespeare.txt

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --presets) PRESETS=$2; shift 2 ;;
    --all-sizes) PRESETS="mamba-130m mamba-370m mamba-790m mamba-1.4b mamba2-130m mamba2-370m mamba2-780m mamba2-1.3b"; shift ;;
    --schemes) SCHEMES=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --prompt-len) PROMPT_LEN=$2; shift 2 ;;
    --gen-len) GEN_LEN=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --calib-samples) CALIB_SAMPLES=$2; shift 2 ;;
    --calib-seqlen) CALIB_SEQLEN=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "scheme_table.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

SSMQ="$BUILD/ssmq"
[ -x "$SSMQ" ] || { echo "scheme_table.sh: no $SSMQ (build first, or --build DIR)" >&2; exit 1; }
case "$(realpath -m "$WORK")/" in
  "$(realpath .)"/*) echo "scheme_table.sh: --work must be outside the repository" >&2; exit 1 ;;
esac
mkdir -p "$WORK/json" "$(dirname "$OUT")"
RUN="$WORK/json/run-$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$RUN"
log() { echo "[scheme_table $(date +%H:%M:%S)] $*" >&2; }

# ---- the machine, and the read bandwidth per thread count (measured once, the
#      same figure for every row's roofline) ----
{
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "nproc=$(nproc)"
  echo "mem_bytes=$(awk '/MemTotal/ {printf "%.0f", $2 * 1024}' /proc/meminfo)"
  echo "date=$(date -u +%Y-%m-%d)"
  echo "commit=$(git describe --always --dirty 2>/dev/null || echo unknown)"
  echo "binary=$(date -u -r "$SSMQ" '+%Y-%m-%d %H:%M UTC')"
  echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RUN/machine.txt"
for t in $THREADS; do
  log "memory bandwidth, $t thread(s)"
  "$SSMQ" bench --membw-only --threads "$t" --json > "$RUN/membw-t$t.json"
done

# ---- per preset: checkpoint, conversions, benches ----
for preset in $PRESETS; do
  if [ -d "$preset" ]; then
    hf=$preset
    name=$(basename "$preset")
  else
    name=$preset
    hf="$WORK/$preset${LAYERS:+-l$LAYERS}-hf"
    if [ ! -f "$hf/config.json" ]; then
      log "synth $preset -> $hf"
      "$SSMQ" synth --preset "$preset" -o "$hf" --force ${LAYERS:+--layers "$LAYERS"} >&2
    fi
  fi
  for scheme in $SCHEMES; do
    file="$WORK/$name${LAYERS:+-l$LAYERS}-$scheme.ssmq"
    calib=()
    case "$scheme" in
      *a8) calib=(--calib "$TEXT" --calib-samples "$CALIB_SAMPLES" --calib-seqlen "$CALIB_SEQLEN") ;;
    esac
    log "convert $name -> $scheme"
    t0=$(date +%s.%N)
    "$SSMQ" convert "$hf" -o "$file" --scheme "$scheme" "${calib[@]}" > /dev/null
    t1=$(date +%s.%N)
    echo "$t0 $t1" > "$RUN/convert-$name-$scheme.txt"
    for t in $THREADS; do
      bw=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["read_best_bytes_per_s"] / 1e9)' "$RUN/membw-t$t.json")
      log "bench $name $scheme, $t thread(s)"
      cut -d' ' -f1 /proc/loadavg > "$RUN/load-$name-$scheme-t$t.txt"
      "$SSMQ" bench "$file" --threads "$t" --prompt-len "$PROMPT_LEN" --gen-len "$GEN_LEN" \
        --batch "$BATCH" --reps "$REPS" --bandwidth "$bw" --json > "$RUN/bench-$name-$scheme-t$t.json"
    done
    [ "$KEEP" = 1 ] || rm -f "$file"
  done
done

# ---- the table ----
python3 - "$RUN" "$OUT" "$PRESETS" "$SCHEMES" "$THREADS" "$PROMPT_LEN" "$GEN_LEN" "$BATCH" "$REPS" \
  "$CALIB_SAMPLES" "$CALIB_SEQLEN" "$LAYERS" <<'EOF'
import json, os, sys
run, out, presets, schemes, threads, P, G, B, R, cs, cl, layers = sys.argv[1:]
machine = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(run, "machine.txt")))
schemes, threads = schemes.split(), threads.split()
names = [os.path.basename(p) if os.path.isdir(p) else p for p in presets.split()]

def load(path):
    return json.load(open(path)) if os.path.exists(path) else None

def mib(b): return f"{b / 2**20:,.1f} MiB"
def loadavg(name, s, t):
    p = os.path.join(run, f"load-{name}-{s}-t{t}.txt")
    return open(p).read().strip() if os.path.exists(p) else "—"
def ratio(a, b): return f"{a / b:.2f}×" if a and b else "—"

lines = []
w = lines.append
w("# Speed of every scheme (`bash bench/scheme_table.sh`)")
w("")
w(f"Machine: {machine['cpu']}, {machine['nproc']} cores, {int(machine['mem_bytes']) / 2**30:.1f} GiB memory; "
  f"{machine['date']}, source tree {machine['commit']} (`ssmq` built {machine['binary']}), "
  f"load average at start {machine['load']}.")
bws = []
for t in threads:
    m = load(os.path.join(run, f"membw-t{t}.json"))
    bws.append(f"{t} thread(s): read {m['read_best_bytes_per_s'] / 1e9:.2f} GB/s "
               f"(median {m['read_median_bytes_per_s'] / 1e9:.2f}), copy {m['copy_best_bytes_per_s'] / 1e9:.2f}, "
               f"triad {m['triad_best_bytes_per_s'] / 1e9:.2f}")
w(f"Measured memory bandwidth (`ssmq bench --membw-only`, {m['buffer_bytes'] / 2**20:.0f} MiB buffer, "
  f"LLC {m['llc_bytes'] / 2**20:.0f} MiB, {m['isa']} loads, best of {m['passes']}): " + "; ".join(bws) + ".")
w("")
w(f"Each row is one `ssmq bench FILE --threads T --prompt-len {P} --gen-len {G} --batch {B} --reps {R} --json` "
  "process on a checkpoint with random weights from `ssmq synth` at the preset's published shape"
  + (f" (cut to {layers} layers)" if layers else "") + ". "
  "load = open + Runtime::Create; prefill = batch × prompt tokens / s (the prompt as `ssmq bench` "
  "runs it, after one untimed warm-up prefill); decode = batch × gen steps / s after one untimed warm-up step; peak RSS = VmHWM of the "
  "process. roofline = decode tok/s over "
  "batch × read bandwidth (best, same thread count) / bytes one step streams (weights in their stored type "
  "+ one embedding row per sequence + the recurrent state read and written). "
  f"w8a8/w4a8 calibrated on {cs} windows of {cl} tokens of tinyshakespeare (scales only: with random "
  "weights, accuracy means nothing here). Ratios: to our f16 file of the same preset and thread count, this run. "
  f"load: the 1-minute load average when the row's process started ({machine['nproc']} cores; other jobs on the "
  "machine slow every row, and the multi-threaded rows most: a descheduled thread stalls each barrier).")
w("")
w("| preset | scheme | threads | file size | load ms | prefill tok/s | decode tok/s | peak RSS | roofline % | decode × f16 | prefill × f16 | RSS × f16 | load |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
missing = []
for name in names:
    for t in threads:
        base = load(os.path.join(run, f"bench-{name}-f16-t{t}.json"))
        for s in schemes:
            j = load(os.path.join(run, f"bench-{name}-{s}-t{t}.json"))
            if j is None:
                missing.append(f"{name} {s} t{t}")
                continue
            b = base or {}
            w(f"| {name} | {s} | {t} | {mib(j['file_bytes'])} | {j['load_ms']:.0f} | "
              f"{j['prefill_tokens_per_s']:.1f} | {j['decode_tokens_per_s']:.2f} | {mib(j['peak_rss_bytes'])} | "
              f"{100 * j['roofline_fraction']:.0f}% | "
              f"{ratio(j['decode_tokens_per_s'], b.get('decode_tokens_per_s'))} | "
              f"{ratio(j['prefill_tokens_per_s'], b.get('prefill_tokens_per_s'))} | "
              f"{ratio(j['peak_rss_bytes'], b.get('peak_rss_bytes'))} | {loadavg(name, s, t)} |")
w("")
w("Bytes one decode step streams (batch " + B + "), per preset and scheme: weights + state = total "
  "(the roofline's numerator; `weight_bytes_per_token` + `state_bytes_per_token` of `ssmq bench --json`).")
w("")
w("| preset | scheme | weights | state | total |")
w("|---|---|---|---|---|")
for name in names:
    for s in schemes:
        j = load(os.path.join(run, f"bench-{name}-{s}-t{threads[0]}.json"))
        if j:
            wb, sb = j["weight_bytes_per_token"], j["state_bytes_per_token"]
            w(f"| {name} | {s} | {mib(wb)} | {mib(sb)} | {mib(wb + sb)} |")
if missing:
    w("")
    w("Missing runs: " + ", ".join(missing))
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
log "wrote $OUT (raw JSON: $RUN)"
