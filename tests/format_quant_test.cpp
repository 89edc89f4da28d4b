// Reference Q8/Q4 quantizers and f16/bf16 conversions: exact codes on
// hand-computed inputs, edge cases, error bounds, and exhaustive half checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "format/quant.h"

namespace ssmq {
namespace {

constexpr QuantInfo kPerTensor{ScaleGranularity::kPerTensor, 0, false};
constexpr QuantInfo kPerChannel{ScaleGranularity::kPerChannel, 0, false};
QuantInfo PerGroup(uint32_t g, bool zero = false) { return {ScaleGranularity::kPerGroup, g, zero}; }

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(FormatQuant, ScaleCount) {
  EXPECT_EQ(ScaleCount(kPerTensor, 5, 7), 1u);
  EXPECT_EQ(ScaleCount(kPerChannel, 5, 7), 5u);
  EXPECT_EQ(ScaleCount(PerGroup(4), 5, 7), 10u);
  EXPECT_EQ(ScaleCount(PerGroup(4), 5, 8), 10u);
  EXPECT_EQ(ScaleCount(PerGroup(4), 5, 9), 15u);
  EXPECT_EQ(ScaleCount(QuantInfo{}, 5, 7), 0u);
}

TEST(FormatQuant, Q8ExactCodesRoundHalfToEven) {
  // absmax 127 -> s = 1, so codes are round_half_even(x).
  const std::vector<float> x = {127, -63.5f, 2.5f, 0, -1.5f, 0.5f, 3.5f, -127};
  auto q = QuantizeQ8(x, 1, 8, kPerTensor);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  ASSERT_EQ(q->scales.size(), 1u);
  EXPECT_EQ(q->scales[0], 1.0f);
  const std::vector<int8_t> want = {127, -64, 2, 0, -2, 0, 4, -127};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(static_cast<int8_t>(q->codes[i]), want[i]) << i;
  std::vector<float> back(8);
  ASSERT_TRUE(DequantizeQ8(q->codes, q->scales, 1, 8, kPerTensor, back).ok());
  EXPECT_EQ(back[1], -64.0f);
  EXPECT_EQ(back[6], 4.0f);
}

TEST(FormatQuant, Q4SymmetricExactCodesAndNibbleOrder) {
  // absmax 7 -> s = 1; code = round_half_even(x) + 8; element 2k low nibble.
  const std::vector<float> x = {7, -7, 0.5f, 1.5f, -2.5f, 3};
  auto q = QuantizeQ4(x, 1, 6, kPerTensor);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->scales[0], 1.0f);
  EXPECT_TRUE(q->zeros.empty());
  ASSERT_EQ(q->codes.size(), 3u);
  EXPECT_EQ(q->codes[0], 0x1F);  // 15 | 1 << 4
  EXPECT_EQ(q->codes[1], 0xA8);  // 8 | 10 << 4
  EXPECT_EQ(q->codes[2], 0xB6);  // 6 | 11 << 4
  EXPECT_EQ(Q4Get(q->codes.data(), 0), 15);
  EXPECT_EQ(Q4Get(q->codes.data(), 1), 1);
  std::vector<float> back(6);
  ASSERT_TRUE(DequantizeQ4(q->codes, q->scales, {}, 1, 6, kPerTensor, back).ok());
  EXPECT_EQ(back, (std::vector<float>{7, -7, 0, 2, -2, 3}));
}

TEST(FormatQuant, Q4ZeroPointExact) {
  // group 1: [-5 .. 10] -> s = 1, z = 5; group 2: [0 .. 15] -> s = 1, z = 0;
  // group 3 all positive [3, 6]: range widened to include 0 -> s = 6/15, z = 0.
  const std::vector<float> x = {-5, 10, 0, 15, 3, 6};
  auto q = QuantizeQ4(x, 1, 6, PerGroup(2, true));
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  ASSERT_EQ(q->scales.size(), 3u);
  EXPECT_EQ(q->scales[0], 1.0f);
  EXPECT_EQ(q->scales[1], 1.0f);
  EXPECT_EQ(q->zeros, (std::vector<uint8_t>{5, 0, 0}));
  EXPECT_EQ(Q4Get(q->codes.data(), 0), 0);
  EXPECT_EQ(Q4Get(q->codes.data(), 1), 15);
  EXPECT_EQ(Q4Get(q->codes.data(), 2), 0);
  EXPECT_EQ(Q4Get(q->codes.data(), 3), 15);
  EXPECT_EQ(Q4Get(q->codes.data(), 5), 15);
  std::vector<float> back(6);
  ASSERT_TRUE(DequantizeQ4(q->codes, q->scales, q->zeros, 1, 6, PerGroup(2, true), back).ok());
  EXPECT_EQ(back[0], -5.0f);
  EXPECT_EQ(back[1], 10.0f);
  EXPECT_EQ(back[3], 15.0f);
  EXPECT_FLOAT_EQ(q->scales[2], 0.4f);
  EXPECT_EQ(Q4Get(q->codes.data(), 4), 8);  // 3 / 0.4 = 7.5: tie -> even
  EXPECT_FLOAT_EQ(back[4], 8 * q->scales[2]);
}

TEST(FormatQuant, AllZeroGroupHasScaleZeroAndDequantizesToZero) {
  const std::vector<float> x = {0, 0, 0, 0, 1, -2, 0, 0};
  for (bool zero_point : {false, true}) {
    auto q4 = QuantizeQ4(x, 1, 8, PerGroup(4, zero_point));
    ASSERT_TRUE(q4.ok());
    EXPECT_EQ(q4->scales[0], 0.0f);
    EXPECT_EQ(q4->codes[0], zero_point ? 0x00 : 0x88);
    EXPECT_EQ(q4->codes[1], zero_point ? 0x00 : 0x88);
    std::vector<float> back(8, 99.0f);
    ASSERT_TRUE(DequantizeQ4(q4->codes, q4->scales, q4->zeros, 1, 8, PerGroup(4, zero_point), back).ok());
    for (int i = 0; i < 4; ++i) EXPECT_EQ(Bits(back[i]), 0u) << i;  // +0 exactly
  }
  auto q8 = QuantizeQ8(x, 2, 4, kPerChannel);
  ASSERT_TRUE(q8.ok());
  EXPECT_EQ(q8->scales[0], 0.0f);
  EXPECT_EQ(q8->scales[1], 2.0f / 127.0f);
  std::vector<float> back(8, 99.0f);
  ASSERT_TRUE(DequantizeQ8(q8->codes, q8->scales, 2, 4, kPerChannel, back).ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], 0.0f);
}

