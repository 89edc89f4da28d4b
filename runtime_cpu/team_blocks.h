// Units of work shared by an OpenMP team without a shared counter per unit.
//
// Each thread owns a contiguous share of the units (a static split, so its
// weight rows stream in order) and claims them front to back, up to
// `max_take` units at a time; a thread that has run out claims from the back
// of another share. The team then finishes within about one claim of each
// other, where a static split left the faster thread waiting for the slower
// (mamba-370m decode: 5-8 µs of each ~120 µs in_proj + conv region on the dev
// VM, whose two cores drift). Claims taper: an owner takes at most half of
// what is left of its share, a thief at most a quarter, so the last claims
// of a stage are single units and the wait at its barrier is at most about
// one small unit (with 128-row blocks it was up to a whole block: on the
// Zen 3 VM ~4% of a mamba2-370m w8a8 decode token was spent at barriers).
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace ssmq::rt {

class TeamBlocks {
 public:
  static constexpr int kMaxThreads = 64;

  // Units [begin, end); empty (begin == end == -1) when every unit is taken.
  struct Claim {
    int64_t begin = -1, end = -1;
    explicit operator bool() const { return begin < end; }
  };

  // Before the team starts, on one thread. Threads of `team` that never call
  // Next leave their share to the others. At most 2^31 - 1 units.
  void Reset(int64_t n_units, int team, int64_t max_take = 1) {
    team_ = std::clamp(team, 1, kMaxThreads);
    max_take_ = std::max<int64_t>(1, max_take);
    for (int t = 0; t < team_; ++t) {
      shares_[t].range.store(Pack(n_units * t / team_, n_units * (t + 1) / team_),
                             std::memory_order_relaxed);
    }
  }

  // Thread t's next claim: from the front of its own share, else from the
  // back of the next share with units left.
  Claim Next(int t) {
    for (int k = 0; k < team_; ++k) {
      std::atomic<uint64_t>& range = shares_[(t + k) % team_].range;
      uint64_t cur = range.load(std::memory_order_relaxed);
      for (;;) {
        const int64_t begin = static_cast<int64_t>(cur >> 32);
        const int64_t end = static_cast<int64_t>(cur & 0xFFFFFFFFu);
        const int64_t left = end - begin;
        if (left <= 0) break;
        const int64_t take = std::clamp<int64_t>(k == 0 ? left / 2 : left / 4, 1, max_take_);
        const Claim claim = k == 0 ? Claim{begin, begin + take} : Claim{end - take, end};
        const uint64_t next = k == 0 ? Pack(begin + take, end) : Pack(begin, end - take);
        if (range.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return claim;
      }
    }
    return {};
  }

 private:
  static uint64_t Pack(int64_t begin, int64_t end) {
    return (static_cast<uint64_t>(begin) << 32) | static_cast<uint64_t>(end);
  }
  struct alignas(64) Share {  // one cache line each: owners do not share lines
    std::atomic<uint64_t> range{0};  // begin << 32 | end of the unclaimed units
  };
  Share shares_[kMaxThreads];
  int team_ = 1;
  int64_t max_take_ = 1;
};

// fn(i) for i in [0, n): over n_threads OpenMP threads (TeamBlocks: each
// its share in order, then the others' leftovers) when `parallel` and there
// is more than one item, else on the calling thread without opening a team
// (an `if(false)` parallel region still costs a team of one, ~1 µs, and
// callers inside their own region want none).
template <class Fn>
void ForEachIndex(int64_t n, int n_threads, bool parallel, Fn&& fn) {
  if (parallel && n_threads > 1 && n > 1) {
    TeamBlocks blocks;
    blocks.Reset(n, n_threads);
#pragma omp parallel num_threads(n_threads)
    {
      const int t = omp_get_thread_num();
      while (const TeamBlocks::Claim claim = blocks.Next(t)) {
        for (int64_t i = claim.begin; i < claim.end; ++i) fn(i);
      }
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace ssmq::rt
