// CastFloatTensors: every float tensor (F32/F16/BF16) -> one float type.
// Conversions go through f32, which is exact for f16/bf16 sources, so each
// value is rounded once (round-to-nearest-even, format/quant.h).
#include <cstring>

#include "convert/hf_import.h"

namespace ssmq {
namespace {

bool IsScaleOfQuantized(const Model& model, const std::string& name) {
  if (name.find(".act.") != std::string::npos) return true;  // activation scales (model/act_sites.h)
  const std::string_view suffix = ".scale";
  if (!name.ends_with(suffix)) return false;
  const ModelTensor* base = model.Find(name.substr(0, name.size() - suffix.size()));
  return base && TraitsOf(base->type).is_quantized;
}

}  // namespace

Status CastFloatTensors(Model& model, TensorType type) {
  if (type != TensorType::kF32 && type != TensorType::kF16 && type != TensorType::kBF16)
    return Status(StatusCode::kInvalidArgument,
                  "CastFloatTensors: target type " + std::string(TensorTypeName(type)) + " is not f32, f16 or bf16");
  for (ModelTensor& t : model.tensors_mutable()) {
    if (!TraitsOf(t.type).is_float || t.type == type) continue;
    if (IsScaleOfQuantized(model, t.name)) continue;  // scales stay f32 (spec)
    const uint64_t n = t.numel();
    std::vector<float> f32(n);
    Status st = FloatToF32(t.type, t.data, f32);
    if (!st.ok()) return st.WithContext("tensor '" + t.name + "'");
    std::vector<uint8_t> bytes;
    if (type == TensorType::kF32) {
      bytes.resize(n * 4);
      if (n) std::memcpy(bytes.data(), f32.data(), bytes.size());
    } else {
      bytes.resize(n * 2);
      for (uint64_t i = 0; i < n; ++i) {
        const uint16_t h = type == TensorType::kF16 ? F32ToF16(f32[i]) : F32ToBF16(f32[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    t.type = type;
    t.owned = std::move(bytes);
    t.data = std::span<const uint8_t>(t.owned.data(), t.owned.size());
    t.keepalive.reset();
  }
  return Status::Ok();
}

}  // namespace ssmq
