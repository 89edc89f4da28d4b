// Calibration: runs the float model in our runtime on windows of a text and
// collects, per (observer site, layer), the statistics the quantization
// recipes need (Quamba's min-max and percentile observers, per-channel
// profiles for Quamba2's reorder, per-element SSM-state maxima).
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "format/status.h"
#include "model/model.h"
#include "runtime_cpu/observer.h"

namespace ssmq {

struct CalibOptions {
  int64_t samples = 32;         // calibration windows (sequences)
  int64_t seqlen = 256;         // tokens per window
  uint64_t seed = 0;            // picks the windows (see Calibrate)
  double percentile = 0.9995;   // Quamba's percentile_alpha for the clipped statistic
  double train_fraction = 0.9;  // windows come from the first floor(f·n_chars) characters
  int64_t batch = 8;            // windows per Prefill call
  int threads = 0;              // runtime and statistics threads (<= 0: OpenMP default)
  // Sites whose percentile statistic is computed (an exact per-sample
  // quantile costs a selection over every value, so only where a recipe clips);
  // percentile_ema stays 0 elsewhere. Quamba clips the SSM input and the state.
  std::vector<ObsSite> percentile_sites = {ObsSite::kConvOutX, ObsSite::kSsmStateFinal,
                                           ObsSite::kSsmOutput, ObsSite::kOutProjInput};
};

// Statistics of one (site, layer); `cols` is the site's row width
// (runtime_cpu/observer.h). For kSsmStateFinal a row is one sequence's whole
// state, so the per-channel vectors are per state element: mamba1 [d_inner][d_state],
// mamba2 [n_heads][head_dim][d_state] flattened.
struct SiteStats {
  ObsSite site = ObsSite::kInProjInput;
  int layer = 0;  // -1 for kLmHeadInput
  int64_t cols = 0;
  // Min-max observer: max over all samples of max |x|.
  float absmax = 0;
  // Percentile observer (Quamba PerTensorPercentileObserver; only for
  // CalibOptions::percentile_sites, 0 elsewhere): per sample the
  // exact `percentile` quantile of |x| over the sample's values (linear
  // interpolation between order statistics, as torch.quantile); over samples
  // an EMA in window order: first sample's value, then p += 0.01·(cur − p).
  float percentile_ema = 0;
  std::vector<float> channel_mean_abs;  // [cols] max over samples of mean_t |x[t][c]|
  std::vector<float> channel_absmax;    // [cols] max over samples and tokens of |x[t][c]|
  int64_t samples_seen = 0;
};

struct CalibResult {
  std::vector<SiteStats> stats;  // one per (site, layer) the runtime reported, in first-seen order
  // Provenance (record in the file: quant.calib.*).
  uint64_t text_xxh3 = 0;        // XXH3-64 of the whole calibration text's bytes
  int64_t samples = 0;
  int64_t seqlen = 0;
  uint64_t seed = 0;
  double percentile = 0;
  int64_t train_tokens = 0;                // tokens in the train split
  std::vector<int64_t> window_starts;      // token offsets of the windows in the train split

  const SiteStats* Find(ObsSite site, int layer) const;
};

// Picks `samples` windows of `seqlen` tokens from the tokenized train split of
// `calib_text` (its first floor(train_fraction · n_chars) UTF-8 characters)
// with std::mt19937_64(seed): start_i = rng() % (n_tokens − seqlen + 1), in
// draw order; runs them through the runtime (Prefill from a zero state, `batch`
// at a time) with an observer and returns the statistics. kInvalidArgument
// when the split has fewer than seqlen tokens or an option is out of range;
// the model must carry its tokenizer. progress(done, total) after each batch.
Result<CalibResult> Calibrate(const Model& model, std::string_view calib_text,
                              const CalibOptions& opts = {},
                              const std::function<void(int64_t, int64_t)>& progress = {});

// The train split of a text: its first floor(fraction · n_chars) UTF-8 characters.
std::string_view TrainSplit(std::string_view text, double fraction = 0.9);

// Quamba's per-sample percentile: the q-quantile of |x| over n values
// (0 <= q <= 1, linear interpolation at position q·(n − 1)). Exposed for tests.
float AbsQuantile(const float* x, int64_t n, double q);

}  // namespace ssmq
