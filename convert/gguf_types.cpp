// ggml type table and reference block codecs (see gguf_types.h for layouts).
#include "convert/gguf_types.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "format/quant.h"

namespace ssmq::gguf {
namespace {

constexpr GgmlTypeInfo kTypes[] = {
    {GgmlType::kF32, "f32", 1, 4, true},       {GgmlType::kF16, "f16", 1, 2, true},
    {GgmlType::kQ4_0, "q4_0", 32, 18, true},   {GgmlType::kQ4_1, "q4_1", 32, 20, true},
    {GgmlType::kQ5_0, "q5_0", 32, 22, false},  {GgmlType::kQ5_1, "q5_1", 32, 24, false},
    {GgmlType::kQ8_0, "q8_0", 32, 34, true},   {GgmlType::kQ8_1, "q8_1", 32, 36, false},
    {GgmlType::kQ2_K, "q2_K", 256, 84, false}, {GgmlType::kQ3_K, "q3_K", 256, 110, false},
    {GgmlType::kQ4_K, "q4_K", 256, 144, true}, {GgmlType::kQ5_K, "q5_K", 256, 176, false},
    {GgmlType::kQ6_K, "q6_K", 256, 210, false}, {GgmlType::kQ8_K, "q8_K", 256, 292, false},
    {GgmlType::kI8, "i8", 1, 1, false},        {GgmlType::kI16, "i16", 1, 2, false},
    {GgmlType::kI32, "i32", 1, 4, false},      {GgmlType::kI64, "i64", 1, 8, false},
    {GgmlType::kF64, "f64", 1, 8, false},      {GgmlType::kBF16, "bf16", 1, 2, true},
};

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
void StoreU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFF);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K block (get_scale_min_k4).
void Q4KScaleMin(int j, const uint8_t* s, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

void DequantQ8_0(const uint8_t* src, uint64_t blocks, float* y) {
  for (uint64_t b = 0; b < blocks; ++b, src += 34, y += 32) {
    const float d = F16ToF32(LoadU16(src));
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(src[2 + j])) * d;
  }
}

void DequantQ4_0(const uint8_t* src, uint64_t blocks, float* y) {
  for (uint64_t b = 0; b < blocks; ++b, src += 18, y += 32) {
    const float d = F16ToF32(LoadU16(src));
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((src[2 + j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((src[2 + j] >> 4) - 8) * d;
    }
  }
}

void DequantQ4_1(const uint8_t* src, uint64_t blocks, float* y) {
  for (uint64_t b = 0; b < blocks; ++b, src += 20, y += 32) {
    const float d = F16ToF32(LoadU16(src));
    const float m = F16ToF32(LoadU16(src + 2));
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(src[4 + j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(src[4 + j] >> 4) * d + m;
    }
  }
}

void DequantQ4_K(const uint8_t* src, uint64_t blocks, float* y) {
  for (uint64_t b = 0; b < blocks; ++b, src += 144) {
    const float d = F16ToF32(LoadU16(src));
    const float dmin = F16ToF32(LoadU16(src + 2));
    const uint8_t* scales = src + 4;
    const uint8_t* q = src + 16;
    for (int chunk = 0; chunk < 4; ++chunk, q += 32) {
      uint8_t sc, m;
      Q4KScaleMin(2 * chunk, scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      Q4KScaleMin(2 * chunk + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

}  // namespace

const GgmlTypeInfo* FindGgmlType(uint32_t id) {
  for (const GgmlTypeInfo& t : kTypes)
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

const GgmlTypeInfo& GgmlTraits(GgmlType type) { return *FindGgmlType(static_cast<uint32_t>(type)); }

bool GgmlRowBytes(GgmlType type, uint64_t n_values, uint64_t* bytes) {
  const GgmlTypeInfo& t = GgmlTraits(type);
  if (n_values % t.block_elems != 0) return false;
  return !__builtin_mul_overflow(n_values / t.block_elems, uint64_t{t.block_bytes}, bytes);
}

Status GgmlDequantize(GgmlType type, std::span<const uint8_t> src, std::span<float> dst) {
  const GgmlTypeInfo* info = FindGgmlType(static_cast<uint32_t>(type));
  if (!info) return Status(StatusCode::kUnknownType, "unknown ggml type");
  uint64_t want = 0;
  if (!GgmlRowBytes(type, dst.size(), &want) || want != src.size())
    return Status(StatusCode::kInvalidArgument,
                  std::string(info->name) + ": " + std::to_string(src.size()) + " bytes do not hold " +
                      std::to_string(dst.size()) + " values");
  const uint64_t blocks = dst.size() / info->block_elems;
  switch (type) {
    case GgmlType::kF32:
      if (!dst.empty()) std::memcpy(dst.data(), src.data(), src.size());
      return Status::Ok();
    case GgmlType::kF16:
      for (size_t i = 0; i < dst.size(); ++i) dst[i] = F16ToF32(LoadU16(src.data() + 2 * i));
      return Status::Ok();
    case GgmlType::kBF16:
      for (size_t i = 0; i < dst.size(); ++i) dst[i] = BF16ToF32(LoadU16(src.data() + 2 * i));
      return Status::Ok();
    case GgmlType::kQ8_0: DequantQ8_0(src.data(), blocks, dst.data()); return Status::Ok();
    case GgmlType::kQ4_0: DequantQ4_0(src.data(), blocks, dst.data()); return Status::Ok();
    case GgmlType::kQ4_1: DequantQ4_1(src.data(), blocks, dst.data()); return Status::Ok();
    case GgmlType::kQ4_K: DequantQ4_K(src.data(), blocks, dst.data()); return Status::Ok();
    default:
      return Status(StatusCode::kUnsupported,
                    "ggml type " + std::string(info->name) + " cannot be dequantized (supported: "
                    "f32, f16, bf16, q8_0, q4_0, q4_1, q4_K)");
  }
}

std::vector<uint8_t> QuantizeQ8_0(std::span<const float> x) {
  const size_t blocks = x.size() / kQK;
  std::vector<uint8_t> out(blocks * kQ8_0Bytes);
  for (size_t b = 0; b < blocks; ++b) {
    const float* v = x.data() + b * kQK;
    uint8_t* blk = out.data() + b * kQ8_0Bytes;
    float amax = 0.0f;
    for (uint32_t j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreU16(blk, F32ToF16(d));
    for (uint32_t j = 0; j < kQK; ++j)
      blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(v[j] * id)));
  }
  return out;
}

std::vector<uint8_t> QuantizeQ4_0(std::span<const float> x) {
  const size_t blocks = x.size() / kQK;
  std::vector<uint8_t> out(blocks * kQ4_0Bytes);
  for (size_t b = 0; b < blocks; ++b) {
    const float* v = x.data() + b * kQK;
    uint8_t* blk = out.data() + b * kQ4_0Bytes;
    float amax = 0.0f, max = 0.0f;  // max: the signed value of largest magnitude (first wins)
    for (uint32_t j = 0; j < kQK; ++j) {
      if (amax < std::fabs(v[j])) {
        amax = std::fabs(v[j]);
        max = v[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreU16(blk, F32ToF16(d));
    for (uint32_t j = 0; j < kQK / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(v[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(v[j + 16] * id + 8.5f)));
      blk[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
  return out;
}

}  // namespace ssmq::gguf
