// Scalar element functions written so that loops calling them vectorize
// (no library calls, no branches the compiler cannot turn into selects).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace ssmq::rt {

// exp(x) in fp32, relative error ~2 ulp over the normal range; 0 below
// exp's normal range (x < -87.33), saturates at exp(88) above it.
// exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2/2, exp(r) by a
// degree-7 Taylor polynomial (truncation error < 6e-9).
inline float FastExp(float x) {
  constexpr float kMax = 88.0f;
  constexpr float kMin = -87.33f;
  const float xc = x > kMax ? kMax : (x < kMin ? kMin : x);
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23: rounds to an integer in the low bits
  const float t = xc * 1.44269504088896341f + kShift;
  const float n = t - kShift;
  float r = xc - n * 0.693359375f;  // ln2 split in two for an exact reduction (Cody-Waite)
  r = r - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kShift);
  const float scale = std::bit_cast<float>(static_cast<int32_t>((ni + 127) << 23));
  return x < kMin ? 0.0f : p * scale;
}

// silu(x) = x * sigmoid(x)
inline float Silu(float x) { return x / (1.0f + FastExp(-x)); }

// ln(x) for finite x > 0 (normal numbers): x = 2^e * m with m in [sqrt(.5), sqrt(2)),
// ln(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716, series to s^11.
inline float FastLog(float x) {
  int32_t bits = std::bit_cast<int32_t>(x);
  int32_t e = ((bits >> 23) & 0xFF) - 127;
  float m = std::bit_cast<float>((bits & 0x007FFFFF) | 0x3F800000);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  float p = 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return 2.0f * s * p + static_cast<float>(e) * 0.693147180559945309f;
}

// softplus(v) = v > 20 ? v : log1p(exp(v))  (torch's threshold 20).
// log1p(e) is computed as log(w) * e / (w - 1) with w = 1 + e, which cancels
// the rounding of 1 + e (Goldberg), exact enough for tiny e too.
inline float Softplus(float v) {
  const float e = FastExp(v);
  const float w = 1.0f + e;
  const float d = w - 1.0f;
  const float l = d == 0.0f ? e : FastLog(w) * (e / (d == 0.0f ? 1.0f : d));
  return v > 20.0f ? v : l;
}

}  // namespace ssmq::rt
