// A barrier for the threads of one OpenMP team that spins on one cache line.
//
// Why: a decode token of mamba-370m is ~200 stages of a few to ~80 µs each.
// Opened as OpenMP regions, each costs a fork and a join (libgomp on the
// 2-core Zen 5 VM: 3.7 µs per empty region, 1.7 µs per `omp barrier`,
// against a 0.6 µs round trip of one cache line between the two cores),
// ~0.7 ms of an ~8 ms token. One region per token with this barrier between
// stages costs about one round trip per stage.
//
// Wait(team, last): every thread of the team calls it with the same `team`
// (omp_get_num_threads()); the last one to arrive runs last() (serial work
// between two stages: the others see its writes) and then releases them.
// Waiters spin with a pause and then yield the core; a team with more
// threads than the machine has cores yields at once (SetOversubscribed),
// or a spinning thread would hold the core that the thread it waits for needs.
#pragma once

#include <sched.h>

#include <atomic>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ssmq::rt {

class SpinBarrier {
 public:
  // Before the team starts: yield at once instead of spinning first.
  void SetOversubscribed(bool yes) { spins_before_yield_ = yes ? 0 : kSpinsBeforeYield; }

  template <class Last>
  void Wait(int team, Last&& last) {
    Wait(team, last, [] { return false; });
  }
  // The same; a waiting thread calls idle() before each pause until it
  // returns false (idle_prefetch.h: small bursts of prefetches).
  template <class Last, class Idle>
  void Wait(int team, Last&& last, Idle&& idle) {
    const uint32_t gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team - 1) {
      last();
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(gen + 1, std::memory_order_release);
      return;
    }
    bool idle_left = true;
    for (uint32_t spins = 0; generation_.load(std::memory_order_acquire) == gen; ++spins) {
      if (idle_left && (idle_left = idle())) continue;
      if (spins < spins_before_yield_) {
        Pause();
      } else {
        sched_yield();
      }
    }
  }
  void Wait(int team) {
    Wait(team, [] {});
  }

 private:
  static constexpr uint32_t kSpinsBeforeYield = 2000;  // pause: ~25 ns on Zen 5
  static void Pause() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }
  uint32_t spins_before_yield_ = kSpinsBeforeYield;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<uint32_t> generation_{0};
};

}  // namespace ssmq::rt
