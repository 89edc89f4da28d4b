// RTN weight quantization of a float Model (see quantize_weights.h).
#include "convert/quantize_weights.h"

#include <algorithm>
#include <cmath>

#include "format/quant.h"
#include "model/arch.h"

namespace ssmq {

uint32_t EffectiveGroupSize(int64_t cols, uint32_t requested) {
  if (requested == 0 || cols <= 0) return 2;
  if (cols % requested == 0) return requested;
  for (int64_t g = std::min<int64_t>(requested, cols); g >= 2; --g) {
    if (g % 2 == 0 && cols % g == 0) return static_cast<uint32_t>(g);
  }
  return 2;
}

Result<QuantizedTensor> QuantizeQ4MinMse(std::span<const float> x, uint64_t rows, uint64_t cols,
                                         uint32_t group_size) {
  QuantInfo info;
  info.granularity = ScaleGranularity::kPerGroup;
  info.group_size = group_size;
  // The plain quantizer validates the arguments and handles all-zero groups.
  SSMQ_ASSIGN_OR_RETURN(QuantizedTensor out, QuantizeQ4(x, rows, cols, info));
  const uint64_t G = group_size, ng = (cols + G - 1) / G;
  std::vector<uint8_t> best_codes(G);
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t g = 0; g < ng; ++g) {
      const uint64_t c0 = g * G, c1 = std::min(cols, c0 + G);
      const float* v = x.data() + r * cols;
      float absmax = 0;
      for (uint64_t c = c0; c < c1; ++c) absmax = std::max(absmax, std::fabs(v[c]));
      if (absmax == 0) continue;
      double best_err = -1;
      float best_s = 0;
      for (int step = 0; step <= 15; ++step) {
        const float s = (1.0f - 0.02f * static_cast<float>(step)) * absmax / 7.0f;
        double err = 0;
        for (uint64_t c = c0; c < c1; ++c) {
          const float q = std::clamp(std::nearbyint(v[c] / s), -8.0f, 7.0f);
          const double d = static_cast<double>(v[c]) - static_cast<double>(q * s);
          err += d * d;
        }
        if (best_err < 0 || err < best_err) {
          best_err = err;
          best_s = s;
          for (uint64_t c = c0; c < c1; ++c)
            best_codes[c - c0] =
                static_cast<uint8_t>(std::clamp(std::nearbyint(v[c] / s), -8.0f, 7.0f) + 8.0f);
        }
      }
      out.scales[r * ng + g] = best_s;
      for (uint64_t c = c0; c < c1; ++c) {  // repack the group's nibbles
        const uint64_t i = r * cols + c;
        uint8_t& byte = out.codes[i / 2];
        byte = (i & 1) ? static_cast<uint8_t>((byte & 0x0F) | (best_codes[c - c0] << 4))
                       : static_cast<uint8_t>((byte & 0xF0) | best_codes[c - c0]);
      }
    }
  }
  return out;
}

Status QuantizeTensor(Model& model, const std::string& name, WeightBits bits,
                      uint32_t group_size, bool mse_scale_search) {
  const ModelTensor* t = model.Find(name);
  if (!t) return Status(StatusCode::kNotFound, "quantize: tensor '" + name + "' not found");
  if (!TraitsOf(t->type).is_float) {
    return Status(StatusCode::kInvalidArgument,
                  "quantize: tensor '" + name + "' is not a float tensor");
  }
  if (t->shape.size() != 2) {
    return Status(StatusCode::kInvalidArgument, "quantize: tensor '" + name + "' is not 2-D");
  }
  const std::vector<int64_t> shape = t->shape;
  const uint64_t rows = static_cast<uint64_t>(shape[0]), cols = static_cast<uint64_t>(shape[1]);
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> values, model.ReadAsF32(name));
  if (bits == WeightBits::kFloat) return Status::Ok();
  const bool w4 = bits == WeightBits::kW4;
  QuantInfo info;
  info.granularity = w4 ? ScaleGranularity::kPerGroup : ScaleGranularity::kPerChannel;
  if (w4) info.group_size = EffectiveGroupSize(static_cast<int64_t>(cols), group_size);
  const TensorType type = w4 ? TensorType::kQ4 : TensorType::kQ8;
  Result<QuantizedTensor> q =
      !w4 ? QuantizeQ8(values, rows, cols, info)
      : mse_scale_search ? QuantizeQ4MinMse(values, rows, cols, info.group_size)
                         : QuantizeQ4(values, rows, cols, info);
  if (!q.ok()) return q.status().WithContext("quantize: tensor '" + name + "'");
  ModelTensor codes = ModelTensor::Owned(name, type, shape, std::move(q->codes));
  codes.quant = info;
  model.SetTensor(std::move(codes));
  const int64_t n_scales = static_cast<int64_t>(q->scales.size());
  std::vector<int64_t> scale_shape = {static_cast<int64_t>(rows)};
  if (info.granularity == ScaleGranularity::kPerGroup)
    scale_shape.push_back(n_scales / static_cast<int64_t>(rows));
  model.SetTensor(ModelTensor::FromF32(name + ".scale", scale_shape, q->scales));
  return Status::Ok();
}

Status QuantizeWeights(Model& model, const WeightQuantOptions& opts) {
  if (!opts.layer_bits.empty() &&
      static_cast<int64_t>(opts.layer_bits.size()) != model.hp.n_layer) {
    return Status(StatusCode::kInvalidArgument,
                  "quantize: " + std::to_string(opts.layer_bits.size()) +
                      " per-layer schemes for " + std::to_string(model.hp.n_layer) + " layers");
  }
  const WeightBits head_bits =
      opts.embedding_bits == WeightBits::kFloat ? opts.bits : opts.embedding_bits;
  for (const TensorSpec& spec : ExpectedTensors(model.hp)) {
    WeightBits bits = WeightBits::kFloat;
    if (spec.role == TensorRole::kTokenEmbd) {
      // The tied embedding is the LM head: --keep-lm-head keeps it float.
      bits = (model.hp.tied_embeddings && opts.keep_lm_head) ? WeightBits::kFloat : head_bits;
    } else if (spec.role == TensorRole::kOutput) {
      bits = opts.keep_lm_head ? WeightBits::kFloat : head_bits;
    } else if (spec.is_matmul_weight && spec.layer >= 0) {
      bits = opts.layer_bits.empty() ? opts.bits : opts.layer_bits[spec.layer];
    }
    if (bits == WeightBits::kFloat) continue;
    const ModelTensor* t = model.Find(spec.name);
    if (!t || !TraitsOf(t->type).is_float) continue;  // optional and absent, or done already
    const bool head = spec.role == TensorRole::kTokenEmbd || spec.role == TensorRole::kOutput;
    const uint32_t group =
        head && opts.head_group_size > 0 ? opts.head_group_size : opts.group_size;
    SSMQ_RETURN_IF_ERROR(QuantizeTensor(model, spec.name, bits, group, opts.mse_scale_search));
  }
  return Status::Ok();
}

}  // namespace ssmq
