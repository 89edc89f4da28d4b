// Q4 / Q8 16-row tiles: the copy, row access, and the 16-bit-activation kernels (weight_tiles.h).
#include "runtime_cpu/weight_tiles.h"

#include "runtime_cpu/f32_gemm.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

namespace ssmq::rt {

namespace {

constexpr int64_t kChunkBytes = 64;  // one load: 4 packed bytes × 16 rows
constexpr int64_t kChunksPerBlock = kFixed16Block / 8;
constexpr int64_t kBlockTileBytes = kChunkBytes * kChunksPerBlock;  // 16 rows × 64 bytes
constexpr int kSets = 4;  // accumulator sets: chunk k adds into set k mod 4

#ifdef SSMQ_HAVE_X86_KERNELS
// One tile (16 rows) of one token; see the header for the layout. Per block:
// 16 chunks × (one load, two masks, four vpdpbusd with broadcast activation
// dwords) into 4 × kSets accumulators (shorter vpdpbusd chains: 4 sets
// decode mamba2-370m w4a16 3-4% faster than 2 in decode_ab_bench), then
// T for the 16 rows in one vector:
//   T = 256 · (Σ q_e·hi + Σ 16q_o·hi / 16) + Σ q_e·lo + Σ 16q_o·lo / 16 - 8 · Σv
// and y += float(T) · (s_row · scale_b), the order of Fixed16RowsScalar.
SSMQ_TARGET_AVX512 void TileAvx512(const Weight& w, int64_t tile, const int8_t* xb,
                                   const float* xscale, const int32_t* block_sums,
                                   __m512i scale_index, const float* bias, float* out) {
  const int64_t nb = w.cols / kFixed16Block;
  const int64_t blocks_per_group = w.group_size / kFixed16Block;
  const uint8_t* p = w.tiled_codes + tile * nb * kBlockTileBytes;
  const TileScaleWalk sw = TileScalesOf(w, tile);
  const bool scales_in_one_load = sw.lane_step == 1;
  const int64_t ahead = kPrefetchRows * (w.cols / 2);  // one tile on at 16 rows
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512 acc = _mm512_setzero_ps();
  const float* group_scales = sw.at;  // this block's group: column b / blocks_per_group
  PrefetchNextTileScales(w, tile);
  for (int64_t b = 0, in_group = 0; b < nb; ++b) {
    // Parts hi-even, hi-odd, lo-even, lo-odd: 64 bytes each, dword k for chunk k.
    const int8_t* x = xb + b * 256;
    __m512i he[kSets], ho[kSets], le[kSets], lo[kSets];
    for (int j = 0; j < kSets; ++j) he[j] = ho[j] = le[j] = lo[j] = _mm512_setzero_si512();
    const uint8_t* pb = p + b * kBlockTileBytes;
#pragma GCC unroll 16
    for (int k = 0; k < kChunksPerBlock; ++k) {
      const int j = k % kSets;
      PrefetchRead(pb + k * kChunkBytes + ahead);
      __m512i v = _mm512_loadu_si512(pb + k * kChunkBytes);
      SSMQ_PIN_VECTOR(v);  // one load (GCC folds it into both masks: two loads)
      const __m512i even = _mm512_and_si512(v, low4);  // q of columns 8k, 8k+2, ...
      const __m512i odd = _mm512_and_si512(v, high4);  // 16 · q of columns 8k+1, ...
      he[j] = _mm512_dpbusd_epi32(he[j], even, BroadcastDword(x + 4 * k));
      ho[j] = _mm512_dpbusd_epi32(ho[j], odd, BroadcastDword(x + 64 + 4 * k));
      le[j] = _mm512_dpbusd_epi32(le[j], even, BroadcastDword(x + 128 + 4 * k));
      lo[j] = _mm512_dpbusd_epi32(lo[j], odd, BroadcastDword(x + 192 + 4 * k));
    }
    for (int j = 1; j < kSets; ++j) {
      he[0] = _mm512_add_epi32(he[0], he[j]);
      ho[0] = _mm512_add_epi32(ho[0], ho[j]);
      le[0] = _mm512_add_epi32(le[0], le[j]);
      lo[0] = _mm512_add_epi32(lo[0], lo[j]);
    }
    const __m512i hi = _mm512_add_epi32(he[0], _mm512_srai_epi32(ho[0], 4));
    const __m512i lo_sum = _mm512_add_epi32(le[0], _mm512_srai_epi32(lo[0], 4));
    const __m512i t = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo_sum),
                                       _mm512_set1_epi32(-8 * block_sums[b]));
    // The gather was ~28% of this kernel's time from cache (perf, Zen 5).
    const __m512 s = scales_in_one_load ? _mm512_loadu_ps(group_scales)
                                        : _mm512_i32gather_ps(scale_index, group_scales, 4);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(s, _mm512_set1_ps(xscale[b])), acc);
    if (++in_group == blocks_per_group) in_group = 0, group_scales += sw.group_step;
  }
  if (bias) acc = _mm512_add_ps(acc, _mm512_loadu_ps(bias));
  _mm512_storeu_ps(out, acc);
}

