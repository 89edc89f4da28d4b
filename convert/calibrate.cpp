// Calibration driver and the statistics observer.
#include "convert/calibrate.h"

#include <omp.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <utility>

#include "runtime_cpu/runtime.h"
#include "tokenizer/tokenizer.h"

namespace ssmq {

namespace {

// Accumulates SiteStats; `seq_len` tells it how to split rows into samples
// (rows b·seq_len + t; kSsmStateFinal has one row per sample).
class StatsObserver : public Observer {
 public:
  StatsObserver(CalibResult& result, const CalibOptions& opts)
      : result_(result), q_(opts.percentile), threads_(opts.threads) {
    for (ObsSite s : opts.percentile_sites) percentile_[static_cast<int>(s)] = true;
  }
  void set_seq_len(int64_t seq_len) { seq_len_ = seq_len; }

  void Observe(ObsSite site, int layer, const float* data, int64_t rows, int64_t cols) override {
    SiteStats& st = Slot(site, layer, cols);
    if (st.cols != cols) return;  // cannot happen for a fixed model; never index past a row
    const int64_t rows_per_sample = site == ObsSite::kSsmStateFinal ? 1 : seq_len_;
    const int64_t n_samples = rows / rows_per_sample;
    const int nt = threads_ > 0 ? threads_ : omp_get_max_threads();
    // Per-channel statistics: channels are independent, split them over threads.
    std::vector<float>& mean_abs = st.channel_mean_abs;
    std::vector<float>& cmax = st.channel_absmax;
    const double inv_rows = 1.0 / static_cast<double>(rows_per_sample);
#pragma omp parallel for num_threads(nt) schedule(static) if (cols >= 64 && nt > 1)
    for (int64_t c = 0; c < cols; ++c) {
      for (int64_t smp = 0; smp < n_samples; ++smp) {
        const float* x = data + smp * rows_per_sample * cols + c;
        double sum = 0;
        float mx = cmax[c];
        for (int64_t t = 0; t < rows_per_sample; ++t) {
          const float a = std::fabs(x[t * cols]);
          sum += a;
          mx = std::max(mx, a);
        }
        cmax[c] = mx;
        mean_abs[c] = std::max(mean_abs[c], static_cast<float>(sum * inv_rows));
      }
    }
    float mx = st.absmax;
    for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, cmax[c]);
    st.absmax = mx;
    // Percentile: per sample (independent selections), then the EMA in sample order.
    if (percentile_[static_cast<int>(site)]) {
      std::vector<float> cur(static_cast<size_t>(n_samples));
      const int64_t n = rows_per_sample * cols;
#pragma omp parallel for num_threads(nt) schedule(static) if (n_samples > 1 && nt > 1)
      for (int64_t smp = 0; smp < n_samples; ++smp) {
        cur[smp] = AbsQuantile(data + smp * n, n, q_);
      }
      for (int64_t smp = 0; smp < n_samples; ++smp) {
        st.percentile_ema = st.samples_seen + smp == 0
                                ? cur[smp]
                                : st.percentile_ema + 0.01f * (cur[smp] - st.percentile_ema);
      }
    }
    st.samples_seen += n_samples;
  }

 private:
  SiteStats& Slot(ObsSite site, int layer, int64_t cols) {
    const auto key = std::make_pair(static_cast<int>(site), layer);
    auto it = index_.find(key);
    if (it != index_.end()) return result_.stats[it->second];
    SiteStats st;
    st.site = site;
    st.layer = layer;
    st.cols = cols;
    st.channel_mean_abs.assign(static_cast<size_t>(cols), 0.0f);
    st.channel_absmax.assign(static_cast<size_t>(cols), 0.0f);
    index_[key] = result_.stats.size();
    result_.stats.push_back(std::move(st));
    return result_.stats.back();
  }

  CalibResult& result_;
  double q_;
  int threads_;
  bool percentile_[static_cast<int>(ObsSite::kCount)] = {};
  int64_t seq_len_ = 1;
  std::map<std::pair<int, int>, size_t> index_;
};

}  // namespace

