// Decode throughput of every quantized scheme beside f32 (batch 1, one Step
// per iteration, 2 OpenMP threads) on the fixture models, plus prefill of
// 2 x 256 tokens. The models are converted in memory with the same recipe
// as `ssmq convert --scheme ...`; the runtime executes q8/q4 in place.
// Fixtures: $SSMQ_FIXTURES_DIR, else tests/fixtures next to this source file.
//
// Int8/...: the integer activation path (w8a8 / w4a8) against the
// float-activation kernels on the same Q8 / Q4 weight, one thread, at a
// decode shape (1 token) and a prefill shape (64 tokens), for W [1536 x 768]
// and [768 x 1536]. Per shape three rows side by side:
//   float_act   rt::MatMul on f32 activations (the w8a16 / w4a16 kernels)
//   int8        rt::Int8MatMul on activations already quantized
//   int8+quant  QuantizeActivations (dynamic per token) + rt::Int8MatMul
//   quant_only  QuantizeActivations alone
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <random>
#include <utility>

#include "convert/hf_import.h"
#include "convert/recipe.h"
#include "format/quant.h"
#include "runtime_cpu/act_quant.h"
#include "runtime_cpu/runtime.h"
#include "runtime_cpu/weight.h"

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

// ------------------------------------------------------------ Int8MatMul

// A random [rows x cols] weight quantized to Q8 per channel or Q4 groups of
// 128 (symmetric), viewed as an rt::Weight.
struct BenchWeight {
  ssmq::QuantizedTensor q;
  ssmq::rt::Weight w;
};

BenchWeight* MakeBenchWeight(bool q4, int64_t rows, int64_t cols) {
  static std::map<std::string, std::unique_ptr<BenchWeight>> cache;
  auto& slot = cache[std::to_string(q4) + "/" + std::to_string(rows) + "x" + std::to_string(cols)];
  if (slot) return slot.get();
  std::mt19937_64 rng(42);
  std::normal_distribution<float> d(0.0f, 0.05f);
  std::vector<float> values(rows * cols);
  for (float& v : values) v = d(rng);
  ssmq::QuantInfo info;
  info.granularity = q4 ? ssmq::ScaleGranularity::kPerGroup : ssmq::ScaleGranularity::kPerChannel;
  info.group_size = q4 ? 128 : 0;
  auto q = q4 ? ssmq::QuantizeQ4(values, rows, cols, info)
              : ssmq::QuantizeQ8(values, rows, cols, info);
  if (!q.ok()) return nullptr;
  auto b = std::make_unique<BenchWeight>();
  b->q = std::move(q).value();
  b->w.rows = rows;
  b->w.cols = cols;
  b->w.format = q4 ? ssmq::rt::WeightFormat::kQ4 : ssmq::rt::WeightFormat::kQ8;
  b->w.codes = b->q.codes.data();
  b->w.scales = b->q.scales.data();
  b->w.group_size = q4 ? 128 : cols;
  slot = std::move(b);
  return slot.get();
}

enum class Int8Variant { kFloatAct, kInt8, kInt8WithQuant, kQuantOnly };

void BM_Int8MatMul(benchmark::State& state, bool q4, int64_t rows, int64_t cols, int64_t tokens,
                   Int8Variant variant) {
  BenchWeight* bw = MakeBenchWeight(q4, rows, cols);
  if (!bw) {
    state.SkipWithError("could not quantize");
    return;
  }
  const ssmq::rt::Weight& w = bw->w;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(tokens * cols), y(tokens * rows), row_scales(tokens);
  for (float& v : x) v = d(rng);
  std::vector<int8_t> q(tokens * cols);
  ssmq::rt::ActQuant aq;
  aq.mode = ssmq::rt::ActQuant::Mode::kDynamicPerToken;
  ssmq::rt::QuantizeActivations(aq, x.data(), cols, tokens, cols, q.data(), row_scales.data());
  constexpr int kOneThread = 1;
  for (auto _ : state) {
    switch (variant) {
      case Int8Variant::kFloatAct:
        ssmq::rt::MatMul(w, nullptr, x.data(), cols, tokens, y.data(), rows, kOneThread);
        break;
      case Int8Variant::kQuantOnly:
        ssmq::rt::QuantizeActivations(aq, x.data(), cols, tokens, cols, q.data(),
                                      row_scales.data());
        break;
      case Int8Variant::kInt8WithQuant:
        ssmq::rt::QuantizeActivations(aq, x.data(), cols, tokens, cols, q.data(),
                                      row_scales.data());
        [[fallthrough]];
      case Int8Variant::kInt8:
        ssmq::rt::Int8MatMul(w, nullptr, aq, q.data(), row_scales.data(), tokens, y.data(), rows,
                             kOneThread);
        break;
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  if (variant == Int8Variant::kQuantOnly) return;
  state.counters["GMAC/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(rows * cols * tokens) * 1e-9,
      benchmark::Counter::kIsRate);
}

const int kRegistered = [] {
  struct Shape {
    int64_t rows, cols;
  };
  for (const char* fmt : {"q8", "q4"}) {
    for (const Shape shape : {Shape{1536, 768}, Shape{768, 1536}}) {
      for (const int64_t tokens : {int64_t{1}, int64_t{64}}) {
        for (const auto& [variant, vname] :
             {std::pair{Int8Variant::kFloatAct, "float_act"}, std::pair{Int8Variant::kInt8, "int8"},
              std::pair{Int8Variant::kInt8WithQuant, "int8+quant"},
              std::pair{Int8Variant::kQuantOnly, "quant_only"}}) {
          const std::string name = std::string("Int8/") + fmt + "/" + std::to_string(shape.rows) +
                                   "x" + std::to_string(shape.cols) + "/t" +
                                   std::to_string(tokens) + "/" + vname;
          benchmark::RegisterBenchmark(name.c_str(), BM_Int8MatMul, std::string(fmt) == "q4",
                                       shape.rows, shape.cols, tokens, variant)
              ->Unit(benchmark::kMicrosecond)
              ->MinTime(0.3);
        }
      }
    }
  }

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