TEST(FormatQuant, SingleOutlierKeepsItsValueAndCrushesTheRest) {
  std::vector<float> x(32, 0.01f);
  x[17] = -1000.0f;
  auto q = QuantizeQ8(x, 1, 32, kPerTensor);
  ASSERT_TRUE(q.ok());
  const float s = q->scales[0];
  EXPECT_FLOAT_EQ(s, 1000.0f / 127.0f);
  EXPECT_EQ(static_cast<int8_t>(q->codes[17]), -127);
  std::vector<float> back(32);
  ASSERT_TRUE(DequantizeQ8(q->codes, q->scales, 1, 32, kPerTensor, back).ok());
  EXPECT_NEAR(back[17], -1000.0f, 1e-3f);
  for (int i = 0; i < 32; ++i)
    if (i != 17) {
      EXPECT_EQ(back[i], 0.0f) << i;
    }  // 0.01 < s/2: rounds to code 0
}

TEST(FormatQuant, GroupTailHasItsOwnScale) {
  // cols = 10, G = 4: groups [0,4) [4,8) [8,10); the tail's absmax is 0.5.
  std::vector<float> x(20);
  for (int i = 0; i < 20; ++i) x[i] = (i % 10 < 8) ? 4.0f * ((i % 3) - 1) : 0.5f * ((i % 2) ? 1 : -1);
  auto q = QuantizeQ8(x, 2, 10, PerGroup(4));
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->scales.size(), 6u);
  EXPECT_EQ(q->scales[2], 0.5f / 127.0f);
  EXPECT_EQ(q->scales[5], 0.5f / 127.0f);
  EXPECT_EQ(static_cast<int8_t>(q->codes[8]), -127);
  EXPECT_EQ(static_cast<int8_t>(q->codes[9]), 127);
  auto q4 = QuantizeQ4(x, 2, 10, PerGroup(4));
  ASSERT_TRUE(q4.ok());
  EXPECT_EQ(q4->scales[2], 0.5f / 7.0f);
}

TEST(FormatQuant, NonFiniteInputIsBadValue) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(8, 1.0f);
    x[5] = bad;
    auto q8 = QuantizeQ8(x, 2, 4, kPerChannel);
    ASSERT_FALSE(q8.ok());
    EXPECT_EQ(q8.status().code(), StatusCode::kBadValue);
    EXPECT_NE(q8.status().message().find("5"), std::string::npos);
    auto q4 = QuantizeQ4(x, 2, 4, PerGroup(2, true));
    ASSERT_FALSE(q4.ok());
    EXPECT_EQ(q4.status().code(), StatusCode::kBadValue);
  }
}

