// Test-only builders for the format tests: the golden files' contents (built
// from fixed formulas, never from a random generator or libm), the expected
// values, and byte-patching helpers for the broken-file matrix.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "format/ssmq_file.h"
#include "format/ssmq_layout.h"

namespace ssmq::testing {

// Deterministic pseudo-data: multiples of 1/16 in [-3.125, 3.125].
inline float PatternValue(uint64_t i, uint64_t salt) {
  return static_cast<float>(static_cast<int64_t>((i * 37 + salt * 11) % 101) - 50) / 16.0f;
}
inline std::vector<float> PatternF32(uint64_t n, uint64_t salt) {
  std::vector<float> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = PatternValue(i, salt);
  return v;
}
template <class T>
std::vector<uint8_t> AsBytes(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}
inline TensorInfo Info(std::string name, TensorType type, std::vector<int64_t> shape,
                       QuantInfo q = {}, Compression c = Compression::kNone) {
  TensorInfo t;
  t.name = std::move(name);
  t.type = type;
  t.shape = std::move(shape);
  t.quant = q;
  t.compression = c;
  return t;
}

// ---- golden "basic": every metadata type and every tensor type ----

// Q8 codes for the golden quantized tensors: i -> int8 in [-127, 127].
inline int8_t GoldenQ8Code(uint64_t i) { return static_cast<int8_t>(static_cast<int>((i * 53) % 255) - 127); }
inline uint8_t GoldenQ4Code(uint64_t i) { return static_cast<uint8_t>((i * 7 + 3) % 16); }
inline float GoldenScale(uint64_t i) { return 0.0625f * static_cast<float>(i + 1); }

struct GoldenQuant {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;  // rows x cols view: last dim = cols
  QuantInfo q;
};
inline std::vector<GoldenQuant> GoldenQuantTensors() {
  return {
      {"q8.per_tensor", TensorType::kQ8, {3, 4}, {ScaleGranularity::kPerTensor, 0, false}},
      {"q8.per_channel", TensorType::kQ8, {4, 6}, {ScaleGranularity::kPerChannel, 0, false}},
      {"q8.per_group", TensorType::kQ8, {2, 10}, {ScaleGranularity::kPerGroup, 4, false}},
      {"q4.symmetric", TensorType::kQ4, {2, 8}, {ScaleGranularity::kPerGroup, 4, false}},
      {"q4.zero_point", TensorType::kQ4, {3, 6}, {ScaleGranularity::kPerGroup, 4, true}},
      {"q4.per_channel", TensorType::kQ4, {2, 2, 4}, {ScaleGranularity::kPerChannel, 0, false}},
  };
}

// Expected f32 value of element (r, c) of a golden quantized tensor, from the
// spec's formula, written independently of format/quant.cpp.
inline float GoldenDequant(const GoldenQuant& g, uint64_t r, uint64_t c) {
  const uint64_t cols = static_cast<uint64_t>(g.shape.back());
  uint64_t s_index = 0;
  if (g.q.granularity == ScaleGranularity::kPerChannel) s_index = r;
  if (g.q.granularity == ScaleGranularity::kPerGroup) {
    const uint64_t groups = (cols + g.q.group_size - 1) / g.q.group_size;
    s_index = r * groups + c / g.q.group_size;
  }
  const float s = GoldenScale(s_index);
  const uint64_t i = r * cols + c;
  if (g.type == TensorType::kQ8) return static_cast<float>(GoldenQ8Code(i)) * s;
  const int z = g.q.has_zero_point ? static_cast<int>(s_index % 16) : 8;
  return static_cast<float>(static_cast<int>(GoldenQ4Code(i)) - z) * s;
}

inline void AddGoldenMetadata(Metadata& md) {
  md.Set("general.architecture", MetaValue::String("mamba"));
  md.Set("general.name", MetaValue::String("golden \xC3\xA9\xE2\x82\xAC"));  // "golden é€"
  md.Set("test.u8", MetaValue::U8(255));
  md.Set("test.i8", MetaValue::I8(-128));
  md.Set("test.u16", MetaValue::U16(65535));
  md.Set("test.i16", MetaValue::I16(-32768));
  md.Set("test.u32", MetaValue::U32(4294967295u));
  md.Set("test.i32", MetaValue::I32(-2147483647 - 1));
  md.Set("test.u64", MetaValue::U64(18446744073709551615ull));
  md.Set("test.i64", MetaValue::I64(-9223372036854775807ll - 1));
  md.Set("test.f32", MetaValue::F32(1.0e-40f));  // an f32 subnormal
  md.Set("test.f64", MetaValue::F64(-2.5e300));
  md.Set("test.bool", MetaValue::Bool(true));
  md.Set("test.string", MetaValue::String("hello"));
  md.Set("test.empty_string", MetaValue::String(""));
  md.Set("test.array_u8", MetaValue::ArrayOf(MetaType::kU8, std::vector<uint64_t>{0, 1, 255}));
  md.Set("test.array_i16", MetaValue::ArrayOf(MetaType::kI16, std::vector<int64_t>{-32768, 0, 32767}));
  md.Set("test.array_u32", MetaValue::ArrayOf(MetaType::kU32, std::vector<uint64_t>{7, 4294967295u}));
  md.Set("test.array_i64", MetaValue::ArrayI64({-1, 0, 1, 9223372036854775807ll}));
  md.Set("test.array_u64", MetaValue::ArrayU64({18446744073709551615ull}));
  md.Set("test.array_f32", MetaValue::ArrayF32({0.5, -1.25, 3.0e38}));
  md.Set("test.array_f64", MetaValue::ArrayOf(MetaType::kF64, std::vector<double>{1.0 / 3.0}));
  md.Set("test.array_bool", MetaValue::ArrayOf(MetaType::kBool, std::vector<bool>{true, false, true}));
  md.Set("test.array_string", MetaValue::ArrayString({"a", "", "\xE2\x88\x9A" "2"}));
  md.Set("test.array_empty", MetaValue::ArrayOf(MetaType::kI32, std::vector<int64_t>{}));
  md.Set("quant.scheme", MetaValue::String("mixed"));
  md.Set("quant.rounding", MetaValue::String("nearest_even"));
}

inline SsmqWriter MakeGoldenBasicWriter() {
  SsmqWriter w(64);
  AddGoldenMetadata(w.metadata());
  auto add = [&](TensorInfo info, std::vector<uint8_t> bytes) {
    Status st = w.AddTensorCopy(std::move(info), std::move(bytes));
    if (!st.ok()) std::abort();
  };
  add(Info("plain.f32", TensorType::kF32, {2, 3}), AsBytes(PatternF32(6, 1)));
  std::vector<uint16_t> f16(5), bf16(3);
  const uint16_t f16_bits[5] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x8000};  // 1, -2, min subnormal, max, -0
  for (int i = 0; i < 5; ++i) f16[i] = f16_bits[i];
  const uint16_t bf16_bits[3] = {0x3F80, 0xBFC0, 0x7F80};  // 1, -1.5, +inf
  for (int i = 0; i < 3; ++i) bf16[i] = bf16_bits[i];
  add(Info("plain.f16", TensorType::kF16, {5}), AsBytes(f16));
  add(Info("plain.bf16", TensorType::kBF16, {3}), AsBytes(bf16));
  add(Info("plain.i8", TensorType::kI8, {4}), AsBytes(std::vector<int8_t>{-128, -1, 0, 127}));
  add(Info("plain.i32", TensorType::kI32, {4}), AsBytes(std::vector<int32_t>{3, 0, 2, 1}));
  add(Info("plain.u8", TensorType::kU8, {3}), AsBytes(std::vector<uint8_t>{0, 128, 255}));
  add(Info("plain.i64", TensorType::kI64, {2}),
      AsBytes(std::vector<int64_t>{-9223372036854775807ll - 1, 9223372036854775807ll}));
  add(Info("plain.scalar", TensorType::kF32, {}), AsBytes(std::vector<float>{42.5f}));
  add(Info("plain.empty", TensorType::kF32, {0, 4}), {});
  add(Info("blk.0.perm.ssm_out", TensorType::kI32, {6}), AsBytes(std::vector<int32_t>{5, 4, 3, 2, 1, 0}));
  for (const GoldenQuant& g : GoldenQuantTensors()) {
    const uint64_t cols = static_cast<uint64_t>(g.shape.back());
    uint64_t rows = 1;
    for (size_t i = 0; i + 1 < g.shape.size(); ++i) rows *= static_cast<uint64_t>(g.shape[i]);
    const uint64_t n = rows * cols;
    std::vector<uint8_t> codes;
    if (g.type == TensorType::kQ8) {
      for (uint64_t i = 0; i < n; ++i) codes.push_back(static_cast<uint8_t>(GoldenQ8Code(i)));
    } else {
      for (uint64_t i = 0; i < n; i += 2)
        codes.push_back(static_cast<uint8_t>(GoldenQ4Code(i) | (GoldenQ4Code(i + 1) << 4)));
    }
    const uint64_t n_scales = ScaleCount(g.q, rows, cols);
    std::vector<float> scales(n_scales);
    std::vector<uint8_t> zeros(n_scales);
    for (uint64_t i = 0; i < n_scales; ++i) {
      scales[i] = GoldenScale(i);
      zeros[i] = static_cast<uint8_t>(i % 16);
    }
    add(Info(g.name, g.type, g.shape, g.q), codes);
    add(Info(g.name + ".scale", TensorType::kF32, {static_cast<int64_t>(n_scales)}), AsBytes(scales));
    if (g.q.has_zero_point)
      add(Info(g.name + ".zero", TensorType::kU8, {static_cast<int64_t>(n_scales)}), zeros);
  }
  return w;
}

