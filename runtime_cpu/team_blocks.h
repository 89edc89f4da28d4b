// Blocks of work shared by an OpenMP team without a shared counter per block.
//
// Each thread owns a contiguous share of the blocks (a static split, so its
// weight rows stream in order) and takes them front to back; a thread that
// has run out takes the next unclaimed block of another share. The team then
// finishes within about one block of each other, where a static split left
// the faster thread waiting for the slower (mamba-370m decode: 5-8 µs of
// each ~120 µs in_proj + conv region on the dev VM, whose two cores drift).
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace ssmq::rt {

class TeamBlocks {
 public:
  static constexpr int kMaxThreads = 64;

  // Before the team starts, on one thread. Threads of `team` that never call
  // Next leave their share to the others.
  void Reset(int64_t n_blocks, int team) {
    team_ = std::clamp(team, 1, kMaxThreads);
    for (int t = 0; t < team_; ++t) {
      shares_[t].next.store(n_blocks * t / team_, std::memory_order_relaxed);
      shares_[t].end = n_blocks * (t + 1) / team_;
    }
  }

  // Thread t's next block, or -1 when every block is taken.
  int64_t Next(int t) {
    for (int k = 0; k < team_; ++k) {
      Share& s = shares_[(t + k) % team_];
      if (s.next.load(std::memory_order_relaxed) >= s.end) continue;
      const int64_t i = s.next.fetch_add(1, std::memory_order_relaxed);
      if (i < s.end) return i;
    }
    return -1;
  }

 private:
  struct alignas(64) Share {  // one cache line each: owners do not share lines
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  Share shares_[kMaxThreads];
  int team_ = 1;
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
      for (int64_t i; (i = blocks.Next(t)) >= 0;) fn(i);
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace ssmq::rt
