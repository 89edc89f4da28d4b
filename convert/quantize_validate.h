// Round-trip accuracy of a quantized model against its float source (what
// `ssmq validate` prints): per-tensor weight SQNR, per-layer SQNR of the
// mixer outputs on a few windows, logits KL(float || quant) and top-1
// agreement on those windows, and perplexity of both.
// SQNR = 10·log10(sum x² / sum (x − x̂)²) dB (+inf when identical).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "format/status.h"
#include "model/model.h"

namespace ssmq {

struct TensorSqnr {
  std::string name;
  std::string quant_type;  // type in the quantized model ("q4", "q8", "f32", ...)
  double sqnr_db = 0;
};

struct LayerSqnr {
  int layer = 0;
  double mixer_output_sqnr_db = 0;  // out_proj output of the layer
};

struct ValidationReport {
  std::vector<TensorSqnr> weights;  // tensors present in both (scale/zero tensors skipped)
  std::vector<LayerSqnr> layers;
  int64_t activation_windows = 0;
  double logits_kl = 0;             // mean over positions of KL(p_float || p_quant), nats
  double top1_agreement = 0;        // fraction of positions with the same argmax
  double ppl_float = 0, ppl_quant = 0;
  int64_t tokens_scored = 0;
  double ppl_rel_delta() const { return ppl_float > 0 ? ppl_quant / ppl_float - 1 : 0; }
};

struct ValidationOptions {
  int64_t window = 256;
  int64_t activation_windows = 4;  // windows used for activation SQNR, KL, top-1
  int64_t ppl_windows = 0;         // 0: every window of the ids
  int n_threads = 0;
};

double Sqnr(std::span<const float> ref, std::span<const float> approx);

// ids: the tokenized evaluation text. The models must have the same
// architecture and dimensions.
Result<ValidationReport> ValidateQuantized(const Model& quant, const Model& reference,
                                           std::span<const int32_t> ids,
                                           const ValidationOptions& opts);

}  // namespace ssmq
