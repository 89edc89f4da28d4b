// The f32 matrix kernel every float-activation matmul ends in:
//   y[t*y_stride + r] = bias[r] + sum_c w[r*cols + c] * x[t*x_stride + c]
// for rows r in [0, rows) and tokens t in [0, n_tokens). Weight rows and token
// rows are both contiguous along c (the reduction), so a tile of rows x
// tokens keeps one vector accumulator per (row, token) pair and reduces it
// horizontally once at the end of the row.
#pragma once

#include <cstdint>

#include "runtime_cpu/simd_dispatch.h"

namespace ssmq::rt {

using F32RowsKernel = void (*)(const float* w, int64_t cols, int64_t rows, const float* bias,
                               const float* x, int64_t x_stride, int64_t n_tokens, float* y,
                               int64_t y_stride);

// kScalar: the plain C++ reference (2x4 tiles, vectorized by the compiler).
// kAvx2 uses the reference too (its target clone is AVX2). kAvx512: 4x4
// register tiles of 16-float vectors with masked column tails.
F32RowsKernel F32Kernel(KernelIsa isa);

}  // namespace ssmq::rt