// One Q8 tile (16 rows) of one token. Per 128-column block: 32 chunks of 4
// columns × 16 rows, each one load and two vpdpbusd (the biased codes times
// the hi / lo activation dwords; kNatural layout: columns 4k.. at byte 4k of
// the hi parts, 128 + 4k of the lo parts), then
//   T = 256 · Σ (q+128)·hi + Σ (q+128)·lo - 128 · Σv
// and y += float(T) · (s_row · scale_b), the order of Fixed16RowsScalar.
SSMQ_TARGET_AVX512 void TileQ8Avx512(const Weight& w, int64_t tile, const int8_t* xb,
                                     const float* xscale, const int32_t* block_sums,
                                     __m512i scale_index, const float* bias, float* out) {
  constexpr int64_t kQ8BlockTileBytes = kWeightTileRows * kFixed16Block;  // 2 KiB
  const int64_t nb = w.cols / kFixed16Block;
  const int64_t blocks_per_group = w.group_size / kFixed16Block;
  const uint8_t* p = w.tiled_codes + tile * nb * kQ8BlockTileBytes;
  const TileScaleWalk sw = TileScalesOf(w, tile);
  const bool scales_in_one_load = sw.lane_step == 1;  // (ng == 1: row-major is one load too)
  const int64_t ahead = kPrefetchRows * w.cols;  // one tile on at 16 rows
  PrefetchNextTileScales(w, tile);
  __m512 acc = _mm512_setzero_ps();
  const float* group_scales = sw.at;
  for (int64_t b = 0, in_group = 0; b < nb; ++b) {
    const int8_t* x = xb + b * 256;
    __m512i hi[kSets], lo[kSets];
    for (int j = 0; j < kSets; ++j) hi[j] = lo[j] = _mm512_setzero_si512();
    const uint8_t* pb = p + b * kQ8BlockTileBytes;
#pragma GCC unroll 32
    for (int k = 0; k < 32; ++k) {
      const int j = k % kSets;
      PrefetchRead(pb + k * kChunkBytes + ahead);
      const __m512i v = _mm512_loadu_si512(pb + k * kChunkBytes);
      hi[j] = _mm512_dpbusd_epi32(hi[j], v, BroadcastDword(x + 4 * k));
      lo[j] = _mm512_dpbusd_epi32(lo[j], v, BroadcastDword(x + 128 + 4 * k));
    }
    for (int j = 1; j < kSets; ++j) {
      hi[0] = _mm512_add_epi32(hi[0], hi[j]);
      lo[0] = _mm512_add_epi32(lo[0], lo[j]);
    }
    const __m512i t = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(hi[0], 8), lo[0]),
                                       _mm512_set1_epi32(-128 * block_sums[b]));
    const __m512 s = scales_in_one_load ? _mm512_loadu_ps(group_scales)
                                        : _mm512_i32gather_ps(scale_index, group_scales, 4);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(s, _mm512_set1_ps(xscale[b])), acc);
    if (++in_group == blocks_per_group) in_group = 0, group_scales += sw.group_step;
  }
  if (bias) acc = _mm512_add_ps(acc, _mm512_loadu_ps(bias));
  _mm512_storeu_ps(out, acc);
}

