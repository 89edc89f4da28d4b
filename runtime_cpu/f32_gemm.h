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

// Prefill (many tokens), AVX-512 and AVX2 (MatMul takes it from
// kPanelMinTokens on; without AVX2 a portable loop computes the same spans):
// the same product for one panel of at
// most kF32PanelRows weight rows, packed first by F32PackPanel into
//   panel[c][kF32PanelRows]   (rows in the lanes, zero rows past `rows`),
// against the tokens packed once per call by F32PackTokens into
//   xp[tile][c][kF32TileTokens]   (tile = 12 tokens; zeros past n_tokens,
//                                  so xp holds round_up(n_tokens, 12) * cols floats).
// One 16-float vector of the panel times one broadcast activation adds a
// column to 16 rows of a token: 2 vectors x 12 tokens = 24 accumulators per
// column, no horizontal sums, each token's 32 outputs contiguous. (The
// row-tile kernel above reloads 4 rows and 4 tokens for every 16 FMAs and is
// L2-bound at prefill. Packing the tokens matters too: token rows a multiple
// of 4 KiB apart share one L1 set.) AVX2 runs each panel x tile in sub-tiles
// of 16 rows (2 vectors of 8) x 6 tokens: 12 accumulators of 16 ymm.
inline constexpr int64_t kF32PanelRows = 32;
inline constexpr int64_t kF32TileTokens = 12;
void F32PackPanel(const float* w, int64_t cols, int64_t rows, float* panel);
// F32PackPanel of 16-bit rows (f16, or bf16 when `bf16`), converted as they
// are packed: no f32 copy of the rows first (prefill converts every weight
// once per piece of Runtime::kPrefillPiece tokens). false (nothing written)
// unless AVX-512 or AVX2 and cols % 16 == 0.
bool F32PackPanelHalf(const uint16_t* w, bool bf16, int64_t cols, int64_t rows, float* panel);
void F32PackTokens(const float* x, int64_t x_stride, int64_t n_tokens, int64_t cols, float* xp);
void F32PanelTokens(const float* panel, int64_t cols, int64_t rows, const float* bias,
                    const float* xp, int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace ssmq::rt
