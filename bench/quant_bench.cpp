// Decode throughput of every quantized scheme beside f32 (batch 1, one Step
// per iteration, 2 OpenMP threads) on the fixture models, plus prefill of
// 2 x 256 tokens. The models are converted in memory with the same recipe
// as `ssmq convert --scheme ...`; the runtime executes q8/q4 in place.
// Fixtures: $SSMQ_FIXTURES_DIR, else tests/fixtures next to this source file.
#include <benchmark/benchmark.h>

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

struct Loaded {
  ssmq::Model model;
  std::unique_ptr<ssmq::Runtime> rt;
};

constexpr int kThreads = 2;

Loaded* Load(const std::string& fixture, const std::string& scheme) {
  static std::map<std::string, std::unique_ptr<Loaded>> cache;
  auto& slot = cache[fixture + "/" + scheme];
  if (slot) return slot.get();
  auto model = ssmq::ImportHfDirectory(FixturesDir() + "/models/" + fixture);
  if (!model.ok()) return nullptr;
  auto loaded = std::make_unique<Loaded>();
  loaded->model = std::move(model).value();
  ssmq::QuantRecipeOptions opts;
  opts.scheme = scheme;
  ssmq::Status st = scheme == "f32"
                        ? ssmq::CastFloatTensors(loaded->model, ssmq::TensorType::kF32)
                        : ssmq::ApplyQuantRecipe(loaded->model, opts);
  if (!st.ok()) {
    std::fprintf(stderr, "%s %s: %s\n", fixture.c_str(), scheme.c_str(), st.ToString().c_str());
    return nullptr;
  }
  auto rt = ssmq::Runtime::Create(loaded->model, kThreads);
  if (!rt.ok()) return nullptr;
  loaded->rt = std::move(rt).value();
  slot = std::move(loaded);
  return slot.get();
}

void BM_Decode(benchmark::State& state, std::string fixture, std::string scheme) {
  Loaded* m = Load(fixture, scheme);
  if (!m) {
    state.SkipWithError("could not load");
    return;
  }
  ssmq::RecurrentState s = m->rt->NewState(1);
  std::vector<float> logits;
  int32_t token = 1;
  for (auto _ : state) {
    if (!m->rt->Step(std::span<const int32_t>(&token, 1), s, logits).ok()) {
      state.SkipWithError("step failed");
      return;
    }
    token = (token * 31 + 7) % 2000;
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

void BM_Prefill(benchmark::State& state, std::string fixture, std::string scheme) {
  Loaded* m = Load(fixture, scheme);
  if (!m) {
    state.SkipWithError("could not load");
    return;
  }
  std::vector<int32_t> ids(2 * 256);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 131 + 7) % 2000);
  std::vector<float> logits;
  for (auto _ : state) {
    ssmq::RecurrentState s = m->rt->NewState(2);
    if (!m->rt->Prefill(ids, 2, 256, s, logits).ok()) {
      state.SkipWithError("prefill failed");
      return;
    }
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * 512),
                                                  benchmark::Counter::kIsRate);
}

const int kRegistered = [] {
  for (const char* fixture : {"mamba1-tiny", "mamba2-tiny"}) {
    for (const char* scheme : {"f32", "w8a16", "w4a16"}) {
      benchmark::RegisterBenchmark(
          (std::string("Decode/") + fixture + "/" + scheme).c_str(), BM_Decode, fixture, scheme)
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(0.5);
      benchmark::RegisterBenchmark(
          (std::string("Prefill/") + fixture + "/" + scheme).c_str(), BM_Prefill, fixture, scheme)
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.5);
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