// PackTiledPanel's kernel: 16 rows (one tile) per half panel. A tile dword
// holds 8 (Q4) or 4 (Q8) consecutive columns of 16 rows, so shifting and
// masking it gives one column of 16 rows: the panel's layout, no transpose.
SSMQ_TARGET_AVX512 void PackTiledPanelAvx512(const Weight& w, int64_t r0, int64_t r1,
                                             float* panel) {
  constexpr int64_t P = kF32PanelRows;
  const bool q8 = w.format == WeightFormat::kQ8;
  const int64_t cols = w.cols, row_bytes = RowCodeBytes(w), ng = w.groups_per_row();
  const int64_t per_dword = q8 ? 4 : 8, dwords_per_group = w.group_size / per_dword;
  const __m512i scale_index = TileScaleIndex(ng);
  const __m512i low4 = _mm512_set1_epi32(0xF), eight = _mm512_set1_epi32(8);
  const __m512i bias = _mm512_set1_epi32(static_cast<int>(0x80808080u));
  for (int64_t h = 0; h < P; h += kWeightTileRows) {
    if (r0 + h >= r1) {
      for (int64_t c = 0; c < cols; ++c) _mm512_storeu_ps(panel + c * P + h, _mm512_setzero_ps());
      continue;
    }
    const int64_t tile = (r0 + h) / kWeightTileRows;
    const uint8_t* tp = w.tiled_codes + tile * kWeightTileRows * row_bytes;
    const TileScaleWalk sw = TileScalesOf(w, tile);
    for (int64_t g = 0; g < ng; ++g) {
      const float* group_scales = sw.at + g * sw.group_step;
      const __m512 s = sw.lane_step == 1 ? _mm512_loadu_ps(group_scales)
                                         : _mm512_i32gather_ps(scale_index, group_scales, 4);
      for (int64_t j = g * dwords_per_group; j < (g + 1) * dwords_per_group; ++j) {
        const __m512i v = _mm512_loadu_si512(tp + j * 64);
        float* out = panel + j * per_dword * P + h;
        if (q8) {
          const __m512i q = _mm512_xor_si512(v, bias);  // signed codes again
#pragma GCC unroll 4
          for (int n = 0; n < 4; ++n) {  // byte n, sign-extended: (q << 8(3 - n)) >> 24
            const __m512i up = _mm512_sllv_epi32(q, _mm512_set1_epi32(24 - 8 * n));
            const __m512i code = _mm512_srai_epi32(up, 24);
            _mm512_storeu_ps(out + n * P, _mm512_mul_ps(_mm512_cvtepi32_ps(code), s));
          }
        } else {
#pragma GCC unroll 8
          for (int n = 0; n < 8; ++n) {
            // (q - 8) · s: the product DequantizeRow rounds once, too
            const __m512i code = _mm512_and_si512(_mm512_srli_epi32(v, 4 * n), low4);
            _mm512_storeu_ps(out + n * P,
                             _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(code, eight)), s));
          }
        }
      }
    }
  }
}

SSMQ_TARGET_AVX512 void TileRowsAvx512(const Weight& w, int64_t t0, int64_t t1,
                                       const float* bias, const Fixed16Activations& xa,
                                       int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t nb = w.cols / kFixed16Block, ng = w.groups_per_row();
  const __m512i scale_index = TileScaleIndex(ng);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t r = tile * kWeightTileRows;
      if (w.format == WeightFormat::kQ8)
        TileQ8Avx512(w, tile, xa.bytes + t * nb * 256, xa.scales + t * nb,
                     xa.block_sums + t * nb, scale_index, bias ? bias + r : nullptr,
                     y + t * y_stride + r);
      else
        TileAvx512(w, tile, xa.bytes + t * nb * 256, xa.scales + t * nb, xa.block_sums + t * nb,
                   scale_index, bias ? bias + r : nullptr, y + t * y_stride + r);
    }
  }
}

