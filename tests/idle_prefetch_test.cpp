// What a decode-team thread prefetches while it waits at a barrier
// (runtime_cpu/idle_prefetch.h): bursts of at most kIdleBurstLines lines,
// at most kIdlePrefetchBytes in all; the barrier calls idle() until it
// returns false and then only waits; RowRangeBytes finds the bytes the decode
// kernels read for a range of rows (tiles or row-major).
#include "runtime_cpu/idle_prefetch.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "runtime_cpu/spin_barrier.h"
#include "runtime_cpu/weight_tiles.h"

namespace ssmq {
namespace {

// Calls of pf() until it returns false, that last call included.
int BurstsUntilDone(rt::IdlePrefetch& pf) {
  int calls = 1;
  while (pf()) ++calls;
  return calls;
}

TEST(IdlePrefetch, IssuesLinesInBurstsWithinTheCap) {
  alignas(64) static uint8_t buffer[2 << 20];
  rt::IdlePrefetch none;
  EXPECT_FALSE(none());
  none.Add(nullptr, 4096);
  none.Add(buffer, 0);
  EXPECT_FALSE(none());

  rt::IdlePrefetch twenty_lines;  // 8 + 8 + 4
  twenty_lines.Add(buffer, 20 * 64);
  EXPECT_EQ(BurstsUntilDone(twenty_lines), 3);
  EXPECT_FALSE(twenty_lines());  // done stays done

  rt::IdlePrefetch two_ranges;  // 10 bytes across a line boundary: 2 lines; then 9 lines
  two_ranges.Add(buffer + 60, 10);
  two_ranges.Add(buffer + 4096, 9 * 64);
  EXPECT_EQ(BurstsUntilDone(two_ranges), 2);  // 2 + 6 (a burst goes on into the next range), 3

  rt::IdlePrefetch capped;  // 1 MiB asked, kIdlePrefetchBytes issued; later ranges dropped
  capped.Add(buffer, 1 << 20);
  capped.Add(buffer + (1 << 20), 1 << 20);
  EXPECT_EQ(BurstsUntilDone(capped), rt::kIdlePrefetchBytes / 64 / rt::kIdleBurstLines);
}

TEST(IdlePrefetch, BarrierCallsIdleUntilItIsDoneThenWaits) {
  rt::SpinBarrier barrier;
  std::atomic<int> idle_calls{0}, last_runs{0};
  std::atomic<bool> idle_done{false}, arrived_after_done{false};
#pragma omp parallel num_threads(2)
  {
    if (omp_get_thread_num() == 0) {  // arrives first and waits: idle() says done on call 3
      barrier.Wait(2, [&] { ++last_runs; }, [&] {
        const bool more = ++idle_calls < 3;
        if (!more) idle_done = true;
        return more;
      });
    } else {  // arrives once the waiter's idle() is done (or after 5 s, failing below)
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (!idle_done && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
      arrived_after_done = idle_done.load();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the waiter keeps waiting
      barrier.Wait(2, [&] { ++last_runs; }, [] { return true; });  // never waits: no idle()
    }
  }
  EXPECT_TRUE(arrived_after_done.load());
  EXPECT_EQ(idle_calls.load(), 3);  // not called again once it said done
  EXPECT_EQ(last_runs.load(), 1);
}

TEST(IdlePrefetch, RowRangeBytesFollowsTheLayoutTheKernelsRead) {
  std::vector<uint8_t> codes(40 * 64), tiles(32 * 64);
  rt::Weight q4;
  q4.format = rt::WeightFormat::kQ4;
  q4.rows = 40;
  q4.cols = 128;  // 64 bytes a row
  q4.codes = codes.data();
  q4.tiled_codes = tiles.data();
  q4.tiled_rows = 32;
  rt::ByteRange r = rt::RowRangeBytes(q4, 20, 24);  // tiled: from the tile's first row
  EXPECT_EQ(r.begin, tiles.data() + 16 * 64);
  EXPECT_EQ(r.bytes, 8 * 64);
  r = rt::RowRangeBytes(q4, 35, 40);  // past the tiles: row-major codes
  EXPECT_EQ(r.begin, codes.data() + 35 * 64);
  EXPECT_EQ(r.bytes, 5 * 64);
  EXPECT_EQ(rt::RowRangeBytes(q4, 7, 7).bytes, 0);

  std::vector<uint16_t> half(8 * 32);
  rt::Weight f16;
  f16.format = rt::WeightFormat::kF16;
  f16.rows = 8;
  f16.cols = 32;
  f16.half = half.data();
  r = rt::RowRangeBytes(f16, 2, 5);
  EXPECT_EQ(r.begin, half.data() + 2 * 32);
  EXPECT_EQ(r.bytes, 3 * 32 * 2);
  EXPECT_EQ(rt::RowRangeBytes(rt::Weight{}, 0, 4).begin, nullptr);
}

}  // namespace
}  // namespace ssmq
