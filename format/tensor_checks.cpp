#include "format/tensor_checks.h"

#include <algorithm>
#include <unordered_map>

#include "format/byte_io.h"
#include "format/ssmq_layout.h"

namespace ssmq {

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return 0;
  }
  return n;
}

namespace detail {

void RowsCols(const std::vector<int64_t>& shape, uint64_t* rows, uint64_t* cols) {
  *cols = shape.empty() ? 1 : static_cast<uint64_t>(shape.back());
  uint64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= static_cast<uint64_t>(shape[i]);
  *rows = r;
}

Status CheckTensorName(const std::string& name, uint64_t at) {
  if (name.empty()) return Status(StatusCode::kBadTensorInfo, "empty tensor name", at);
  if (name.size() > layout::kMaxTensorNameLength)
    return Status(StatusCode::kLimitExceeded,
                  "tensor name of " + std::to_string(name.size()) + " bytes exceeds 4096", at);
  if (!IsPrintableUtf8(reinterpret_cast<const uint8_t*>(name.data()), name.size()))
    return Status(StatusCode::kBadTensorInfo, "tensor name is not printable UTF-8", at);
  return Status::Ok();
}

Status CheckTensorDescription(const TensorInfo& t, uint64_t at) {
  auto bad = [&](const std::string& why) {
    return Status(StatusCode::kBadTensorInfo, "tensor '" + t.name + "': " + why, at);
  };
  const auto traits = GetTensorTypeTraits(static_cast<uint32_t>(t.type));
  if (!traits)
    return Status(StatusCode::kUnknownType,
                  "tensor '" + t.name + "': unknown type id " +
                      std::to_string(static_cast<uint32_t>(t.type)), at);
  if (t.shape.size() > kMaxRank) return bad("rank " + std::to_string(t.shape.size()) + " > 8");
  uint64_t numel = 1;
  for (int64_t d : t.shape) {
    if (d < 0) return bad("negative dimension " + std::to_string(d));
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
      return bad("element count overflows 64 bits");
  }
  const auto bytes = TensorBytes(t.type, numel);
  if (!bytes) return bad("byte size overflows 64 bits");
  const QuantInfo& q = t.quant;
  if (static_cast<uint8_t>(q.granularity) > static_cast<uint8_t>(ScaleGranularity::kPerGroup))
    return bad("unknown scale granularity " + std::to_string(static_cast<int>(q.granularity)));
  if (!traits->is_quantized) {
    if (q.granularity != ScaleGranularity::kNone || q.group_size != 0 || q.has_zero_point)
      return bad("quantization fields set on a plain " + std::string(traits->name) + " tensor");
  } else {
    if (q.granularity == ScaleGranularity::kNone)
      return bad("quantized tensor without a scale granularity");
    if ((q.granularity == ScaleGranularity::kPerGroup) != (q.group_size != 0))
      return bad("group_size must be > 0 exactly when granularity is per_group");
    if (q.has_zero_point && t.type != TensorType::kQ4) return bad("only q4 has zero points");
    uint64_t rows, cols;
    RowsCols(t.shape, &rows, &cols);
    if (t.type == TensorType::kQ4 && cols % 2 != 0)
      return bad("q4 last dimension " + std::to_string(cols) + " is odd");
  }
  if (static_cast<uint8_t>(t.compression) > static_cast<uint8_t>(Compression::kZstd))
    return bad("unknown compression " + std::to_string(static_cast<int>(t.compression)));
  if (t.size != *bytes)
    return bad("size " + std::to_string(t.size) + " != " + std::to_string(*bytes) +
               " bytes for " + std::to_string(numel) + " " + std::string(traits->name) +
               " elements");
  return Status::Ok();
}

Status CheckCompanions(const std::vector<TensorInfo>& tensors) {
  std::unordered_map<std::string_view, const TensorInfo*> by_name;
  by_name.reserve(tensors.size());
  for (const auto& t : tensors) by_name.emplace(t.name, &t);
  for (const auto& t : tensors) {
    if (!TraitsOf(t.type).is_quantized) continue;
    uint64_t rows, cols;
    RowsCols(t.shape, &rows, &cols);
    const uint64_t want = ScaleCount(t.quant, rows, cols);
    auto check = [&](const std::string& suffix, TensorType type) -> Status {
      const std::string name = t.name + suffix;
      auto it = by_name.find(name);
      if (it == by_name.end())
        return Status(StatusCode::kBadTensorInfo,
                      "quantized tensor '" + t.name + "' has no '" + name + "' tensor",
                      t.entry_offset);
      const TensorInfo& c = *it->second;
      if (c.type != type)
        return Status(StatusCode::kBadTensorInfo,
                      "'" + name + "' must be " + std::string(TensorTypeName(type)) + ", is " +
                          std::string(TensorTypeName(c.type)), c.entry_offset);
      if (c.numel() != want)
        return Status(StatusCode::kBadTensorInfo,
                      "'" + name + "' has " + std::to_string(c.numel()) + " elements, '" +
                          t.name + "' needs " + std::to_string(want), c.entry_offset);
      return Status::Ok();
    };
    SSMQ_RETURN_IF_ERROR(check(".scale", TensorType::kF32));
    if (t.quant.has_zero_point) SSMQ_RETURN_IF_ERROR(check(".zero", TensorType::kU8));
  }
  return Status::Ok();
}

Status CheckNoOverlap(const std::vector<TensorInfo>& tensors) {
  std::vector<const TensorInfo*> order;
  order.reserve(tensors.size());
  for (const auto& t : tensors)
    if (t.stored_size > 0) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->entry_offset < b->entry_offset;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorInfo& a = *order[i - 1];
    const TensorInfo& b = *order[i];
    if (b.offset < a.offset + a.stored_size)
      return Status(StatusCode::kOverlap,
                    "tensor '" + b.name + "' overlaps tensor '" + a.name + "'", b.entry_offset);
  }
  return Status::Ok();
}

}  // namespace detail
}  // namespace ssmq