// ---------------------------------------------------------------- AVX2
// The same T and y without VNNI (Zen 3 and other AVX2-only x86): a 64-byte
// tile chunk is two ymm halves of 8 rows, and each int32 lane is still a row.
//   Q4: maddubs(codes, activation dword) (unsigned codes 0..15 times signed
//       hi / lo bytes, adjacent pairs into int16: at most 2 · 15 · 128 = 3840)
//       for the even and the odd nibbles; the int16 sums of 4 chunks (30720)
//       are exact before one widening madd with ones.
//   Q8: the biased codes q + 128 widened to int16 (vpmovzxbw) times the 16-bit
//       v of 4 columns broadcast (Fixed16Activations::values), madd into int32
//       pairs (255 · 32639 · 2 < 2^31; a row's block sum < 2^31 too); the two
//       pairs of a row are added by one hadd per block, and 128 · Σv comes off.
// (maddubs cannot take Q8's hi / lo bytes: 255 · 128 · 2 overflows its int16.)
// The 8 rows' scales of the block's group: lane i -> row i of the half tile
// (half h of a TileScaleWalk: sw.at + g · group_step + 8h · lane_step).
SSMQ_TARGET_AVX2 inline __m256 HalfTileScales(const float* group_scales, int64_t lane_step,
                                              __m256i scale_index) {
  return lane_step == 1 ? _mm256_loadu_ps(group_scales)
                        : _mm256_i32gather_ps(group_scales, scale_index, 4);
}

// 32 tile bytes (8 rows x 8 Q4 codes) against the four activation dwords of
// their columns: adds the rows' int16 pair sums of code · hi to h, of
// code · lo to l.
SSMQ_TARGET_AVX2 inline void AddHiLo(const uint8_t* p, __m256i he, __m256i ho, __m256i le,
                                     __m256i lodd, __m256i low4, __m256i& h, __m256i& l) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i even = _mm256_and_si256(v, low4);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  h = _mm256_add_epi16(h, _mm256_add_epi16(_mm256_maddubs_epi16(even, he),
                                           _mm256_maddubs_epi16(odd, ho)));
  l = _mm256_add_epi16(l, _mm256_add_epi16(_mm256_maddubs_epi16(even, le),
                                           _mm256_maddubs_epi16(odd, lodd)));
  SSMQ_PIN_VECTOR(h);
  SSMQ_PIN_VECTOR(l);
}

