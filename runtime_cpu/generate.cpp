// Generate: prompt through Prefill, then one Step per new token.
#include <algorithm>
#include <random>

#include "runtime_cpu/runtime.h"
#include "runtime_cpu/sampling.h"

namespace ssmq {

Result<std::vector<int32_t>> Generate(Runtime& rt, std::span<const int32_t> prompt, int n_new,
                                      const SamplingOptions& opts,
                                      const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) {
    return Status(StatusCode::kInvalidArgument, "generate: the prompt must hold at least one id");
  }
  if (n_new < 0) return Status(StatusCode::kInvalidArgument, "generate: n_new must be >= 0");
  const int64_t vocab = rt.hparams().vocab_size;
  const int64_t limit =
      opts.max_token_id > 0 ? std::min<int64_t>(opts.max_token_id, vocab) : vocab;
  const bool greedy = opts.greedy || opts.temperature <= 0.0f;

  std::vector<int32_t> out(prompt.begin(), prompt.end());
  out.reserve(prompt.size() + static_cast<size_t>(n_new));
  RecurrentState state = rt.NewState(1);
  std::vector<float> logits;
  SSMQ_RETURN_IF_ERROR(
      rt.PrefillLast(prompt, 1, static_cast<int64_t>(prompt.size()), state, logits));
  const float* row = logits.data();

  std::mt19937_64 rng(opts.seed);
  std::vector<std::pair<double, int32_t>> scratch;
  for (int i = 0; i < n_new; ++i) {
    const int32_t id = greedy ? rt::ArgMax(row, limit)
                              : rt::SampleTopP(row, limit, opts.temperature, opts.top_p, rng,
                                               scratch);
    out.push_back(id);
    if (on_token) on_token(id);
    if (i + 1 < n_new) {
      const int32_t one[1] = {id};
      SSMQ_RETURN_IF_ERROR(rt.Step(one, state, logits));
      row = logits.data();
    }
  }
  return out;
}

}  // namespace ssmq
