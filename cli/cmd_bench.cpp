// ssmq bench FILE [--prompt-len 512] [--gen-len 64] [--batch 1] [--threads T] [--reps 1]
//                 [--bandwidth GB/s] [--seed S] [--no-warmup] [--json]
// ssmq bench --membw-only [--threads T] [--json]
//
// Throughput of one model in this process: load (open + Runtime::Create),
// prefill of `batch` sequences of `prompt-len` random token ids (after one
// untimed warm-up prefill, as llama-bench does: the first one also pages the
// mapped weights in; its time is reported apart), `gen-len` recurrent steps
// after one untimed warm-up step, peak RSS, and the decode
// roofline: the bytes one step must stream (runtime_cpu/decode_traffic.h)
// over the read bandwidth (runtime_cpu/membw.h, with the same thread count)
// probed right after each repetition's decode; the reported fraction is the
// median over repetitions of each decode against its own probe. Peak RSS is
// taken before the first probe maps its buffer and is per process: run one
// model per invocation.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "cli/command.h"
#include "runtime_cpu/decode_traffic.h"
#include "runtime_cpu/membw.h"
#include "runtime_cpu/runtime.h"

namespace ssmq::cli {
namespace {

struct BenchArgs {
  std::string file;
  int64_t prompt_len = 512;
  int64_t gen_len = 64;
  int64_t batch = 1;
  int threads = 0;
  int reps = 1;
  double bandwidth_gbs = 0;  // > 0: use instead of measuring
  uint64_t seed = 0;
  bool membw_only = false;
  bool f16_state = false;
  bool no_warmup = false;
  bool json = false;
};

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Status CheckArgs(const BenchArgs& a) {
  auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, m); };
  if (a.membw_only) {
    if (!a.file.empty()) return bad("--membw-only takes no FILE");
  } else if (a.file.empty()) {
    return bad("give a model FILE (or --membw-only)");
  }
  if (a.prompt_len < 1) return bad("--prompt-len must be at least 1");
  if (a.gen_len < 1) return bad("--gen-len must be at least 1");
  if (a.batch < 1) return bad("--batch must be at least 1");
  if (a.reps < 1) return bad("--reps must be at least 1");
  if (a.threads < 0) return bad("--threads must be 0 (all cores) or positive");
  if (!(a.bandwidth_gbs >= 0) || !std::isfinite(a.bandwidth_gbs))
    return bad("--bandwidth must be a non-negative number of GB/s");
  return Status::Ok();
}

// Peak resident set of this process in bytes: VmHWM, else ru_maxrss (KiB).
uint64_t PeakRssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

