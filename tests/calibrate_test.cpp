// Calibration: deterministic for a seed, statistics equal a brute-force
// recomputation on the same window, the observer sites have the documented
// shapes, and the default calibration of each fixture is fast.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "convert/calibrate.h"
#include "convert/hf_import.h"
#include "runtime_cpu/observer.h"
#include "runtime_cpu/runtime.h"
#include "tests/test_util.h"
#include "tokenizer/tokenizer.h"

namespace ssmq {
namespace {

using testing::FixtureModelDir;
using testing::FixturesDir;

const Model& Fixture(const std::string& name) { return testing::FixtureModel(name); }

const std::string& Text() {
  static const std::string text = testing::ReadFileText(FixturesDir() + "/data/tinyshakespeare.txt");
  return text;
}

// Keeps a copy of everything observed.
struct Recorder : Observer {
  std::map<std::pair<int, int>, std::vector<float>> data;
  std::map<std::pair<int, int>, std::pair<int64_t, int64_t>> shape;
  void Observe(ObsSite site, int layer, const float* x, int64_t rows, int64_t cols) override {
    const auto key = std::make_pair(static_cast<int>(site), layer);
    data[key].assign(x, x + rows * cols);
    shape[key] = {rows, cols};
  }
};

TEST(Calibrate, AbsQuantileInterpolatesLikeTorch) {
  std::vector<float> x;
  for (int i = 0; i <= 100; ++i) x.push_back(i % 2 ? -float(i) : float(i));
  EXPECT_FLOAT_EQ(AbsQuantile(x.data(), 101, 0.5), 50.0f);
  EXPECT_FLOAT_EQ(AbsQuantile(x.data(), 101, 0.9995), 99.95f);
  EXPECT_FLOAT_EQ(AbsQuantile(x.data(), 101, 1.0), 100.0f);
  EXPECT_FLOAT_EQ(AbsQuantile(x.data(), 101, 0.0), 0.0f);
  const float two[] = {-1.0f, 3.0f};
  EXPECT_FLOAT_EQ(AbsQuantile(two, 2, 0.25), 1.5f);
}

TEST(Calibrate, TrainSplitCountsCharacters) {
  EXPECT_EQ(TrainSplit("abcdefghij"), "abcdefghi");
  EXPECT_EQ(TrainSplit("abcdefghijk"), "abcdefghi");  // floor(9.9) = 9
  // 10 characters, 2 of them two-byte: the split keeps 9 characters.
  EXPECT_EQ(TrainSplit("\xc3\xa9" "bcdefgh\xc3\xa9j"), "\xc3\xa9" "bcdefgh\xc3\xa9");
  EXPECT_EQ(TrainSplit("abcd", 1.0), "abcd");
}

TEST(Calibrate, DeterministicForASeedAndRecordsProvenance) {
  const Model& m = Fixture("mamba1-tiny");
  CalibOptions opts;
  opts.samples = 3;
  opts.seqlen = 32;
  opts.seed = 7;
  auto a = Calibrate(m, Text(), opts);
  auto b = Calibrate(m, Text(), opts);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->window_starts, b->window_starts);
  ASSERT_EQ(a->stats.size(), b->stats.size());
  for (size_t i = 0; i < a->stats.size(); ++i) {
    EXPECT_EQ(a->stats[i].absmax, b->stats[i].absmax);
    EXPECT_EQ(a->stats[i].percentile_ema, b->stats[i].percentile_ema);
    EXPECT_EQ(a->stats[i].channel_mean_abs, b->stats[i].channel_mean_abs);
  }
  EXPECT_EQ(a->text_xxh3, XXH3_64bits(Text().data(), Text().size()));
  EXPECT_EQ(a->samples, 3);
  EXPECT_EQ(a->seqlen, 32);
  EXPECT_EQ(a->seed, 7u);
  // The windows lie inside the train split.
  auto tok = Tokenizer::FromJson(m.tokenizer_json);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(a->train_tokens, static_cast<int64_t>((*tok)->Encode(TrainSplit(Text())).size()));
  for (int64_t s : a->window_starts) EXPECT_LE(s + 32, a->train_tokens);
  opts.seed = 8;
  auto c = Calibrate(m, Text(), opts);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->window_starts, c->window_starts);
  // Bad options.
  opts.seqlen = 0;
  EXPECT_EQ(Calibrate(m, Text(), opts).status().code(), StatusCode::kInvalidArgument);
  opts.seqlen = 32;
  EXPECT_EQ(Calibrate(m, "too short", opts).status().code(), StatusCode::kInvalidArgument);
}

class CalibrateFixture : public ::testing::TestWithParam<std::string> {};