// ---- golden "zstd": compressible and incompressible tensors ----

inline std::vector<float> ZstdCompressibleValues() {
  std::vector<float> v(4096);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 8) * 0.25f;
  return v;
}
inline std::vector<uint8_t> ZstdIncompressibleBytes() {
  std::vector<uint8_t> b(256);
  uint32_t x = 2463534242u;  // xorshift32: fixed sequence
  for (auto& c : b) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    c = static_cast<uint8_t>(x);
  }
  return b;
}
inline SsmqWriter MakeGoldenZstdWriter() {
  SsmqWriter w(64);
  w.metadata().Set("general.architecture", MetaValue::String("mamba2"));
  Status a = w.AddTensorCopy(Info("z.compressible", TensorType::kF32, {64, 64}, {}, Compression::kZstd),
                             AsBytes(ZstdCompressibleValues()));
  Status b = w.AddTensorCopy(Info("z.incompressible", TensorType::kU8, {256}, {}, Compression::kZstd),
                             ZstdIncompressibleBytes());
  Status c = w.AddTensorCopy(Info("z.plain", TensorType::kI32, {2}), AsBytes(std::vector<int32_t>{1, 2}));
  if (!a.ok() || !b.ok() || !c.ok()) std::abort();
  return w;
}

// ---- patching ----