TEST(FormatQuant, InvalidArguments) {
  std::vector<float> x(6, 1.0f);
  EXPECT_EQ(QuantizeQ4(x, 2, 3, kPerTensor).status().code(), StatusCode::kInvalidArgument);  // odd cols
  EXPECT_EQ(QuantizeQ8(x, 2, 4, kPerTensor).status().code(), StatusCode::kInvalidArgument);  // size
  EXPECT_EQ(QuantizeQ8(x, 2, 3, QuantInfo{}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeQ8(x, 2, 3, PerGroup(0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(QuantizeQ8(x, 2, 3, PerGroup(2, true)).status().code(), StatusCode::kInvalidArgument);
  auto q = QuantizeQ8(x, 2, 3, kPerChannel);
  ASSERT_TRUE(q.ok());
  std::vector<float> out(6);
  std::vector<float> one_scale = {1.0f};
  EXPECT_EQ(DequantizeQ8(q->codes, one_scale, 2, 3, kPerChannel, out).code(), StatusCode::kInvalidArgument);
  std::vector<float> short_out(5);
  EXPECT_EQ(DequantizeQ8(q->codes, q->scales, 2, 3, kPerChannel, short_out).code(), StatusCode::kInvalidArgument);
}

// |x - dequant(quant(x))| <= s/2 for every element, every granularity.
TEST(FormatQuant, ErrorBoundHalfAScale) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const uint64_t rows = 7, cols = 38;  // 38 = 4 groups of 8 + a tail of 6
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = normal(rng) * (1.0f + 10.0f * (rng() % 7 == 0));
  const std::vector<QuantInfo> grans = {kPerTensor, kPerChannel, PerGroup(8)};
  auto scale_of = [&](const QuantInfo& q, uint64_t r, uint64_t c) -> uint64_t {
    if (q.granularity == ScaleGranularity::kPerTensor) return 0;
    if (q.granularity == ScaleGranularity::kPerChannel) return r;
    return r * ((cols + q.group_size - 1) / q.group_size) + c / q.group_size;
  };
  for (QuantInfo g : grans) {
    for (int kind = 0; kind < 3; ++kind) {  // q8, q4 symmetric, q4 zero point
      QuantInfo q = g;
      q.has_zero_point = kind == 2;
      std::vector<float> back(x.size());
      QuantizedTensor t;
      if (kind == 0) {
        auto r = QuantizeQ8(x, rows, cols, q);
        ASSERT_TRUE(r.ok());
        t = std::move(r).value();
        ASSERT_TRUE(DequantizeQ8(t.codes, t.scales, rows, cols, q, back).ok());
      } else {
        auto r = QuantizeQ4(x, rows, cols, q);
        ASSERT_TRUE(r.ok());
        t = std::move(r).value();
        ASSERT_TRUE(DequantizeQ4(t.codes, t.scales, t.zeros, rows, cols, q, back).ok());
      }
      double worst = 0;
      for (uint64_t r = 0; r < rows; ++r)
        for (uint64_t c = 0; c < cols; ++c) {
          const float s = t.scales[scale_of(q, r, c)];
          const float err = std::fabs(x[r * cols + c] - back[r * cols + c]);
          ASSERT_LE(err, s * 0.5f * (1 + 1e-5f) + 1e-7f)
              << "kind " << kind << " gran " << int(q.granularity) << " at " << r << "," << c;
          worst = std::max(worst, static_cast<double>(err / s));
        }
      EXPECT_GT(worst, 0.3) << "suspiciously exact: kind " << kind;
    }
  }
}

// ---- half precision ----

TEST(FormatHalf, F16KnownValues) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3C00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xC000);
  EXPECT_EQ(F32ToF16(0.0f), 0x0000);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);  // tie between 65504 and 65536 -> even -> inf
  EXPECT_EQ(F32ToF16(1e10f), 0x7C00);
  EXPECT_EQ(F32ToF16(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(F32ToF16(0x1p-24f), 0x0001);         // smallest subnormal
  EXPECT_EQ(F32ToF16(0x1p-25f), 0x0000);         // tie -> even (0)
  EXPECT_EQ(F32ToF16(0x1.8p-25f), 0x0001);       // above the tie
  EXPECT_EQ(F32ToF16(0x1.8p-24f), 0x0002);       // 1.5 units: tie -> even (2)
  EXPECT_EQ(F32ToF16(0x1.ff8p-15f), 0x03FF);     // largest subnormal
  EXPECT_EQ(F32ToF16(0x1.ffcp-15f), 0x0400);     // tie: rounds up into the smallest normal
  EXPECT_EQ(F32ToF16(1e-45f), 0x0000);           // f32 subnormal
  EXPECT_EQ(F32ToF16(1.0f + 0x1p-11f), 0x3C00);  // tie -> even
  EXPECT_EQ(F32ToF16(1.0f + 0x1.8p-10f), 0x3C02);  // tie -> even (up)
  const uint16_t nan = F32ToF16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(FromBits(0x7F800001u)))));  // signalling NaN stays NaN
  EXPECT_EQ(F16ToF32(0x0001), 0x1p-24f);
  EXPECT_EQ(F16ToF32(0x03FF), 0x3FFp-24f);
  EXPECT_EQ(F16ToF32(0xFC00), -std::numeric_limits<float>::infinity());
}

