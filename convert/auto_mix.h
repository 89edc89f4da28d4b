// --auto-mix BUDGET: picks a per-layer scheme (Quamba2's mixed precision,
// chosen automatically) to fit a file-size budget, by measured sensitivity.
//
// Two candidate schemes, `low` (fewer bytes, e.g. w4a8) and `high` (e.g. w8a8).
// For every layer l, the sensitivity is the mean next-token NLL increase on
// a few train-split windows when layer l alone drops from `high` to `low`
// (every other layer at `high`). Layers start at `low`; they are upgraded in
// order of sensitivity per extra byte while the estimated file stays within
// the budget. Deterministic (windows from the seed, ties by layer index).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "format/status.h"
#include "model/model.h"

namespace ssmq {

// "0.35x" / "35%" (of `f16_bytes`), or a size: "4.5MB", "3MiB", "800KB", "123456".
Result<double> ParseSizeBudget(const std::string& text, double f16_bytes);

// Bytes of the model's tensors (what the file holds, less < 1% of headers).
uint64_t TensorBytes(const Model& model);
// Bytes the model would have with every float tensor as f16.
uint64_t F16Bytes(const Model& model);

struct AutoMixOptions {
  double budget_bytes = 0;
  std::string low = "w4a8", high = "w8a8";
  std::string_view text;       // the calibration text (its train split is used)
  int64_t windows = 8;         // evaluation windows of `seqlen` tokens
  int64_t seqlen = 256;
  uint64_t seed = 1;           // differs from the calibration seed 0 by default
  double train_fraction = 0.9;
  int threads = 0;
};

struct AutoMixPlan {
  std::vector<std::string> layer_schemes;  // per layer: low or high
  std::vector<double> sensitivity;         // per layer: NLL increase (nats/token)
  double nll_high = 0, nll_plan = 0;       // all-high and the chosen plan
  uint64_t bytes_low = 0, bytes_high = 0, bytes_plan = 0;  // tensor bytes
};

// `prepared` is the float model ready for weight quantization (rotations,
// activation sites done). quantize(m, per_layer) quantizes the weights of m
// as per_layer says. kInvalidArgument when even all-low exceeds the budget.
Result<AutoMixPlan> PlanAutoMix(
    const Model& prepared, const AutoMixOptions& opts,
    const std::function<Status(Model&, const std::vector<std::string>&)>& quantize);

}  // namespace ssmq
