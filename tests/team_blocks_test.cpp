// rt::TeamBlocks: every unit is claimed exactly once, owners claim their own
// share front to back, claims never exceed max_take and taper to single
// units at the end of a share, and a team smaller than the split (threads
// that never call Next) still gets every unit.
#include "runtime_cpu/team_blocks.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <vector>

namespace ssmq {
namespace {

using rt::TeamBlocks;

TEST(TeamBlocks, OneThreadTakesItsShareInTaperingClaimsThenTheOthersFromTheBack) {
  TeamBlocks blocks;
  blocks.Reset(/*n_units=*/40, /*team=*/2, /*max_take=*/4);  // shares [0, 20) and [20, 40)
  std::vector<TeamBlocks::Claim> claims;
  while (const TeamBlocks::Claim c = blocks.Next(0)) claims.push_back(c);
  // Own share in order: 4, 4, 4, 4 (20 -> 4 left), then 2, 1, 1.
  const std::vector<std::pair<int64_t, int64_t>> own = {{0, 4},   {4, 8},   {8, 12}, {12, 16},
                                                        {16, 18}, {18, 19}, {19, 20}};
  ASSERT_GE(claims.size(), own.size());
  for (size_t i = 0; i < own.size(); ++i) {
    EXPECT_EQ(claims[i].begin, own[i].first) << i;
    EXPECT_EQ(claims[i].end, own[i].second) << i;
  }
  // Then share 1 from its back, at most a quarter of what is left, so the
  // owner (had it been running) would keep its front in order.
  EXPECT_EQ(claims[own.size()].end, 40);
  EXPECT_EQ(claims[own.size()].begin, 36);  // 20 left: 20 / 4 = 5, capped at 4
  int64_t next_end = 40, covered = 0;
  for (size_t i = own.size(); i < claims.size(); ++i) {
    EXPECT_EQ(claims[i].end, next_end) << i;
    EXPECT_LE(claims[i].end - claims[i].begin, 4) << i;
    next_end = claims[i].begin;
    covered += claims[i].end - claims[i].begin;
  }
  EXPECT_EQ(next_end, 20);
  EXPECT_EQ(covered, 20);
  EXPECT_EQ(claims.back().end - claims.back().begin, 1);
}

TEST(TeamBlocks, ConcurrentTeamsClaimEveryUnitExactlyOnce) {
  for (const int64_t n_units : {1, 7, 64, 1000}) {
    for (const int64_t max_take : {1, 4, 8}) {
      for (const int split : {1, 2, 3, 5}) {
        for (const int team : {1, 2, 4}) {
          TeamBlocks blocks;
          blocks.Reset(n_units, split, max_take);
          std::vector<int> hits(static_cast<size_t>(n_units), 0);
          bool oversized = false;
#pragma omp parallel num_threads(team)
          {
            // Threads beyond the split never exist here when team < split:
            // their shares must be taken over.
            const int t = omp_get_thread_num() % split;
            while (const TeamBlocks::Claim c = blocks.Next(t)) {
              if (c.end - c.begin > max_take) {
#pragma omp atomic write
                oversized = true;
              }
              for (int64_t i = c.begin; i < c.end; ++i) {
#pragma omp atomic
                ++hits[static_cast<size_t>(i)];
              }
            }
          }
          EXPECT_FALSE(oversized);
          for (int64_t i = 0; i < n_units; ++i) {
            ASSERT_EQ(hits[static_cast<size_t>(i)], 1)
                << "unit " << i << " of " << n_units << ", max_take " << max_take << ", split "
                << split << ", team " << team;
          }
        }
      }
    }
  }
}

TEST(TeamBlocks, ForEachIndexVisitsEveryIndexOnce) {
  for (const int64_t n : {0, 1, 2, 33}) {
    std::vector<int> hits(static_cast<size_t>(n), 0);
    rt::ForEachIndex(n, 2, true, [&](int64_t i) {
#pragma omp atomic
      ++hits[static_cast<size_t>(i)];
    });
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)], 1) << i;
  }
}

}  // namespace
}  // namespace ssmq
