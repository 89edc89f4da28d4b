// Reference CPU runtime throughput on the fixture models (f32):
// prefill tokens/s (2 sequences x 256 tokens per iteration) and decode
// tokens/s (one sequence, one Step per iteration), with 1 and 2 OpenMP
// threads; peak RSS (getrusage ru_maxrss) as a counter.
// Fixtures: $SSMQ_FIXTURES_DIR, else tests/fixtures next to this source file.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "convert/hf_import.h"
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

Loaded* Load(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Loaded>> cache;
  auto& slot = cache[name];
  if (slot) return slot.get();
  auto model = ssmq::ImportHfDirectory(FixturesDir() + "/models/" + name);
  if (!model.ok()) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), model.status().ToString().c_str());
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

void BM_Prefill(benchmark::State& st, const std::string& name) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Loaded* m = Load(name);
  if (!m) return st.SkipWithError("fixture model could not be loaded");
  const int64_t batch = 2, len = 256;
  const auto tokens = Tokens(batch * len, m->rt->hparams().vocab_size);
  std::vector<float> logits;
  for (auto _ : st) {
    ssmq::RecurrentState s = m->rt->NewState(batch);
    if (!m->rt->Prefill(tokens, batch, len, s, logits).ok()) return st.SkipWithError("prefill");
    benchmark::DoNotOptimize(logits.data());
  }
  st.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(batch * len), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["peak_rss_MiB"] = PeakRssMiB();
}

void BM_Decode(benchmark::State& st, const std::string& name) {
  omp_set_num_threads(static_cast<int>(st.range(0)));
  Loaded* m = Load(name);
  if (!m) return st.SkipWithError("fixture model could not be loaded");
  const auto tokens = Tokens(4096, m->rt->hparams().vocab_size);
  ssmq::RecurrentState s = m->rt->NewState(1);
  std::vector<float> logits;
  size_t i = 0;
  for (auto _ : st) {
    const int32_t one[1] = {tokens[i++ % tokens.size()]};
    if (!m->rt->Step(one, s, logits).ok()) return st.SkipWithError("step");
    benchmark::DoNotOptimize(logits.data());
  }
  st.counters["tokens_per_s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["peak_rss_MiB"] = PeakRssMiB();
}

}  // namespace

int main(int argc, char** argv) {
  for (const std::string name : {"mamba1-tiny", "mamba2-tiny"}) {
    benchmark::RegisterBenchmark(("prefill/" + name).c_str(), BM_Prefill, name)
        ->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("decode/" + name).c_str(), BM_Decode, name)
        ->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
