// Weight-quantized matmul kernels (Q8 / Q4 weights, f32 activations).
// The codes stay packed in memory; each kernel dequantizes a group of one
// weight row in registers and accumulates in fp32:
//   y[t][r] = bias[r] + sum_g s[r][g] * sum_{c in group g} (q[r][c] - z[r][g]) * x[t][c]
// (z = 0 for Q8, 8 for symmetric Q4, the stored zero point otherwise).
// Two implementations: the scalar reference and an AVX2+FMA one; the best
// the CPU supports is picked once (on first use) via __builtin_cpu_supports.
#pragma once

#include <cstdint>

#include "runtime_cpu/weight.h"

namespace ssmq::rt {

// Rows [r0, r1) of y for tokens [0, n_tokens) (strides in floats). bias may be null.
using QuantRowsKernel = void (*)(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                                 const float* x, int64_t x_stride, int64_t n_tokens, float* y,
                                 int64_t y_stride);

enum class KernelIsa { kScalar, kAvx2 };

// The kernel for w.format (kQ8 / kQ4) on the given ISA; nullptr for kF32 or
// when the ISA is not compiled in.
QuantRowsKernel QuantKernel(WeightFormat format, KernelIsa isa);

// The ISA MatMul uses: kAvx2 when the CPU has AVX2 and FMA, else kScalar.
// Decided once.
KernelIsa BestKernelIsa();

// Dequantizes row r of w (any format) into out[0, cols).
void DequantizeRow(const Weight& w, int64_t r, float* out);

}  // namespace ssmq::rt
