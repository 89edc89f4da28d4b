// The one table of tensor types (spec/format.md "Tensor types" mirrors it;
// tests/format_spec_test.cpp checks that the two agree row by row).
#include "format/tensor_types.h"

#include <array>

namespace ssmq {
namespace {

constexpr std::array<TensorTypeTraits, static_cast<size_t>(TensorType::kCount)> kTraits = {{
    // type            name    block_elems block_bytes is_float is_quantized
    {TensorType::kF32, "f32", 1, 4, true, false},
    {TensorType::kF16, "f16", 1, 2, true, false},
    {TensorType::kBF16, "bf16", 1, 2, true, false},
    {TensorType::kI8, "i8", 1, 1, false, false},
    {TensorType::kI32, "i32", 1, 4, false, false},
    {TensorType::kQ8, "q8", 1, 1, false, true},
    {TensorType::kQ4, "q4", 2, 1, false, true},
    {TensorType::kU8, "u8", 1, 1, false, false},
    {TensorType::kI64, "i64", 1, 8, false, false},
}};

// The table is indexed by id: catch a misordered row at compile time.
constexpr bool TableIndexedById() {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (static_cast<size_t>(kTraits[i].type) != i) return false;
  return true;
}
static_assert(TableIndexedById(), "kTraits rows must be in id order");

}  // namespace

std::optional<TensorTypeTraits> GetTensorTypeTraits(uint32_t type_id) {
  if (type_id >= kTraits.size()) return std::nullopt;
  return kTraits[type_id];
}

const TensorTypeTraits& TraitsOf(TensorType type) {
  return kTraits[static_cast<size_t>(type)];
}

std::optional<TensorType> TensorTypeFromName(std::string_view name) {
  for (const auto& t : kTraits)
    if (t.name == name) return t.type;
  return std::nullopt;
}

std::string_view TensorTypeName(TensorType type) {
  if (static_cast<size_t>(type) >= kTraits.size()) return "unknown";
  return kTraits[static_cast<size_t>(type)].name;
}

std::optional<uint64_t> TensorBytes(TensorType type, uint64_t n_elements) {
  if (static_cast<size_t>(type) >= kTraits.size()) return std::nullopt;
  const TensorTypeTraits& t = kTraits[static_cast<size_t>(type)];
  uint64_t blocks = n_elements / t.block_elems + (n_elements % t.block_elems != 0 ? 1 : 0);
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(t.block_bytes), &bytes))
    return std::nullopt;
  return bytes;
}

}  // namespace ssmq
