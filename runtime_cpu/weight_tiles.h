// Q4 and Q8 weights in 16-row tiles for the decode kernels: 16-bit
// fixed-point activations (Fixed16TileRows: the T and y of fixed16_decode.h)
// and int8 activations (int8_matmul.cpp: bit-identical to its scalar
// reference).
//
// Why: row-major, vpdpbusd's 16 int32 lanes hold 16 column groups of one
// row, so every row and 128-column block ends in an epilogue (combine hi/lo,
// convert, scale, add) and every row needs its own shared-activation
// bookkeeping: about half of the kernel's vector uops, which made the
// mamba-370m w4a16 decode compute-bound (in L1: ~15 GB/s per core, against
// ~11.5 GB/s of DRAM per core; the int8 kernel's per-block horizontal sums
// likewise). In a tile the 16 lanes are 16 rows: one
// 64-byte load carries the same 8 (Q4) or 4 (Q8) columns of 16 rows, the
// activations are broadcast dwords, each lane's block sum T stays exact in
// int32 until one epilogue per tile and block, and (Q4) the odd nibbles are
// used in place (v & 0xF0 = 16 · code, so those sums are multiples of 16 and
// come back exactly with an arithmetic shift). One contiguous stream per
// matrix also keeps more DRAM reads in flight than 4 interleaved rows: Q8 x
// int8 on one core of a Zen 5 host read 15 GB/s row-major (46 GB/s from L3)
// and the Q4 tiles 22 GB/s (bench/matvec_bench, 2026-12-02).
//
// Layout of rows [0, tiled_rows) (rows rounded down to 16; the rows past
// the last whole tile stay row-major), with row_bytes = cols / 2 (Q4) or
// cols (Q8):
//   tile T, dword j < row_bytes / 4: bytes [((T · row_bytes / 4 + j) · 16 + lane) · 4, + 4)
//   are row 16T + lane's bytes 4j .. 4j + 4.
// Q4: the packed bytes as stored (block b, chunk k < 16 is dword j = 16b + k:
// columns 128b + 8k .. + 8). Q8: each code biased to unsigned, q + 128
// (= q ^ 0x80), the operand vpdpbusd takes unsigned: dword j holds columns
// 4j .. 4j + 4, and the bias comes off as 128 · Σ activations per block, one
// scalar per token and block instead of a sum per row.
// The copy is made once at load (Runtime::Create) for every Q4 / Q8 matmul
// weight it applies to; the row-major codes stay valid for every other
// kernel, and their pages are handed back to the kernel after the copy
// (ReleasePages: clean file pages are dropped, never lost), so the resident
// size does not double. DequantizeRows / DequantizeRow (float prefill, the
// embedding) and the int8 prefill's lane path (RowCodes) read tiled rows
// from the tiles, so they do not fault the row-major pages back in.
#pragma once

#include <algorithm>
#include <cstdint>

#include "runtime_cpu/fixed16_decode.h"
#include "runtime_cpu/simd_dispatch.h"
#include "runtime_cpu/weight.h"