SSMQ_TARGET_AVX2 void TileAvx2(const Weight& w, int64_t tile, const int8_t* xb,
                               const float* xscale, const int32_t* block_sums,
                               __m256i scale_index, const float* bias, float* out) {
  const int64_t nb = w.cols / kFixed16Block;
  const int64_t blocks_per_group = w.group_size / kFixed16Block;
  const uint8_t* p = w.tiled_codes + tile * nb * kBlockTileBytes;
  const int64_t ahead = kPrefetchRows * (w.cols / 2);  // one tile on at 16 rows
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  const TileScaleWalk sw = TileScalesOf(w, tile);
  const int64_t lane_step = sw.lane_step;
  const float* group_scales = sw.at;
  PrefetchNextTileScales(w, tile);
  for (int64_t b = 0, in_group = 0; b < nb; ++b) {
    const int8_t* x = xb + b * 256;  // parts hi-even, hi-odd, lo-even, lo-odd
    const uint8_t* pb = p + b * kBlockTileBytes;
    __m256i hi[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    __m256i lo[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int k4 = 0; k4 < kChunksPerBlock; k4 += 4) {
      // int16 sums of 4 chunks: [hi / lo][half]
      __m256i h0 = _mm256_setzero_si256(), h1 = h0, l0 = h0, l1 = h0;
      for (int k = k4; k < k4 + 4; ++k) {
        PrefetchRead(pb + k * kChunkBytes + ahead);
        const __m256i he = BroadcastDword256(x + 4 * k), ho = BroadcastDword256(x + 64 + 4 * k);
        const __m256i le = BroadcastDword256(x + 128 + 4 * k);
        const __m256i lodd = BroadcastDword256(x + 192 + 4 * k);
        const uint8_t* chunk = pb + k * kChunkBytes;
        AddHiLo(chunk, he, ho, le, lodd, low4, h0, l0);
        AddHiLo(chunk + 32, he, ho, le, lodd, low4, h1, l1);
      }
      hi[0] = _mm256_add_epi32(hi[0], _mm256_madd_epi16(h0, ones));
      hi[1] = _mm256_add_epi32(hi[1], _mm256_madd_epi16(h1, ones));
      lo[0] = _mm256_add_epi32(lo[0], _mm256_madd_epi16(l0, ones));
      lo[1] = _mm256_add_epi32(lo[1], _mm256_madd_epi16(l1, ones));
    }
    const __m256i zero_point = _mm256_set1_epi32(-8 * block_sums[b]);
    const __m256 xs = _mm256_set1_ps(xscale[b]);
    for (int h = 0; h < 2; ++h) {
      const __m256i t =
          _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(hi[h], 8), lo[h]), zero_point);
      const __m256 s = HalfTileScales(group_scales + h * 8 * lane_step, lane_step, scale_index);
      acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(s, xs), acc[h]);
    }
    if (++in_group == blocks_per_group) in_group = 0, group_scales += sw.group_step;
  }
  for (int h = 0; h < 2; ++h) {
    if (bias) acc[h] = _mm256_add_ps(acc[h], _mm256_loadu_ps(bias + 8 * h));
    _mm256_storeu_ps(out + 8 * h, acc[h]);
  }
}

SSMQ_TARGET_AVX2 void TileQ8Avx2(const Weight& w, int64_t tile, const int16_t* values,
                                 const float* xscale, const int32_t* block_sums,
                                 __m256i scale_index, const float* bias, float* out) {
  constexpr int64_t kQ8BlockTileBytes = kWeightTileRows * kFixed16Block;  // 2 KiB
  const int64_t nb = w.cols / kFixed16Block;
  const int64_t blocks_per_group = w.group_size / kFixed16Block;
  const uint8_t* p = w.tiled_codes + tile * nb * kQ8BlockTileBytes;
  const int64_t ahead = kPrefetchRows * w.cols;  // one tile on at 16 rows
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  const TileScaleWalk sw = TileScalesOf(w, tile);
  const int64_t lane_step = sw.lane_step;
  const float* group_scales = sw.at;
  PrefetchNextTileScales(w, tile);
  for (int64_t b = 0, in_group = 0; b < nb; ++b) {
    const int16_t* v = values + b * kFixed16Block;
    const uint8_t* pb = p + b * kQ8BlockTileBytes;
    // sum[h][q]: rows 8h + 4q .. + 3, two int32 lanes (column pairs) per row
    __m256i sum[2][2];
    for (int h = 0; h < 2; ++h) sum[h][0] = sum[h][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 32; ++k) {  // columns 4k .. 4k + 3 of the block
      PrefetchRead(pb + k * kChunkBytes + ahead);
      const __m256i xv = _mm256_broadcastq_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v + 4 * k)));
      for (int h = 0; h < 2; ++h) {
        for (int q = 0; q < 2; ++q) {
          const __m256i u = _mm256_cvtepu8_epi16(_mm_loadu_si128(
              reinterpret_cast<const __m128i*>(pb + k * kChunkBytes + 32 * h + 16 * q)));
          sum[h][q] = _mm256_add_epi32(sum[h][q], _mm256_madd_epi16(u, xv));
          SSMQ_PIN_VECTOR(sum[h][q]);
        }
      }
    }
    const __m256i bias_sum = _mm256_set1_epi32(-128 * block_sums[b]);
    const __m256 xs = _mm256_set1_ps(xscale[b]);
    for (int h = 0; h < 2; ++h) {
      // hadd: rows 0 1 4 5 | 2 3 6 7 of the half; 0xD8 puts them in order.
      const __m256i rows =
          _mm256_permute4x64_epi64(_mm256_hadd_epi32(sum[h][0], sum[h][1]), 0xD8);
      const __m256i t = _mm256_add_epi32(rows, bias_sum);
      const __m256 s = HalfTileScales(group_scales + h * 8 * lane_step, lane_step, scale_index);
      acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(s, xs), acc[h]);
    }
    if (++in_group == blocks_per_group) in_group = 0, group_scales += sw.group_step;
  }
  for (int h = 0; h < 2; ++h) {
    if (bias) acc[h] = _mm256_add_ps(acc[h], _mm256_loadu_ps(bias + 8 * h));
    _mm256_storeu_ps(out + 8 * h, acc[h]);
  }
}

