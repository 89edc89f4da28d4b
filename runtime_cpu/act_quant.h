// Activation quantization: the "A8" half of the w8a8 / w4a8 schemes.
//
// An activation site (a matmul input, the SSM input, B/C, dt, the SSM state)
// is turned into int8 codes, symmetric, zero point 0, round half to even:
//   q[t][c] = clamp(RNE(x[t][c] / s), -127, 127)      x̂[t][c] = q[t][c] · s
// where the scale s is
//   kStatic:          s = scales[c / group]   (calibrated offline; one group = per tensor)
//   kDynamicPerToken: s = s_t = max_c |x[t][c]| / 127 per row, computed at run time
//                     (an all-zero row gets s_t = 1 and codes 0).
// Codes never reach -128, so an int8·int8 product pair fits the int16 lanes of
// the AVX2 maddubs instruction without saturation.
//
// Two ways to run a matmul whose input is quantized, which must agree:
//   the integer path: QuantizeActivations -> Int8MatMul (int8 x int8 -> int32
//     per block, scaled once per block), what a w8a8 / w4a8 file executes;
//   the simulated path (the oracle): FakeQuantize the float input in place
//     (x <- x̂), then the float-activation MatMul of weight.h, which multiplies
//     by the dequantized weights. Both compute sum_c ŵ[r][c] · x̂[t][c]; they
//     differ only in the fp32 summation order.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime_cpu/weight.h"

namespace ssmq::rt {

struct ActQuant {
  enum class Mode : uint8_t { kNone, kStatic, kDynamicPerToken };
  Mode mode = Mode::kNone;
  std::vector<float> scales;  // kStatic: [cols / group], each > 0 and finite
  int64_t group = 0;          // kStatic: channels per scale (== cols: per tensor)
  // kStatic with narrow groups (< 16 channels): scales[c / group] for every
  // column, expanded once (SetColumnScales) so FakeQuantize does not divide
  // per column per call; empty otherwise.
  std::vector<float> column_scales;

  bool enabled() const { return mode != Mode::kNone; }
  // The scale of (row t, channel c) for kStatic; row_scale for dynamic.
  float StaticScale(int64_t c) const { return scales[static_cast<size_t>(c / group)]; }
};

// Fills aq.column_scales for `cols` columns when aq is kStatic with groups
// narrower than 16 (FakeQuantize's per-column path); clears it otherwise.
void SetColumnScales(ActQuant& aq, int64_t cols);

// Round half to even of v, clamped to [-127, 127]. The one rounding rule of
// every activation quantizer (std::nearbyint in the default FE_TONEAREST mode).
int8_t QuantizeValue(float v);

// Quantizes rows [rows][cols] of x (row stride x_stride) into q [rows][cols]
// (row stride cols). row_scales[rows]: kDynamicPerToken gets each row's s_t;
// kStatic writes 1.0f (the static scales stay in aq). aq.mode must not be kNone.
// Rows go to n_threads OpenMP threads when worth it (the result is the same).
void QuantizeActivations(const ActQuant& aq, const float* x, int64_t x_stride, int64_t rows,
                         int64_t cols, int8_t* q, float* row_scales, int n_threads = 1);

// x <- x̂ in place (rows [rows][cols], row stride `stride`): the simulated path.
// kNone leaves x unchanged.
void FakeQuantize(const ActQuant& aq, float* x, int64_t stride, int64_t rows, int64_t cols,
                  int n_threads = 1);
// FakeQuantize of columns [c0, c1) of each row only (the same values), on
// the calling thread. kNone or kStatic: a dynamic scale needs whole rows.
void FakeQuantizeColumns(const ActQuant& aq, float* x, int64_t stride, int64_t rows, int64_t c0,
                         int64_t c1);

// The block width the integer kernel accumulates in int32 before converting to
// float: the smaller of the weight's group and the static activation group
// (the whole row when both are per row). 0 when they are incompatible (neither
// divides the other, or a group is odd for Q4) — Int8MatMul must not be called then.
int64_t Int8BlockWidth(const Weight& w, const ActQuant& aq);

// w.q8_block_sums for a Q8 weight multiplied by int8 activations of `aq`, when
// its blocks (Int8BlockWidth) are at least kQ8SumMinBlock columns wide: the
// sums then cost at most 4 bytes per 512 weight bytes of extra reads. No-op
// otherwise. Exact int32 (the block bound of Int8BlockWidth).
inline constexpr int64_t kQ8SumMinBlock = 512;
void BuildQ8BlockSums(Weight& w, const ActQuant& aq);

// Integer matmul for Q8 / Q4 weights and int8 activations q [n_tokens][w.cols]
// (from QuantizeActivations with the same aq):
//   y[t*y_stride + r] = bias[r] + row_scales[t] · sum_b  sa(b) · sw(r, b) · sum_{c in b} q[t][c] · (wq[r][c] − z)
// blocks b of Int8BlockWidth columns; sa(b) = the static act scale of the block
// (1 for dynamic), sw(r, b) = the weight scale of the group holding the block,
// z = 0 for Q8, the Q4 zero point (8 when absent). Each block sum is exact in
// int32 (|sum| <= 127·15·width < 2^31 for width <= 2^20); the float sums run
// in a fixed order per (t, r) independent of the thread count.
// Tokens are processed in blocks so each weight row is read once per block;
// OpenMP over row chunks when WorthThreads. bias may be null or absent.
void Int8MatMul(const Weight& w, const Weight* bias, const ActQuant& aq, const int8_t* q,
                const float* row_scales, int64_t n_tokens, float* y, int64_t y_stride,
                int n_threads);
// Int8MatMul of one token block (Int8PlanApplies: at most 64 tokens; the
// row-tile kernels, not the prefill lane path), prepared (RowsPlan,
// weight.h); q and row_scales must outlive the plan.
bool Int8PlanApplies(int64_t n_tokens);
RowsPlan PlanInt8MatMul(const Weight& w, const Weight* bias, const ActQuant& aq, const int8_t* q,
                        const float* row_scales, int64_t n_tokens, float* y, int64_t y_stride);

// The kernel ISA Int8MatMul uses (decided once from CpuIsa(): AVX-512 VNNI,
// else AVX2, else scalar). Exposed so tests can run the scalar reference and
// each SIMD kernel on the same input and compare them: they agree bit for bit
// (exact int32 block sums, the same fp32 combination order: int8_matmul.cpp).
// Int8MatMulWithIsa lowers an ISA the CPU lacks to the best one it has.
enum class Int8Isa { kScalar, kAvx2, kAvx512Vnni };
Int8Isa BestInt8Isa();
void Int8MatMulWithIsa(Int8Isa isa, const Weight& w, const Weight* bias, const ActQuant& aq,
                       const int8_t* q, const float* row_scales, int64_t n_tokens, float* y,
                       int64_t y_stride, int n_threads);

}  // namespace ssmq::rt