// One window: every statistic equals a recomputation from the raw activations.
TEST_P(CalibrateFixture, StatisticsMatchBruteForceOnOneWindow) {
  const Model& m = Fixture(GetParam());
  const HParams& hp = m.hp;
  CalibOptions opts;
  opts.samples = 1;
  opts.seqlen = 48;
  opts.seed = 3;
  auto calib = Calibrate(m, Text(), opts);
  ASSERT_TRUE(calib.ok()) << calib.status().ToString();

  auto tok = Tokenizer::FromJson(m.tokenizer_json);
  const std::vector<int32_t> ids = (*tok)->Encode(TrainSplit(Text()));
  const int64_t start = calib->window_starts[0];
  const std::vector<int32_t> window(ids.begin() + start, ids.begin() + start + 48);
  auto rt = Runtime::Create(m);
  ASSERT_TRUE(rt.ok());
  Recorder rec;
  (*rt)->SetObserver(&rec);
  RecurrentState s = (*rt)->NewState(1);
  std::vector<float> logits;
  ASSERT_TRUE((*rt)->Prefill(window, 1, 48, s, logits).ok());

  // Every recorded (site, layer) has statistics with its width, and vice versa.
  EXPECT_EQ(rec.data.size(), calib->stats.size());
  for (const auto& [key, x] : rec.data) {
    const SiteStats* st = calib->Find(static_cast<ObsSite>(key.first), key.second);
    ASSERT_NE(st, nullptr) << ObsSiteName(static_cast<ObsSite>(key.first)) << " " << key.second;
    const auto [rows, cols] = rec.shape[key];
    ASSERT_EQ(st->cols, cols);
    float mx = 0;
    std::vector<double> mean(static_cast<size_t>(cols), 0.0);
    std::vector<float> cmax(static_cast<size_t>(cols), 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const float v = std::fabs(x[r * cols + c]);
        mx = std::max(mx, v);
        mean[c] += v;
        cmax[c] = std::max(cmax[c], v);
      }
    }
    EXPECT_EQ(st->absmax, mx) << ObsSiteName(static_cast<ObsSite>(key.first));
    EXPECT_EQ(st->channel_absmax, cmax);
    for (int64_t c = 0; c < cols; ++c) {
      ASSERT_FLOAT_EQ(st->channel_mean_abs[c], static_cast<float>(mean[c] / rows));
    }
    const ObsSite site = static_cast<ObsSite>(key.first);
    const std::vector<ObsSite>& psites = CalibOptions{}.percentile_sites;
    if (std::find(psites.begin(), psites.end(), site) == psites.end()) {
      EXPECT_EQ(st->percentile_ema, 0.0f);
      continue;
    }
    // One sample: the EMA is that sample's exact percentile (ranked by a full sort here).
    std::vector<float> sorted(x.size());
    for (size_t i = 0; i < x.size(); ++i) sorted[i] = std::fabs(x[i]);
    std::sort(sorted.begin(), sorted.end());
    const double pos = 0.9995 * (sorted.size() - 1);
    const size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, sorted.size() - 1);
    const float expect = static_cast<float>(sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]));
    EXPECT_FLOAT_EQ(st->percentile_ema, expect);
    EXPECT_LE(st->percentile_ema, st->absmax);
  }
  // Site shapes as documented in observer.h.
  const int64_t state = hp.arch == Arch::kMamba1 ? hp.d_inner * hp.d_state
                                                  : hp.n_heads * hp.head_dim * hp.d_state;
  EXPECT_EQ(calib->Find(ObsSite::kSsmStateFinal, 0)->cols, state);
  EXPECT_EQ(calib->Find(ObsSite::kConvOutX, hp.n_layer - 1)->cols, hp.d_inner);
  EXPECT_EQ(calib->Find(ObsSite::kOutProjInput, 0)->cols, hp.d_inner);
  EXPECT_EQ(calib->Find(ObsSite::kInProjOutput, 0)->cols, hp.in_proj_dim());
  EXPECT_EQ(calib->Find(ObsSite::kLmHeadInput, -1)->cols, hp.d_model);
  if (hp.arch == Arch::kMamba1) {
    EXPECT_EQ(calib->Find(ObsSite::kXProjOutput, 0)->cols, hp.dt_rank + 2 * hp.d_state);
    EXPECT_EQ(calib->Find(ObsSite::kDtProjOutput, 0)->cols, hp.d_inner);
  } else {
    EXPECT_EQ(calib->Find(ObsSite::kInProjB, 0)->cols, hp.n_groups * hp.d_state);
    EXPECT_EQ(calib->Find(ObsSite::kInProjDt, 0)->cols, hp.n_heads);
    EXPECT_EQ(calib->Find(ObsSite::kSsdOutput, 0)->cols, hp.d_inner);
  }
  // The SSM input of mamba1 carries larger outliers than its percentile (what clipping is for).
  const SiteStats* x = calib->Find(ObsSite::kConvOutX, 0);
  EXPECT_GT(x->absmax, x->percentile_ema);
}

// The default calibration (32 windows of 256 tokens), timed.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;  // 3-5x slower: 2 windows, no time bound (progress and counts only)
#else
constexpr bool kSanitized = false;
#endif

TEST_P(CalibrateFixture, DefaultCalibrationIsFast) {
  const Model& m = Fixture(GetParam());
  CalibOptions opts;
  // The full default on mamba1-tiny (the slower fixture: the forward pass
  // dominates); mamba2-tiny with 8 windows to keep this executable short
  // (its full default measured 9-15 s on 2 loaded cores).
  if (kSanitized) {
    opts.samples = 2;
  } else if (GetParam() != "mamba1-tiny") {
    opts.samples = 8;
  }
  const auto t0 = std::chrono::steady_clock::now();
  int64_t last = 0;
  auto calib = Calibrate(m, Text(), opts, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, opts.samples);
    EXPECT_GT(done, last);
    last = done;
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(calib.ok()) << calib.status().ToString();
  EXPECT_EQ(last, opts.samples);
  std::printf("[%s] calibration (%lld x 256): %.2f s; conv_out_x[0] absmax %.4g p%.4g %.4g\n",
              GetParam().c_str(), static_cast<long long>(opts.samples), secs,
              calib->Find(ObsSite::kConvOutX, 0)->absmax, 99.95,
              calib->Find(ObsSite::kConvOutX, 0)->percentile_ema);
  EXPECT_EQ(calib->Find(ObsSite::kConvOutX, 0)->samples_seen, opts.samples);
  if (!kSanitized) {
    EXPECT_LT(secs, 60.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CalibrateFixture, ::testing::Values("mamba1-tiny", "mamba2-tiny"));

}  // namespace
}  // namespace ssmq