TEST(FormatHalf, F16ExhaustiveRoundTripAndMidpoints) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    const bool is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0;
    if (is_nan) {
      ASSERT_TRUE(std::isnan(f)) << h;
      ASSERT_TRUE(std::isnan(F16ToF32(F32ToF16(f)))) << h;
      continue;
    }
    ASSERT_EQ(F32ToF16(f), h) << std::hex << h;
    // Midpoint to the next magnitude (exact in f32): ties go to the even code.
    if ((h & 0x7FFF) < 0x7BFF) {
      const float next = F16ToF32(static_cast<uint16_t>(h + 1));
      const float mid = (f + next) / 2;  // exact: one more bit than f16
      const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
      ASSERT_EQ(F32ToF16(mid), even) << std::hex << h;
      ASSERT_EQ(F32ToF16(std::nextafter(mid, f)), h) << std::hex << h;
      ASSERT_EQ(F32ToF16(std::nextafter(mid, next)), h + 1) << std::hex << h;
    }
  }
}

#if defined(__FLT16_MAX__) && defined(__x86_64__)
TEST(FormatHalf, F16MatchesCompilerFloat16) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const float f = FromBits(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t bits;
    std::memcpy(&bits, &h, 2);
    ASSERT_EQ(F32ToF16(f), bits) << f;
  }
}
#endif

TEST(FormatHalf, BF16RoundToNearestEven) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3F80);
  EXPECT_EQ(F32ToBF16(FromBits(0x3F808000u)), 0x3F80);  // tie -> even (down)
  EXPECT_EQ(F32ToBF16(FromBits(0x3F818000u)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(F32ToBF16(FromBits(0x3F808001u)), 0x3F81);
  EXPECT_EQ(F32ToBF16(FromBits(0x3F807FFFu)), 0x3F80);
  EXPECT_EQ(F32ToBF16(FromBits(0x7F7FFFFFu)), 0x7F80);  // max float rounds to inf
  EXPECT_EQ(F32ToBF16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(F32ToBF16(-0.0f), 0x8000);
  EXPECT_EQ(F32ToBF16(FromBits(0x00008000u)), 0x0000);  // subnormal tie -> even
  EXPECT_EQ(F32ToBF16(FromBits(0x00018000u)), 0x0002);
  EXPECT_EQ(F32ToBF16(FromBits(0x00010001u)), 0x0001);
  for (uint32_t nan : {0x7F800001u, 0x7FC00000u, 0xFFFFFFFFu, 0x7F80FFFFu}) {
    const uint16_t b = F32ToBF16(FromBits(nan));
    EXPECT_TRUE(std::isnan(BF16ToF32(b))) << std::hex << nan;
  }
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = BF16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToBF16(f), h);
  }
}

TEST(FormatHalf, FloatToF32) {
  const uint16_t h[3] = {0x3C00, 0xC000, 0x0001};
  std::vector<uint8_t> src(6);
  std::memcpy(src.data(), h, 6);
  std::vector<float> dst(3);
  ASSERT_TRUE(FloatToF32(TensorType::kF16, src, dst).ok());
  EXPECT_EQ(dst, (std::vector<float>{1.0f, -2.0f, 0x1p-24f}));
  ASSERT_TRUE(FloatToF32(TensorType::kBF16, src, dst).ok());
  EXPECT_EQ(dst[0], BF16ToF32(0x3C00));
  EXPECT_EQ(FloatToF32(TensorType::kI32, src, dst).code(), StatusCode::kInvalidArgument);
  std::vector<float> wrong(2);
  EXPECT_EQ(FloatToF32(TensorType::kF16, src, wrong).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ssmq