template <class T>
T Peek(const std::vector<uint8_t>& b, uint64_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}
template <class T>
void Poke(std::vector<uint8_t>& b, uint64_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
}
// Recomputes both checksums; when the (patched) section ranges do not fit the
// file, only the header checksum (so the range check itself is exercised).
inline void Reseal(std::vector<uint8_t>& b) {
  if (ResealChecksums(b).ok()) return;
  Poke<uint64_t>(b, layout::kOffHeaderChecksum,
                 ComputeHeaderChecksum(std::span<const uint8_t>(b).first(layout::kHeaderSize)));
}

// A v1.<minor> file: appends an extension section (payload, then its table
// entry) at the end of a valid v1.0 file and re-seals it.
inline std::vector<uint8_t> WithExtensionSection(std::vector<uint8_t> b, uint16_t minor,
                                                 uint32_t kind, uint32_t flags,
                                                 const std::vector<uint8_t>& payload) {
  const uint64_t payload_at = b.size();
  b.insert(b.end(), payload.begin(), payload.end());
  while (b.size() % 8) b.push_back(0);
  const uint64_t table_at = b.size();
  b.resize(table_at + layout::kExtEntrySize, 0);
  Poke<uint32_t>(b, table_at, kind);
  Poke<uint32_t>(b, table_at + 4, flags);
  Poke<uint64_t>(b, table_at + 8, payload_at);
  Poke<uint64_t>(b, table_at + 16, payload.size());
  Poke<uint16_t>(b, layout::kOffVersionMinor, minor);
  Poke<uint64_t>(b, layout::kOffExtTableOffset, table_at);
  Poke<uint32_t>(b, layout::kOffExtCount, 1);
  Poke<uint64_t>(b, layout::kOffFileSize, b.size());
  Reseal(b);
  return b;
}
inline std::vector<uint8_t> ExtensionPayload() {
  std::vector<uint8_t> p(40);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(0xA0 + i);
  return p;
}
inline std::vector<uint8_t> GoldenMinorBytes(const std::vector<uint8_t>& basic) {
  return WithExtensionSection(basic, 1, 0x7001, 0, ExtensionPayload());
}

}  // namespace ssmq::testing
