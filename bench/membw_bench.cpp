// Memory bandwidth of this machine (runtime_cpu/membw.h): read (sum
// reduction), copy and triad over a buffer far larger than the last-level
// cache, with 1 and 2 OpenMP threads. Counters in GB/s (1e9 bytes/s): best
// and median of the passes. The read figure is what `ssmq bench` divides the
// per-step decode bytes by (the decode roofline).
#include <benchmark/benchmark.h>

#include <string>

#include "runtime_cpu/membw.h"

namespace {

void BM_MemoryBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  ssmq::MemoryBandwidth bw;
  for (auto _ : state) {
    auto r = ssmq::MeasureMemoryBandwidth(threads);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    bw = *r;
    state.SetIterationTime(bw.seconds);
  }
  state.counters["read_GBps"] = bw.read.best_bytes_per_s / 1e9;
  state.counters["read_median_GBps"] = bw.read.median_bytes_per_s / 1e9;
  state.counters["copy_GBps"] = bw.copy.best_bytes_per_s / 1e9;
  state.counters["copy_median_GBps"] = bw.copy.median_bytes_per_s / 1e9;
  state.counters["triad_GBps"] = bw.triad.best_bytes_per_s / 1e9;
  state.counters["triad_median_GBps"] = bw.triad.median_bytes_per_s / 1e9;
  state.counters["buffer_MiB"] = static_cast<double>(bw.buffer_bytes) / (1 << 20);
  state.counters["llc_MiB"] = static_cast<double>(ssmq::LastLevelCacheBytes()) / (1 << 20);
  state.SetLabel(bw.isa);
}
BENCHMARK(BM_MemoryBandwidth)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