// PackTiledPanelAvx512 on AVX2: each 16-row tile is two 8-row halves, one
// ymm per tile dword half; the same shifts, masks, conversions and one
// multiply per value, so the panel is the same bit for bit.
SSMQ_TARGET_AVX2 void PackTiledPanelAvx2(const Weight& w, int64_t r0, int64_t r1, float* panel) {
  constexpr int64_t P = kF32PanelRows;
  const bool q8 = w.format == WeightFormat::kQ8;
  const int64_t cols = w.cols, row_bytes = RowCodeBytes(w), ng = w.groups_per_row();
  const int64_t per_dword = q8 ? 4 : 8, dwords_per_group = w.group_size / per_dword;
  const __m256i scale_index = HalfTileScaleIndex(ng);
  const __m256i low4 = _mm256_set1_epi32(0xF), eight = _mm256_set1_epi32(8);
  const __m256i bias = _mm256_set1_epi32(static_cast<int>(0x80808080u));
  for (int64_t h = 0; h < P; h += kWeightTileRows) {
    if (r0 + h >= r1) {
      for (int64_t c = 0; c < cols; ++c) {
        _mm256_storeu_ps(panel + c * P + h, _mm256_setzero_ps());
        _mm256_storeu_ps(panel + c * P + h + 8, _mm256_setzero_ps());
      }
      continue;
    }
    const int64_t tile = (r0 + h) / kWeightTileRows;
    const uint8_t* tp = w.tiled_codes + tile * kWeightTileRows * row_bytes;
    const TileScaleWalk sw = TileScalesOf(w, tile);
    for (int half = 0; half < 2; ++half) {
      for (int64_t g = 0; g < ng; ++g) {
        const __m256 s = HalfTileScales(sw.at + g * sw.group_step + 8 * half * sw.lane_step,
                                        sw.lane_step, scale_index);
        for (int64_t j = g * dwords_per_group; j < (g + 1) * dwords_per_group; ++j) {
          const __m256i v =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tp + j * 64 + 32 * half));
          float* out = panel + j * per_dword * P + h + 8 * half;
          if (q8) {
            const __m256i q = _mm256_xor_si256(v, bias);  // signed codes again
            for (int n = 0; n < 4; ++n) {  // byte n, sign-extended: (q << 8(3 - n)) >> 24
              const __m256i up = _mm256_sllv_epi32(q, _mm256_set1_epi32(24 - 8 * n));
              const __m256i code = _mm256_srai_epi32(up, 24);
              _mm256_storeu_ps(out + n * P, _mm256_mul_ps(_mm256_cvtepi32_ps(code), s));
            }
          } else {
            for (int n = 0; n < 8; ++n) {
              const __m256i code =
                  _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_set1_epi32(4 * n)), low4);
              _mm256_storeu_ps(out + n * P,
                               _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(code, eight)), s));
            }
          }
        }
      }
    }
  }
}