// Bytes of this process's anonymous memory on transparent huge pages
// (AnonHugePages of /proc/self/smaps_rollup; 0 where unknown): the runtime's
// weight arena (runtime_cpu/huge_arena.h) shows here when the kernel gave it
// 2 MiB pages.
uint64_t AnonHugePageBytes() {
  std::ifstream f("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) return std::stoull(line.substr(14)) * 1024;
  }
  return 0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string Mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// "f16", "w4a8", "mixed": quant.scheme when the file records one, else the
// type holding most of the matmul weights.
std::string SchemeOf(const Model& m, const std::map<std::string, uint64_t>& matmul_types) {
  if (const MetaValue* v = m.extra.Find("quant.scheme")) {
    Result<std::string> s = v->AsString();
    if (s.ok()) return *s;
  }
  std::string best;
  uint64_t most = 0;
  for (const auto& [type, bytes] : matmul_types) {
    if (bytes > most) most = bytes, best = type;
  }
  return best;
}

Result<MemoryBandwidth> Bandwidth(int threads, bool copy_and_triad) {
  MembwOptions o;
  o.copy_and_triad = copy_and_triad;
  return MeasureMemoryBandwidth(threads, o);
}

nlohmann::json BandwidthJson(const MemoryBandwidth& bw) {
  return {{"threads", bw.n_threads},
          {"buffer_bytes", bw.buffer_bytes},
          {"passes", bw.passes},
          {"record_passes", bw.record_passes},
          {"isa", bw.isa},
          {"llc_bytes", LastLevelCacheBytes()},
          {"read_best_bytes_per_s", bw.read.best_bytes_per_s},
          {"read_median_bytes_per_s", bw.read.median_bytes_per_s},
          {"copy_best_bytes_per_s", bw.copy.best_bytes_per_s},
          {"copy_median_bytes_per_s", bw.copy.median_bytes_per_s},
          {"triad_best_bytes_per_s", bw.triad.best_bytes_per_s},
          {"triad_median_bytes_per_s", bw.triad.median_bytes_per_s},
          {"seconds", bw.seconds}};
}

Status RunMembwOnly(const BenchArgs& a, int threads) {
  SSMQ_ASSIGN_OR_RETURN(MemoryBandwidth bw, Bandwidth(threads, true));
  if (a.json) {
    std::printf("%s\n", BandwidthJson(bw).dump().c_str());
    return Status::Ok();
  }
  std::printf("memory bandwidth, %d thread(s), %.0f MiB buffer (LLC %.0f MiB), %s loads, "
              "best / median of %d read and %d copy/triad passes (%.1f s):\n",
              bw.n_threads, static_cast<double>(bw.buffer_bytes) / (1 << 20),
              static_cast<double>(LastLevelCacheBytes()) / (1 << 20), bw.isa, bw.passes,
              bw.record_passes, bw.seconds);
  for (const auto& [name, s] : {std::pair{"read", bw.read}, {"copy", bw.copy}, {"triad", bw.triad}})
    std::printf("  %-6s %7.2f / %7.2f GB/s\n", name, s.best_bytes_per_s / 1e9,
                s.median_bytes_per_s / 1e9);
  return Status::Ok();
}

Status RunBench(const BenchArgs& a) {
  SSMQ_RETURN_IF_ERROR(CheckArgs(a));
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  if (a.membw_only) return RunMembwOnly(a, threads);

  // Load: open (mmap; HF directories are imported) + Runtime::Create. Mapped
  // weights are paged in on first use (in the first prefill).
  auto t0 = Clock::now();
  SSMQ_ASSIGN_OR_RETURN(Model model, OpenModel(a.file));
  RuntimeOptions ro;
  ro.n_threads = threads;
  ro.f16_state = a.f16_state;
  SSMQ_ASSIGN_OR_RETURN(auto rt, Runtime::Create(model, ro));
  const double load_ms = 1e3 * Seconds(t0);
  const HParams& hp = rt->hparams();

  std::mt19937_64 rng(a.seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(hp.vocab_size - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(a.batch * a.prompt_len));
  for (int32_t& t : prompt) t = id(rng);
  std::vector<int32_t> gen(static_cast<size_t>(a.batch * (a.gen_len + 1)));
  for (int32_t& t : gen) t = id(rng);

  // The read bandwidth is probed right after each repetition's decode, so
  // each decode is compared with the limit of its own moment: on a shared
  // machine the bandwidth drifts by ±30% between seconds, and one probe
  // taken apart from the runs moved the fraction as much.
  MemoryBandwidth bw;
  std::string bw_source = "given";
  if (a.bandwidth_gbs > 0) {
    bw.n_threads = threads;
    bw.read.best_bytes_per_s = bw.read.median_bytes_per_s = a.bandwidth_gbs * 1e9;
  }
  std::vector<double> prefill_s, decode_s, rep_bandwidth, rep_bandwidth_median;
  std::vector<float> logits;
  uint64_t peak_rss = 0, huge_bytes = 0;
  double warmup_prefill_s = 0;  // 0: --no-warmup
  if (!a.no_warmup) {
    RecurrentState state = rt->NewState(a.batch);
    t0 = Clock::now();
    SSMQ_RETURN_IF_ERROR(rt->PrefillLast(prompt, a.batch, a.prompt_len, state, logits));
    warmup_prefill_s = Seconds(t0);
  }
  for (int r = 0; r < a.reps; ++r) {
    RecurrentState state = rt->NewState(a.batch);
    t0 = Clock::now();
    // Generation's prefill: pieces of Runtime::kPrefillPiece, last-position logits.
    SSMQ_RETURN_IF_ERROR(rt->PrefillLast(prompt, a.batch, a.prompt_len, state, logits));
    prefill_s.push_back(Seconds(t0));
    const auto step = [&](int64_t i) {
      return rt->Step(std::span<const int32_t>(gen).subspan(static_cast<size_t>(i * a.batch),
                                                            static_cast<size_t>(a.batch)),
                      state, logits);
    };
    SSMQ_RETURN_IF_ERROR(step(0));  // warm-up, not timed
    t0 = Clock::now();
    for (int64_t i = 1; i <= a.gen_len; ++i) SSMQ_RETURN_IF_ERROR(step(i));
    decode_s.push_back(Seconds(t0));
    // Before the first probe maps its buffer; later repetitions allocate nothing.
    if (r == 0) peak_rss = PeakRssBytes(), huge_bytes = AnonHugePageBytes();
    if (a.bandwidth_gbs <= 0) {
      SSMQ_ASSIGN_OR_RETURN(bw, Bandwidth(threads, false));
      bw_source = "measured";
    }
    rep_bandwidth.push_back(bw.read.best_bytes_per_s);
    rep_bandwidth_median.push_back(bw.read.median_bytes_per_s);
  }
  const double bandwidth = Median(rep_bandwidth);

  const DecodeTraffic tr = ComputeDecodeTraffic(model, a.batch, a.f16_state);
  const double tokens_prefill = static_cast<double>(a.batch * a.prompt_len);
  const double tokens_decode = static_cast<double>(a.batch * a.gen_len);
  const double prefill_tps = tokens_prefill / Median(prefill_s);
  const double decode_tps = tokens_decode / Median(decode_s);
  const double roofline_tps = tr.RooflineTokensPerSecond(bandwidth);
  // The median over repetitions of (decode rate / roofline of the probe after it).
  std::vector<double> rep_fraction;
  for (int r = 0; r < a.reps; ++r) {
    const double limit = tr.RooflineTokensPerSecond(rep_bandwidth[r]);
    rep_fraction.push_back(limit > 0 ? tokens_decode / decode_s[r] / limit : 0.0);
  }
  const double fraction = Median(rep_fraction);
  // A step whose bytes fit in the last-level cache is not bound by DRAM: the
  // fraction can then exceed 1 (the tiny fixtures).
  const uint64_t llc = LastLevelCacheBytes();
  const bool fits_in_llc = llc > 0 && tr.total_bytes() <= llc;

  std::map<std::string, uint64_t> type_bytes, matmul_types;
  for (const ModelTensor& t : model.tensors()) {
    const std::string type(TensorTypeName(t.type));
    type_bytes[type] += t.data.size();
    if (t.name.ends_with("ssm_in.weight") || t.name.ends_with("ssm_out.weight"))
      matmul_types[type] += t.data.size();
  }
  const std::string scheme = SchemeOf(model, matmul_types);
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::is_regular_file(a.file, ec)
                                  ? std::filesystem::file_size(a.file, ec)
                                  : 0;

  if (a.json) {
    nlohmann::json j;
    j["load_ms"] = load_ms;
    j["prefill_tokens_per_s"] = prefill_tps;
    j["warmup_prefill_seconds"] = warmup_prefill_s;
    j["decode_tokens_per_s"] = decode_tps;
    j["peak_rss_bytes"] = peak_rss;
    j["anon_huge_page_bytes"] = huge_bytes;
    j["roofline_fraction"] = fraction;
    j["f16_state"] = a.f16_state;
    j["file"] = a.file;
    j["file_bytes"] = file_bytes;
    j["arch"] = ArchName(hp.arch);
    j["n_layer"] = hp.n_layer;
    j["d_model"] = hp.d_model;
    j["vocab_size"] = hp.vocab_size;
    j["scheme"] = scheme;
    j["tensor_type_bytes"] = type_bytes;
    j["threads"] = threads;
    j["batch"] = a.batch;
    j["prompt_len"] = a.prompt_len;
    j["gen_len"] = a.gen_len;
    j["reps"] = a.reps;
    j["seed"] = a.seed;
    j["prefill_seconds"] = prefill_s;
    j["decode_seconds"] = decode_s;
    j["weight_bytes_per_token"] = tr.weight_bytes;
    j["state_bytes_per_token"] = tr.state_bytes;
    j["weight_bytes_parts"] = {{"layer_matmul", tr.layer_matmul_bytes},
                               {"layer_small", tr.layer_small_bytes},
                               {"output_norm", tr.output_norm_bytes},
                               {"lm_head", tr.lm_head_bytes},
                               {"embedding_rows", tr.embedding_rows_bytes}};
    j["state_bytes_parts"] = {{"ssm", tr.ssm_state_bytes}, {"conv", tr.conv_state_bytes},
                              {"int8_state_layers", tr.int8_state_layers}};
    j["unread_bytes"] = tr.unread_bytes;
    j["bandwidth_bytes_per_s"] = bandwidth;
    j["bandwidth_median_bytes_per_s"] = Median(rep_bandwidth_median);
    j["bandwidth_per_rep_bytes_per_s"] = rep_bandwidth;
    j["roofline_fraction_per_rep"] = rep_fraction;
    j["bandwidth_source"] = bw_source;
    j["roofline_tokens_per_s"] = roofline_tps;
    j["llc_bytes"] = llc;
    j["fits_in_llc"] = fits_in_llc;
    std::printf("%s\n", j.dump().c_str());
    return Status::Ok();
  }
  std::printf("%s: %s %s, %s on disk, %d thread(s), batch %lld%s\n", a.file.c_str(),
              ArchName(hp.arch), scheme.c_str(), Mib(file_bytes).c_str(), threads,
              static_cast<long long>(a.batch), a.f16_state ? ", f16 state" : "");
  std::printf("  load      %10.1f ms (open + Runtime::Create)\n", load_ms);
  std::printf("  prefill   %10.1f tok/s (%lld x %lld tokens, median of %d)\n", prefill_tps,
              static_cast<long long>(a.batch), static_cast<long long>(a.prompt_len), a.reps);
  if (warmup_prefill_s > 0)
    std::printf("            %10.1f tok/s in the untimed warm-up prefill (pages the weights in)\n",
                tokens_prefill / warmup_prefill_s);
  std::printf("  decode    %10.1f tok/s (%lld x %lld steps, median of %d)\n", decode_tps,
              static_cast<long long>(a.batch), static_cast<long long>(a.gen_len), a.reps);
  std::printf("  peak RSS  %10s (%s of it on transparent huge pages)\n", Mib(peak_rss).c_str(),
              Mib(huge_bytes).c_str());
  std::printf("  decode roofline: bytes per step %s = weights %s + state %s\n",
              Mib(tr.total_bytes()).c_str(), Mib(tr.weight_bytes).c_str(),
              Mib(tr.state_bytes).c_str());
  std::printf("    weights: layer matmuls %s, layer small %s, lm head %s, output norm %s, "
              "embedding rows %s\n",
              Mib(tr.layer_matmul_bytes).c_str(), Mib(tr.layer_small_bytes).c_str(),
              Mib(tr.lm_head_bytes).c_str(), Mib(tr.output_norm_bytes).c_str(),
              Mib(tr.embedding_rows_bytes).c_str());
  std::printf("    state:   ssm %s (%d of %lld layers int8), conv %s (read + write)\n",
              Mib(tr.ssm_state_bytes).c_str(), tr.int8_state_layers,
              static_cast<long long>(hp.n_layer), Mib(tr.conv_state_bytes).c_str());
  std::printf("    read bandwidth %.2f GB/s (%s after each repetition, median; %d thread(s)) -> "
              "at most %.1f tok/s; decode reached %.1f%% of it (median over repetitions)\n",
              bandwidth / 1e9, bw_source.c_str(), bw.n_threads, roofline_tps, 100.0 * fraction);
  if (fits_in_llc)
    std::printf("    (the step's bytes fit in the %s last-level cache: DRAM bandwidth need not bound it)\n",
                Mib(llc).c_str());
  return Status::Ok();
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand(
      "bench", "Load time, prefill and decode tokens/s, peak RSS and the decode roofline of a model");
  sub->add_option("file", args->file, ".ssmq file (or Hugging Face directory)");
  sub->add_option("--prompt-len", args->prompt_len, "tokens per sequence in the timed prefill")
      ->capture_default_str();
  sub->add_option("--gen-len", args->gen_len, "timed decode steps (after one untimed warm-up step)")
      ->capture_default_str();
  sub->add_option("--batch", args->batch, "sequences")->capture_default_str();
  sub->add_option("-t,--threads", args->threads, "threads (0 = all cores)")->capture_default_str();
  sub->add_option("--reps", args->reps, "repetitions of prefill + decode (medians reported)")
      ->capture_default_str();
  sub->add_option("--bandwidth", args->bandwidth_gbs,
                  "read bandwidth in GB/s for the roofline (0 = measure it, ~1 s)")
      ->capture_default_str();
  sub->add_option("--seed", args->seed, "seed of the random token ids")->capture_default_str();
  sub->add_flag("--membw-only", args->membw_only,
                "only measure memory bandwidth (read, copy, triad) with --threads");
  sub->add_flag("--f16-state", args->f16_state, kF16StateHelp);
  sub->add_flag("--no-warmup", args->no_warmup,
                "time the first prefill too (by default one untimed prefill runs first, as in "
                "llama-bench)");
  sub->add_flag("--json", args->json, "machine-readable output");
  sub->callback([args] {
    Status st = RunBench(*args);
    if (!st.ok()) ReportError(st);
  });
}
SSMQ_REGISTER_COMMAND(27, Setup);

}  // namespace
}  // namespace ssmq::cli
