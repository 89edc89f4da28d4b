// Weight quantization recipes (RTN): W8 = int8 per output channel (embedding
// per row), W4 = int4 symmetric per group of G along the input dimension.
// Matmul weights come from model/arch.h (is_matmul_weight) plus the
// embedding; the LM head (or the tied embedding serving as it) is skipped
// with keep_lm_head. Rounding is round-half-to-even (format/quant.h, the
// reference quantizers), so the file dequantizes exactly by spec/format.md §6.1.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "format/status.h"
#include "model/model.h"

namespace ssmq {

enum class WeightBits : uint8_t { kFloat, kW8, kW4 };

// The int4 group size for a row of `cols`: `requested` when it divides cols,
// else the largest even divisor of cols that is <= requested (2 at worst;
// cols must be even for Q4).
uint32_t EffectiveGroupSize(int64_t cols, uint32_t requested);

// Replaces float tensor `name` with its quantized codes plus "<name>.scale"
// (f32): kW8 per row (per_channel), kW4 per group (EffectiveGroupSize).
Status QuantizeTensor(Model& model, const std::string& name, WeightBits bits,
                      uint32_t group_size, bool mse_scale_search = false);

struct WeightQuantOptions {
  WeightBits bits = WeightBits::kW8;      // default for every layer
  std::vector<WeightBits> layer_bits;     // per layer; empty = `bits` everywhere
  uint32_t group_size = 128;              // W4
  bool keep_lm_head = false;              // leave output.weight (or tied embedding) float
  WeightBits embedding_bits = WeightBits::kFloat;  // embedding + LM head; kFloat = same as `bits`
  uint32_t head_group_size = 0;           // W4 group of embedding + LM head; 0 = group_size
  bool mse_scale_search = true;           // W4: per group, the clipped scale of least squared error
};

// Symmetric int4 per group with the scale of least squared error: for each
// group, s = alpha * absmax / 7 for alpha in {1, 0.98, ..., 0.70}, codes
// q = clamp(rhe(x / s), -8, 7) + 8; keeps the alpha with the smallest
// sum (x - (q - 8) s)^2 (alpha = 1 is plain RTN, so never worse). Same
// storage as QuantizeQ4 (format/quant.h), so files dequantize by the spec.
Result<QuantizedTensor> QuantizeQ4MinMse(std::span<const float> x, uint64_t rows, uint64_t cols,
                                         uint32_t group_size);

// Quantizes the matmul weights of every layer, the embedding and the LM
// head in place. Tensors already quantized are left alone.
Status QuantizeWeights(Model& model, const WeightQuantOptions& opts);

}  // namespace ssmq
