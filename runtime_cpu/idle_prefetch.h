// What a decode-team thread does while it waits at a barrier: prefetch the
// first bytes it will read in the next stage, a few lines per call.
//
// Why: at a barrier the thread that arrives first spins until the last one
// is done (the tail of a stage's claims, or the serial work `last()` does:
// a Hadamard transform, the groups' RMSNorm), and its core's memory pipeline
// sits idle. The next stage starts on rows nobody has touched, so it begins
// with a full DRAM latency per line until the hardware prefetcher has found
// the new stream. Spending the wait on those rows (its own share's first
// rows: TeamBlocks hands each thread its share front to back) turns idle
// time into bytes the stage no longer waits for.
//
// One call issues at most kIdleBurstLines prefetches (into L2:
// PrefetchToL2, where a stream's own PrefetchRead goes to L1), so the
// waiting thread sees the barrier's release within a few hundred
// nanoseconds; the total is capped at kIdlePrefetchBytes, well
// inside L2, so the prefetched lines are still there when the stage reads them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "runtime_cpu/simd_dispatch.h"

namespace ssmq::rt {

inline constexpr int64_t kIdleBurstLines = 8;
inline constexpr int64_t kIdlePrefetchBytes = 48 * 1024;

class IdlePrefetch {
 public:
  // Adds [p, p + bytes) (clipped to what is left of the cap); null or empty: nothing.
  void Add(const void* p, int64_t bytes) {
    if (p == nullptr || bytes <= 0 || n_ranges_ == kMaxRanges) return;
    bytes = std::min(bytes, kIdlePrefetchBytes - budgeted_);
    if (bytes <= 0) return;
    const auto begin = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63};
    const auto end = reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes);
    ranges_[n_ranges_++] = {begin, end};
    budgeted_ += bytes;
  }
  // One burst; false when every range is done (the barrier then just spins).
  bool operator()() {
    for (int64_t lines = 0; cur_ < n_ranges_; ++cur_) {
      Range& r = ranges_[cur_];
      for (; r.begin < r.end && lines < kIdleBurstLines; r.begin += 64, ++lines) {
        PrefetchToL2(reinterpret_cast<const void*>(r.begin));
      }
      if (r.begin < r.end) return true;
    }
    return false;
  }

 private:
  struct Range {
    uintptr_t begin = 0, end = 0;
  };
  static constexpr int kMaxRanges = 4;
  Range ranges_[kMaxRanges];
  int n_ranges_ = 0, cur_ = 0;
  int64_t budgeted_ = 0;
};

}  // namespace ssmq::rt
