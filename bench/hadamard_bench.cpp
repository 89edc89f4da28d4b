// Fast normalized Hadamard transform of one row (the online out_proj-input
// rotation per token) and of a 256-token block, for the Mamba sizes
// 768 = 12·64, 1536 = 12·128, 2048 = 2^11, 2560 = 40·64.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "runtime_cpu/hadamard.h"

namespace {

std::vector<float> RandomRows(int64_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

void BM_HadamardRow(benchmark::State& state) {
  const int64_t n = state.range(0);
  const ssmq::HadamardKind kind = ssmq::ChooseHadamard(n).value();
  std::vector<float> x = RandomRows(n);
  for (auto _ : state) {
    ssmq::HadamardTransform(kind, x.data());
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetLabel("base " + std::to_string(kind.base));
}

void BM_HadamardRows256(benchmark::State& state) {
  const int64_t n = state.range(0), rows = 256;
  const ssmq::HadamardKind kind = ssmq::ChooseHadamard(n).value();
  std::vector<float> x = RandomRows(n * rows);
  for (auto _ : state) {
    ssmq::HadamardTransformRows(kind, x.data(), rows, n, 1);
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * n * rows);
}

}  // namespace

BENCHMARK(BM_HadamardRow)->Arg(768)->Arg(1536)->Arg(2048)->Arg(2560);
BENCHMARK(BM_HadamardRows256)->Arg(768)->Arg(1536)->Arg(2048)->Arg(2560);
BENCHMARK_MAIN();