SSMQ_TARGET_AVX2 void TileRowsAvx2(const Weight& w, int64_t t0, int64_t t1, const float* bias,
                                   const Fixed16Activations& xa, int64_t n_tokens, float* y,
                                   int64_t y_stride) {
  const int64_t nb = w.cols / kFixed16Block, ng = w.groups_per_row();
  const __m256i scale_index = HalfTileScaleIndex(ng);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t r = tile * kWeightTileRows;
      if (w.format == WeightFormat::kQ8)
        TileQ8Avx2(w, tile, xa.values + t * w.cols, xa.scales + t * nb, xa.block_sums + t * nb,
                   scale_index, bias ? bias + r : nullptr, y + t * y_stride + r);
      else
        TileAvx2(w, tile, xa.bytes + t * nb * 256, xa.scales + t * nb, xa.block_sums + t * nb,
                 scale_index, bias ? bias + r : nullptr, y + t * y_stride + r);
    }
  }
}
#endif

}  // namespace

bool TilesApply(const Weight& w, KernelIsa isa, bool int8_input) {
  const bool q4 = w.format == WeightFormat::kQ4 && w.zeros == nullptr;
  const bool q8 = w.format == WeightFormat::kQ8;
  if (!(q4 || q8) || w.codes == nullptr || w.rows < kWeightTileRows) return false;
  if (Fixed16Applies(w, isa)) return true;
  return int8_input && q8 && (isa == KernelIsa::kAvx512 || isa == KernelIsa::kAvx2) &&
         w.group_size > 0 &&
         w.group_size % 64 == 0 && w.cols % w.group_size == 0;
}

namespace {
// The tiled codes' bytes, and (0 with int8_input) the tiled scales' after them.
int64_t TiledCodeBytes(const Weight& w) {
  return (w.rows / kWeightTileRows) * kWeightTileRows * RowCodeBytes(w);
}
int64_t TiledScaleBytes(const Weight& w, bool int8_input) {
  return int8_input ? 0 : (w.rows / kWeightTileRows) * kWeightTileRows * w.groups_per_row() * 4;
}
}  // namespace

size_t TileBytes(const Weight& w, bool int8_input) {
  if (!TilesApply(w, CpuIsa(), int8_input)) return 0;
  return static_cast<size_t>(TiledCodeBytes(w) + TiledScaleBytes(w, int8_input));
}

