// Matmul kernels for weights that are not f32 (Q8 / Q4 codes, F16 / BF16
// values), f32 activations.
//
// Direct kernels (decode: a few tokens): each kernel converts a group of one
// weight row in registers and accumulates in fp32:
//   y[t][r] = bias[r] + sum_g s[r][g] * sum_{c in group g} (q[r][c] - z[r][g]) * x[t][c]
// (z = 0 for Q8, 8 for symmetric Q4, the stored zero point otherwise; F16 /
// BF16 have one group per row and s = 1).
// Expanded path (prefill: many tokens): MatMul (weight.cpp) converts a chunk
// of rows to f32 once with DequantizeRows and runs the f32 kernel on it, so
// the conversion is paid once per 64 tokens instead of once per token.
// Implementations: the scalar reference, AVX2+FMA+F16C and AVX-512; the best
// the CPU supports is picked once (simd_dispatch.h).
#pragma once

#include <cstdint>

#include "runtime_cpu/simd_dispatch.h"
#include "runtime_cpu/weight.h"

namespace ssmq::rt {

// Rows [r0, r1) of y for tokens [0, n_tokens) (strides in floats). bias may be null.
using QuantRowsKernel = void (*)(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                                 const float* x, int64_t x_stride, int64_t n_tokens, float* y,
                                 int64_t y_stride);

// The direct kernel for w.format on the given ISA; nullptr for kF32 or when
// the ISA is not compiled in.
QuantRowsKernel QuantKernel(WeightFormat format, KernelIsa isa);

// The ISA MatMul uses (CpuIsa()).
KernelIsa BestKernelIsa();

// Q4 weights at decode on AVX-512: the activations reordered once per call
// (each 32-column block: its 16 even columns, then its 16 odd ones), so each
// row unpacks with one widening and table lookups (quant_matmul.cpp).
// Applies when every group is whole multiples of 32.
struct Q4Activations {
  const float* reordered;  // [n_tokens][cols]
};
bool Q4DecodeApplies(const Weight& w, KernelIsa isa);
// Into per-thread buffers reused by later calls (no allocation once grown).
Q4Activations PrepareQ4Activations(const Weight& w, const float* x, int64_t x_stride,
                                   int64_t n_tokens);
void Q4DecodeRows(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                  const Q4Activations& xa, int64_t n_tokens, float* y, int64_t y_stride);

// Dequantizes row r of w (any format) into out[0, cols): the reference.
void DequantizeRow(const Weight& w, int64_t r, float* out);
// Rows [r0, r1) into out[(r - r0) * cols + c], with the SIMD of `isa`
// (the same values as DequantizeRow: every conversion here is exact except
// the one multiply q * s, which both round once).
void DequantizeRows(const Weight& w, int64_t r0, int64_t r1, float* out, KernelIsa isa);

}  // namespace ssmq::rt
