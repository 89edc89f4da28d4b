#include "convert/auto_mix.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "convert/calibrate.h"
#include "format/tensor_types.h"
#include "runtime_cpu/runtime.h"
#include "tokenizer/tokenizer.h"

namespace ssmq {

namespace {

// Bytes of the tensors of layer l ("blk.{l}." prefix).
uint64_t LayerBytes(const Model& m, int l) {
  const std::string prefix = "blk." + std::to_string(l) + ".";
  uint64_t n = 0;
  for (const ModelTensor& t : m.tensors()) {
    if (t.name.compare(0, prefix.size(), prefix) == 0) n += t.data.size();
  }
  return n;
}

Result<double> MeanNll(const Model& m, const std::vector<int32_t>& ids, int64_t seqlen,
                       int threads) {
  SSMQ_ASSIGN_OR_RETURN(auto rt, Runtime::Create(m, threads));
  SSMQ_ASSIGN_OR_RETURN(PerplexityResult r, EvaluatePerplexity(*rt, ids, seqlen, 8));
  return r.mean_nll;
}

}  // namespace

Result<double> ParseSizeBudget(const std::string& text, double f16_bytes) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const std::string unit = end ? std::string(end) : "";
  double out = -1;
  if (unit == "x") out = v * f16_bytes;
  else if (unit == "%") out = v / 100 * f16_bytes;
  else if (unit.empty() || unit == "B") out = v;
  else if (unit == "KB") out = v * 1e3;
  else if (unit == "MB") out = v * 1e6;
  else if (unit == "GB") out = v * 1e9;
  else if (unit == "KiB") out = v * 1024;
  else if (unit == "MiB") out = v * 1048576;
  else if (unit == "GiB") out = v * 1073741824.0;
  if (end == text.c_str() || !(out > 0) || !std::isfinite(out)) {
    return Status(StatusCode::kInvalidArgument,
                  "--auto-mix: budget '" + text +
                      "' is not a size (e.g. 0.35x or 35% of the f16 file, 4.5MB, 3MiB)");
  }
  return out;
}

uint64_t TensorBytes(const Model& model) {
  uint64_t n = 0;
  for (const ModelTensor& t : model.tensors()) n += t.data.size();
  return n;
}

uint64_t F16Bytes(const Model& model) {
  uint64_t n = 0;
  for (const ModelTensor& t : model.tensors()) {
    n += TraitsOf(t.type).is_float ? t.numel() * 2 : t.data.size();
  }
  return n;
}

Result<AutoMixPlan> PlanAutoMix(
    const Model& prepared, const AutoMixOptions& opts,
    const std::function<Status(Model&, const std::vector<std::string>&)>& quantize) {
  const int L = static_cast<int>(prepared.hp.n_layer);
  SSMQ_ASSIGN_OR_RETURN(auto tok, Tokenizer::FromJson(prepared.tokenizer_json));
  const std::vector<int32_t> all = tok->Encode(TrainSplit(opts.text, opts.train_fraction));
  if (static_cast<int64_t>(all.size()) < opts.seqlen || opts.windows <= 0) {
    return Status(StatusCode::kInvalidArgument, "--auto-mix: the train split is shorter than one window");
  }
  std::vector<int32_t> ids;  // the evaluation windows, concatenated
  std::mt19937_64 rng(opts.seed);
  const uint64_t n_starts = all.size() - static_cast<uint64_t>(opts.seqlen) + 1;
  for (int64_t w = 0; w < opts.windows; ++w) {
    const int64_t start = static_cast<int64_t>(rng() % n_starts);
    ids.insert(ids.end(), all.begin() + start, all.begin() + start + opts.seqlen);
  }

  auto build = [&](const std::vector<std::string>& schemes) -> Result<Model> {
    Model m = prepared;
    SSMQ_RETURN_IF_ERROR(quantize(m, schemes));
    return m;
  };
  AutoMixPlan plan;
  const std::vector<std::string> all_low(static_cast<size_t>(L), opts.low);
  const std::vector<std::string> all_high(static_cast<size_t>(L), opts.high);
  SSMQ_ASSIGN_OR_RETURN(Model low, build(all_low));
  SSMQ_ASSIGN_OR_RETURN(Model high, build(all_high));
  plan.bytes_low = TensorBytes(low);
  plan.bytes_high = TensorBytes(high);
  if (static_cast<double>(plan.bytes_low) > opts.budget_bytes) {
    return Status(StatusCode::kInvalidArgument,
                  "--auto-mix: the budget " + std::to_string(static_cast<uint64_t>(opts.budget_bytes)) +
                      " B is below the all-" + opts.low + " model (" +
                      std::to_string(plan.bytes_low) + " B)");
  }
  SSMQ_ASSIGN_OR_RETURN(plan.nll_high, MeanNll(high, ids, opts.seqlen, opts.threads));
  std::vector<uint64_t> extra(static_cast<size_t>(L));
  for (int l = 0; l < L; ++l) {
    extra[l] = LayerBytes(high, l) - std::min(LayerBytes(high, l), LayerBytes(low, l));
    std::vector<std::string> s = all_high;
    s[static_cast<size_t>(l)] = opts.low;
    SSMQ_ASSIGN_OR_RETURN(Model m, build(s));
    SSMQ_ASSIGN_OR_RETURN(const double nll, MeanNll(m, ids, opts.seqlen, opts.threads));
    plan.sensitivity.push_back(nll - plan.nll_high);
  }
  std::vector<int> order(static_cast<size_t>(L));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return plan.sensitivity[a] / std::max<double>(1.0, static_cast<double>(extra[a])) >
           plan.sensitivity[b] / std::max<double>(1.0, static_cast<double>(extra[b]));
  });
  plan.layer_schemes = all_low;
  uint64_t bytes = plan.bytes_low;
  for (int l : order) {
    if (static_cast<double>(bytes + extra[l]) > opts.budget_bytes) continue;
    bytes += extra[l];
    plan.layer_schemes[static_cast<size_t>(l)] = opts.high;
  }
  SSMQ_ASSIGN_OR_RETURN(Model chosen, build(plan.layer_schemes));
  plan.bytes_plan = TensorBytes(chosen);
  SSMQ_ASSIGN_OR_RETURN(plan.nll_plan, MeanNll(chosen, ids, opts.seqlen, opts.threads));
  return plan;
}

}  // namespace ssmq