void BuildTiles(Weight& w, uint8_t* tiles, bool int8_input) {
  if (w.has_tiles() || !TilesApply(w, CpuIsa(), int8_input)) return;
  const int64_t row_bytes = RowCodeBytes(w), dwords = row_bytes / 4;
  const int64_t tile_bytes = kWeightTileRows * row_bytes;
  const int64_t n_tiles = w.rows / kWeightTileRows;
  const uint32_t bias = w.format == WeightFormat::kQ8 ? 0x80808080u : 0;  // Q8: q + 128
  if (tiles == nullptr) {
    auto owned = std::make_shared<std::vector<uint8_t>>(TileBytes(w, int8_input));
    tiles = owned->data();
    w.owned_tiles = std::move(owned);
  }
  w.tiled_codes = tiles;
  // Tile by tile: dword j of row 16T + lane goes to dword (T·dwords + j)·16 + lane.
  // In batches of ~256 KiB of source, whose pages go back after each batch,
  // so the resident size never holds both copies of more than one batch.
  const int64_t batch = std::max<int64_t>(1, (int64_t{256} << 10) / tile_bytes);
  for (int64_t b0 = 0; b0 < n_tiles; b0 += batch) {
    const int64_t b1 = std::min(n_tiles, b0 + batch);
#pragma omp parallel for schedule(static) if (b1 - b0 >= 16)
    for (int64_t tile = b0; tile < b1; ++tile) {
      uint8_t* dst = tiles + tile * tile_bytes;
      for (int64_t lane = 0; lane < kWeightTileRows; ++lane) {
        const uint8_t* src = w.codes + (tile * kWeightTileRows + lane) * row_bytes;
        for (int64_t j = 0; j < dwords; ++j) {
          uint32_t d;
          std::memcpy(&d, src + j * 4, 4);
          d ^= bias;
          std::memcpy(dst + (j * kWeightTileRows + lane) * 4, &d, 4);
        }
      }
    }
    ReleasePages(w.codes + b0 * tile_bytes, static_cast<size_t>((b1 - b0) * tile_bytes),
                 /*partial=*/false);
  }
  // Again over the whole tensor, its partial end pages included (what else
  // on them is read maps them in again): pages still on a per-CPU LRU list
  // when their batch went are skipped by MADV_PAGEOUT.
  ReleasePages(w.codes, static_cast<size_t>(w.rows * row_bytes), /*partial=*/true);
  // The scales of the tiled rows, group by group as the 16 rows' floats:
  // row 16T + lane's scale of group g goes to (T·ng + g)·16 + lane. The
  // row-major pages go back (whole pages only: the rows past the last tile
  // and the neighbouring tensor's bytes share the end page).
  if (const int64_t scale_bytes = TiledScaleBytes(w, int8_input); scale_bytes > 0) {
    const int64_t ng = w.groups_per_row();
    // (A tile's codes are a multiple of 64 bytes, so in the 64-byte aligned
    // arena the floats start aligned; the kernels load them unaligned anyway.)
    auto* dst = reinterpret_cast<float*>(tiles + TiledCodeBytes(w));
    for (int64_t tile = 0; tile < n_tiles; ++tile)
      for (int64_t g = 0; g < ng; ++g)
        for (int64_t lane = 0; lane < kWeightTileRows; ++lane)
          dst[(tile * ng + g) * kWeightTileRows + lane] =
              w.scales[(tile * kWeightTileRows + lane) * ng + g];
    w.tiled_scales = dst;
    ReleasePages(w.scales, static_cast<size_t>(scale_bytes), /*partial=*/false);
  }
  w.tiled_rows = n_tiles * kWeightTileRows;
}

void UntileRow(const Weight& w, int64_t r, uint8_t* out) {
  const int64_t row_bytes = RowCodeBytes(w), dwords = row_bytes / 4;
  const int64_t tile = r / kWeightTileRows, lane = r % kWeightTileRows;
  const uint8_t* src = w.tiled_codes + tile * kWeightTileRows * row_bytes;
  const uint32_t bias = w.format == WeightFormat::kQ8 ? 0x80808080u : 0;
  for (int64_t j = 0; j < dwords; ++j) {
    uint32_t d;
    std::memcpy(&d, src + (j * kWeightTileRows + lane) * 4, 4);
    d ^= bias;
    std::memcpy(out + j * 4, &d, 4);
  }
}

bool PackTiledPanel(const Weight& w, int64_t r0, int64_t r1, float* panel) {
  if (r0 % kWeightTileRows != 0 || (r1 - r0) % kWeightTileRows != 0 || r1 <= r0 ||
      r1 - r0 > kF32PanelRows || r1 > w.tiled_rows || CpuIsa() < KernelIsa::kAvx2)
    return false;
#ifdef SSMQ_HAVE_X86_KERNELS
  if (CpuIsa() == KernelIsa::kAvx512) PackTiledPanelAvx512(w, r0, r1, panel);
  else PackTiledPanelAvx2(w, r0, r1, panel);
  return true;
#else
  (void)panel;
  return false;
#endif
}

void Fixed16TileRows(const Weight& w, int64_t t0, int64_t t1, const float* bias,
                     const Fixed16Activations& xa, int64_t n_tokens, float* y, int64_t y_stride) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (CpuIsa() == KernelIsa::kAvx512) TileRowsAvx512(w, t0, t1, bias, xa, n_tokens, y, y_stride);
  else TileRowsAvx2(w, t0, t1, bias, xa, n_tokens, y, y_stride);
#else
  (void)w, (void)t0, (void)t1, (void)bias, (void)xa, (void)n_tokens, (void)y, (void)y_stride;
#endif
}

}  // namespace ssmq::rt