const SiteStats* CalibResult::Find(ObsSite site, int layer) const {
  for (const SiteStats& s : stats) {
    if (s.site == site && s.layer == layer) return &s;
  }
  return nullptr;
}

std::string_view TrainSplit(std::string_view text, double fraction) {
  int64_t n_chars = 0;
  for (unsigned char c : text) n_chars += (c & 0xC0) != 0x80;  // count code-point starts
  const int64_t keep = static_cast<int64_t>(std::floor(fraction * static_cast<double>(n_chars)));
  int64_t seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      if (seen == keep) return text.substr(0, i);
      ++seen;
    }
  }
  return text;
}

float AbsQuantile(const float* x, int64_t n, double q) {
  if (n <= 0) return 0.0f;
  thread_local std::vector<float> v;
  v.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = std::fabs(x[i]);
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(n - 1);
  const int64_t lo = static_cast<int64_t>(std::floor(pos));
  const int64_t hi = std::min(lo + 1, n - 1);
  std::nth_element(v.begin(), v.begin() + lo, v.end());
  const float v_lo = v[lo];
  float v_hi = v_lo;
  if (hi != lo) v_hi = *std::min_element(v.begin() + lo + 1, v.end());  // the next order statistic
  return static_cast<float>(v_lo + (pos - static_cast<double>(lo)) * (v_hi - v_lo));
}

Result<CalibResult> Calibrate(const Model& model, std::string_view calib_text,
                              const CalibOptions& opts,
                              const std::function<void(int64_t, int64_t)>& progress) {
  if (opts.samples <= 0 || opts.seqlen <= 0 || opts.batch <= 0 || !(opts.percentile >= 0) ||
      opts.percentile > 1 || !(opts.train_fraction > 0) || opts.train_fraction > 1) {
    return Status(StatusCode::kInvalidArgument,
                  "calibrate: samples, seqlen and batch must be positive, percentile and "
                  "train_fraction in (0, 1]");
  }
  if (model.tokenizer_json.empty()) {
    return Status(StatusCode::kInvalidArgument, "calibrate: the model has no tokenizer");
  }
  SSMQ_ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::FromJson(model.tokenizer_json));
  const std::vector<int32_t> ids = tokenizer->Encode(TrainSplit(calib_text, opts.train_fraction));
  const int64_t n_tokens = static_cast<int64_t>(ids.size());
  if (n_tokens < opts.seqlen) {
    return Status(StatusCode::kInvalidArgument,
                  "calibrate: the train split has " + std::to_string(n_tokens) +
                      " tokens, fewer than seqlen " + std::to_string(opts.seqlen));
  }

  CalibResult result;
  result.text_xxh3 = XXH3_64bits(calib_text.data(), calib_text.size());
  result.samples = opts.samples;
  result.seqlen = opts.seqlen;
  result.seed = opts.seed;
  result.percentile = opts.percentile;
  result.train_tokens = n_tokens;
  std::mt19937_64 rng(opts.seed);
  const uint64_t n_starts = static_cast<uint64_t>(n_tokens - opts.seqlen + 1);
  for (int64_t i = 0; i < opts.samples; ++i) {
    result.window_starts.push_back(static_cast<int64_t>(rng() % n_starts));
  }

  SSMQ_ASSIGN_OR_RETURN(auto runtime, Runtime::Create(model, opts.threads));
  StatsObserver observer(result, opts);
  observer.set_seq_len(opts.seqlen);
  runtime->SetObserver(&observer);
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  for (int64_t first = 0; first < opts.samples; first += opts.batch) {
    const int64_t batch = std::min(opts.batch, opts.samples - first);
    tokens.clear();
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t start = result.window_starts[first + b];
      tokens.insert(tokens.end(), ids.begin() + start, ids.begin() + start + opts.seqlen);
    }
    RecurrentState state = runtime->NewState(batch);
    const Status st = runtime->Prefill(tokens, batch, opts.seqlen, state, logits);
    if (!st.ok()) {
      runtime->SetObserver(nullptr);
      return st.WithContext("calibrate");
    }
    if (progress) progress(first + batch, opts.samples);
  }
  runtime->SetObserver(nullptr);
  return result;
}

}  // namespace ssmq
