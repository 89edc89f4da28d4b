// Reference CPU runtime throughput on the fixture models, every scheme
// (f32, f16, w8a16, w4a16, w8a8, w4a8; the A8 files calibrated on 4 windows,
// which changes scales, not speed): prefill tokens/s (2 sequences x 256
// tokens per iteration) and decode tokens/s (one sequence, one Step per
// iteration), with 1 and 2 OpenMP threads; peak RSS (getrusage ru_maxrss) as
// a counter, and `vs_f32`: the ratio of tokens/s to the f32 run of the same
// model, benchmark and thread count in this process (f32 runs first).
// Fixtures: $SSMQ_FIXTURES_DIR, else tests/fixtures next to this source file.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "convert/hf_import.h"
#include "convert/recipe.h"
#include "runtime_cpu/runtime.h"

namespace {

std::string FixturesDir() {
  if (const char* env = std::getenv("SSMQ_FIXTURES_DIR")) return env;
  std::string here = __FILE__;
  return here.substr(0, here.rfind('/')) + "/../tests/fixtures";
}

double PeakRssMiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

struct Loaded {
  ssmq::Model model;
  std::unique_ptr<ssmq::Runtime> rt;
};

std::string ReadText(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

// The model in `scheme` (f32 | f16 | w8a16 | w4a16 | w8a8 | w4a8), converted once.
Loaded* Load(const std::string& name, const std::string& scheme) {
  static std::map<std::string, std::unique_ptr<Loaded>> cache;
  auto& slot = cache[name + "/" + scheme];
  if (slot) return slot.get();
  auto model = ssmq::ImportHfDirectory(FixturesDir() + "/models/" + name);
  if (!model.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), model.status().ToString().c_str());
    return nullptr;
  }
  ssmq::Status st = ssmq::CastFloatTensors(*model, scheme == "f16" ? ssmq::TensorType::kF16
                                                                   : ssmq::TensorType::kF32);
  static const std::string text = ReadText(FixturesDir() + "/data/tinyshakespeare.txt");
  if (st.ok() && ssmq::IsQuantScheme(scheme)) {
    ssmq::QuantRecipeOptions q;
    q.scheme = scheme;
    q.calib_text = text;
    q.calib.samples = 4;
    st = ssmq::ApplyQuantRecipe(*model, q);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "%s %s: %s\n", name.c_str(), scheme.c_str(), st.ToString().c_str());
    return nullptr;
  }
  slot = std::make_unique<Loaded>();
  slot->model = std::move(model).value();
  auto rt = ssmq::Runtime::Create(slot->model);  // threads from omp_set_num_threads
  if (!rt.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), rt.status().ToString().c_str());
    slot.reset();
    return nullptr;
  }
  slot->rt = std::move(rt).value();
  return slot.get();
}

std::vector<int32_t> Tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  uint64_t x = 12345;
  for (auto& v : t) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab));
  }
  return t;
}

// tokens/s of the f32 run per (benchmark, model, threads), for vs_f32.
std::map<std::string, double>& F32Rates() {
  static std::map<std::string, double> rates;
  return rates;
}

// Counters of a throughput benchmark: tokens/s, peak RSS and, for a
// quantized scheme, vs_f32 = its tokens/s over the f32 run's (same key).
void ReportRate(benchmark::State& st, const std::string& key, const std::string& scheme,
                double tokens_per_iteration, double loop_seconds) {
  st.counters["tokens_per_s"] =
      benchmark::Counter(tokens_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["peak_rss_MiB"] = PeakRssMiB();
  const double rate =
      tokens_per_iteration * static_cast<double>(st.iterations()) / std::max(1e-9, loop_seconds);
  if (scheme == "f32") {
    F32Rates()[key] = rate;
  } else if (auto it = F32Rates().find(key); it != F32Rates().end()) {
    st.counters["vs_f32"] = rate / it->second;
  }
}

void BM_Prefill(benchmark::State& st, const std::string& name, const std::string& scheme) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Loaded* m = Load(name, scheme);
  if (!m) return st.SkipWithError("fixture model could not be loaded");
  const int64_t batch = 2, len = 256;
  const auto tokens = Tokens(batch * len, m->rt->hparams().vocab_size);
  std::vector<float> logits;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    ssmq::RecurrentState s = m->rt->NewState(batch);
    if (!m->rt->Prefill(tokens, batch, len, s, logits).ok()) return st.SkipWithError("prefill");
    benchmark::DoNotOptimize(logits.data());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ReportRate(st, "prefill/" + name + "/" + std::to_string(st.range(0)), scheme,
             static_cast<double>(batch * len), secs);
}

void BM_Decode(benchmark::State& st, const std::string& name, const std::string& scheme) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Loaded* m = Load(name, scheme);
  if (!m) return st.SkipWithError("fixture model could not be loaded");
  const auto tokens = Tokens(4096, m->rt->hparams().vocab_size);
  ssmq::RecurrentState s = m->rt->NewState(1);
  std::vector<float> logits;
  size_t i = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    const int32_t one[1] = {tokens[i++ % tokens.size()]};
    if (!m->rt->Step(one, s, logits).ok()) return st.SkipWithError("step");
    benchmark::DoNotOptimize(logits.data());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ReportRate(st, "decode/" + name + "/" + std::to_string(st.range(0)), scheme, 1.0, secs);
}

}  // namespace

int main(int argc, char** argv) {
  // f32 first in each group: the quantized runs report vs_f32 against it.
  for (const std::string name : {"mamba1-tiny", "mamba2-tiny"}) {
    for (const std::string scheme : {"f32", "f16", "w8a16", "w4a16", "w8a8", "w4a8"}) {
      benchmark::RegisterBenchmark(("prefill/" + name + "/" + scheme).c_str(), BM_Prefill, name,
                                   scheme)
          ->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
    }
    for (const std::string scheme : {"f32", "f16", "w8a16", "w4a16", "w8a8", "w4a8"}) {
      benchmark::RegisterBenchmark(("decode/" + name + "/" + scheme).c_str(), BM_Decode, name,
                                   scheme)
          ->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
