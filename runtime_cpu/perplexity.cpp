// EvaluatePerplexity: non-overlapping windows, every position but the first
// of a window scored, log-softmax over all vocab rows.
#include <algorithm>
#include <cmath>

#include "runtime_cpu/activations.h"
#include "runtime_cpu/runtime.h"
#include "runtime_cpu/weight.h"

namespace ssmq {

namespace {

// -log softmax(row)[target] = logsumexp(row) - row[target].
double TokenNll(const float* row, int64_t n, int32_t target) {
  float max_v = row[0];
  for (int64_t i = 1; i < n; ++i) max_v = std::max(max_v, row[i]);
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += rt::FastExp(row[i] - max_v);
  return std::log(static_cast<double>(sum)) + max_v - row[target];
}

}  // namespace

Result<PerplexityResult> EvaluatePerplexity(Runtime& rt, std::span<const int32_t> ids,
                                            int64_t window, int64_t batch,
                                            const std::function<void(int64_t, int64_t)>& progress) {
  if (window < 2) return Status(StatusCode::kInvalidArgument, "perplexity: window must be >= 2");
  if (batch < 1) return Status(StatusCode::kInvalidArgument, "perplexity: batch must be >= 1");
  const int64_t n_windows = static_cast<int64_t>(ids.size()) / window;
  if (n_windows == 0) {
    return Status(StatusCode::kInvalidArgument,
                  "perplexity: " + std::to_string(ids.size()) + " ids are fewer than one window of " +
                      std::to_string(window));
  }
  const int64_t vocab = rt.hparams().vocab_size;
  std::vector<float> logits;
  double total_nll = 0;
  int64_t scored = 0;
  for (int64_t w0 = 0; w0 < n_windows; w0 += batch) {
    const int64_t nb = std::min(batch, n_windows - w0);
    const auto chunk = ids.subspan(static_cast<size_t>(w0 * window), static_cast<size_t>(nb * window));
    RecurrentState state = rt.NewState(nb);
    SSMQ_RETURN_IF_ERROR(rt.Prefill(chunk, nb, window, state, logits));
    const int64_t rows = nb * (window - 1);
    double nll = 0;
    const int nt = rt::ThreadCount(0);
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : nll)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r / (window - 1), t = r % (window - 1);
      const int64_t pos = b * window + t;  // logits at pos predict chunk[pos + 1]
      nll += TokenNll(logits.data() + pos * vocab, vocab, chunk[pos + 1]);
    }
    total_nll += nll;
    scored += rows;
    if (progress) progress(w0 + nb, n_windows);
  }
  PerplexityResult r;
  r.tokens_scored = scored;
  r.mean_nll = total_nll / static_cast<double>(scored);
  r.perplexity = std::exp(r.mean_nll);
  return r;
}

}  // namespace ssmq