namespace ssmq::rt {

inline constexpr int64_t kWeightTileRows = 16;

// Q4 without zero points or Q8, fixed16 shapes (Fixed16Applies), AVX-512 or
// AVX2 (its tile kernels: weight_tiles.cpp, int8_matmul.cpp), >= 16 rows.
// int8_input (the weight only ever meets int8 activations at decode): also
// Q8 whose groups are multiples of 64 columns and divide the row, which only
// the int8 tile kernel reads (w8a8's 64-column dt_proj at 370m: per row one
// vpdpbusd and a horizontal sum, where a tile of 16 rows takes 16 vpdpbusd
// and one epilogue). The float kernels of such a weight read its row-major
// codes (still valid, faulted back in if they ever run).
bool TilesApply(const Weight& w, KernelIsa isa, bool int8_input = false);

// Bytes of w's tiles (0 when TilesApply does not hold on this CPU): the
// codes, and unless int8_input the tiled scales after them.
size_t TileBytes(const Weight& w, bool int8_input = false);

// Builds w.tiled_codes / tiled_rows, and unless int8_input w.tiled_scales
// (no-op when it does not apply or is built already) into `dst`
// (TileBytes(w, int8_input) bytes, e.g. a HugeArena slice; nullptr:
// w.owned_tiles) and hands the row-major pages back (ReleasePages).
void BuildTiles(Weight& w, uint8_t* dst = nullptr, bool int8_input = false);

// Bytes of one row-major row of codes: cols / 2 (Q4) or cols (Q8).
inline int64_t RowCodeBytes(const Weight& w) {
  return w.format == WeightFormat::kQ4 ? w.cols / 2 : w.cols;
}

// Where the decode kernels read rows [r0, r1) of w, for prefetching: the
// tiles where the rows are tiled (a tile holds its 16 rows in 16 · row-bytes
// contiguous bytes, so rows map to bytes linearly; r0 rounds down to its
// tile), else the row-major codes, 16-bit or f32 values. {nullptr, 0}: absent.
struct ByteRange {
  const void* begin = nullptr;
  int64_t bytes = 0;
};
inline ByteRange RowRangeBytes(const Weight& w, int64_t r0, int64_t r1) {
  if (r1 <= r0) return {};
  if (w.quantized()) {
    const int64_t row_bytes = RowCodeBytes(w);
    if (w.row_tiled(r0)) {
      r0 -= r0 % kWeightTileRows;
      return {w.tiled_codes + r0 * row_bytes, (r1 - r0) * row_bytes};
    }
    return {w.codes + r0 * row_bytes, (r1 - r0) * row_bytes};
  }
  if (w.half) return {w.half + r0 * w.cols, (r1 - r0) * w.cols * 2};
  if (w.f32) return {w.f32 + r0 * w.cols, (r1 - r0) * w.cols * 4};
  return {};
}

// Row r (w.row_tiled(r)) of the tiles back in row-major form (Q8: signed
// codes again): RowCodeBytes(w) bytes.
void UntileRow(const Weight& w, int64_t r, uint8_t* out);

// Row r's codes: the row-major row, or (tiled rows) `scratch`
// (RowCodeBytes(w) bytes) filled from the tiles.
inline const uint8_t* RowCodes(const Weight& w, int64_t r, uint8_t* scratch) {
  if (!w.row_tiled(r)) return w.codes + r * RowCodeBytes(w);
  UntileRow(w, r, scratch);
  return scratch;
}

// The whole tiles inside rows [r0, r1): [*t0, *t1) (empty when none).
inline void TilesWithin(const Weight& w, int64_t r0, int64_t r1, int64_t* t0, int64_t* t1) {
  *t0 = (r0 + kWeightTileRows - 1) / kWeightTileRows;
  *t1 = std::min(r1, w.tiled_rows) / kWeightTileRows;
}

// Where a tile kernel finds the 16 row scales of each group of one tile:
// group g's scale of lane i is at[g · group_step + i · lane_step]. In
// w.tiled_scales a group's 16 floats are one load (lane_step 1); in the
// row-major w.scales the lanes are groups_per_row apart (a gather, or one
// load when there is one group per row).
struct TileScaleWalk {
  const float* at;
  int64_t group_step, lane_step;
};
inline TileScaleWalk TileScalesOf(const Weight& w, int64_t tile) {
  const int64_t ng = w.groups_per_row(), offset = tile * kWeightTileRows * ng;
  if (w.tiled_scales) return {w.tiled_scales + offset, kWeightTileRows, 1};
  return {w.scales + offset, 1, ng};
}

#ifdef SSMQ_HAVE_X86_KERNELS
// Gather indices of one tile's 16 row scales: lane i -> i · groups_per_row.
SSMQ_TARGET_AVX512 inline __m512i TileScaleIndex(int64_t groups_per_row) {
  return _mm512_mullo_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
      _mm512_set1_epi32(static_cast<int32_t>(groups_per_row)));
}
// The 4 bytes at p as 16 equal dwords, loaded straight into the vector unit:
// vpbroadcastd from memory is a load-port uop, where a dword first copied to a
// local array and broadcast from a general register costs shuffle-port uops
// on every use (4 per 64-byte chunk in the tile kernels).
SSMQ_TARGET_AVX512 inline __m512i BroadcastDword(const void* p) {
  return _mm512_broadcastd_epi32(_mm_loadu_si32(p));
}
// The AVX2 tile kernels' two: a tile is two 8-row ymm halves, so the
// indices cover 8 rows (lane i -> i · groups_per_row) and a dword fills 8 lanes.
SSMQ_TARGET_AVX2 inline __m256i HalfTileScaleIndex(int64_t groups_per_row) {
  return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                            _mm256_set1_epi32(static_cast<int32_t>(groups_per_row)));
}
SSMQ_TARGET_AVX2 inline __m256i BroadcastDword256(const void* p) {
  return _mm256_broadcastd_epi32(_mm_loadu_si32(p));
}
#endif

// Asks for the scales of the tile after `tile` (16 rows x groups_per_row
// floats, contiguous in either layout). The tile kernels read a tile's 16 row
// scales per block (one load, or a gather from the row-major array): without this
// the first block of every tile waited for up to 16 cache lines that no
// prefetcher had asked for, as the codes stream in the tiles and the scales
// in the file's own array (mamba-370m w4a16 decode: +8-10%, the out_proj
// tiles of 1024 x 2048 reading 16 scale lines per 16 KiB of codes). Past the
// last tile it asks for lines never used (a prefetch never faults).
inline void PrefetchNextTileScales(const Weight& w, int64_t tile) {
  const int64_t per_tile = kWeightTileRows * w.groups_per_row();  // floats, either layout
  const uintptr_t begin = reinterpret_cast<uintptr_t>(TileScalesOf(w, tile + 1).at);
  const uintptr_t end = begin + static_cast<uintptr_t>(per_tile) * 4;
  for (uintptr_t p = begin & ~uintptr_t{63}; p < end; p += 64) {
    PrefetchRead(reinterpret_cast<const void*>(p));
  }
}

// Rows [r0, r1) of w dequantized from the tiles straight into the f32 panel
// of f32_gemm.h (panel[c][kF32PanelRows], zero rows past r1 - r0): what
// DequantizeRows + F32PackPanel give, bit for bit, without the untiling, the
// row-major f32 copy and the transpose. false (nothing written) unless
// AVX-512 or AVX2, r0 and r1 - r0 multiples of 16, 0 < r1 - r0 <= kF32PanelRows and
// r1 <= w.tiled_rows.
bool PackTiledPanel(const Weight& w, int64_t r0, int64_t r1, float* panel);

// y rows [16 · t0, 16 · t1) of Fixed16Rows from the tiles (t1 · 16 <= tiled_rows).
void Fixed16TileRows(const Weight& w, int64_t t0, int64_t t1, const float* bias,
                     const Fixed16Activations& xa, int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace ssmq::rt
