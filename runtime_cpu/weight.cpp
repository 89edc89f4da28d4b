#include "runtime_cpu/weight.h"

#include <sys/mman.h>
#include <unistd.h>

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "format/quant.h"
#include "runtime_cpu/quant_matmul.h"
#include "runtime_cpu/f32_gemm.h"
#include "runtime_cpu/weight_tiles.h"
#include "runtime_cpu/fixed16_decode.h"
#include "runtime_cpu/fixed16_narrow.h"
#include "runtime_cpu/simd_dispatch.h"

namespace ssmq::rt {

std::string ShapeText(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void ExpandToF32(Weight& w) {
  if (!w.quantized() && !w.is_half()) return;
  std::vector<float> values(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) DequantizeRow(w, r, values.data() + r * w.cols);
  const int64_t n = w.rows * w.cols;  // the source was read once, here
  if (w.half) ReleasePages(w.half, static_cast<size_t>(n) * 2, /*partial=*/true);
  if (w.codes) {
    ReleasePages(w.codes, static_cast<size_t>(w.format == WeightFormat::kQ4 ? n / 2 : n), true);
    ReleasePages(w.scales, static_cast<size_t>(w.rows * w.groups_per_row()) * 4, true);
  }
  w.converted = std::move(values);
  w.f32 = w.converted.data();
  w.format = WeightFormat::kF32;
  w.codes = nullptr;
  w.scales = nullptr;
  w.zeros = nullptr;
  w.half = nullptr;
  w.group_size = 0;
  w.owned_scales.clear();
}

namespace {

// Views an f32 tensor of exactly n elements (any shape) in place, or copies
// it into `owned` when it is not f32-aligned.
Result<const float*> ViewF32Values(const Model& model, const std::string& name, uint64_t n,
                                   std::vector<float>& owned) {
  const ModelTensor* t = model.Find(name);
  if (!t) return Status(StatusCode::kNotFound, "runtime: tensor '" + name + "' is missing");
  if (t->type != TensorType::kF32 || t->numel() != n || t->data.size() != n * 4) {
    return Status(StatusCode::kBadTensorInfo, "runtime: tensor '" + name + "' must be f32 with " +
                                                  std::to_string(n) + " elements");
  }
  const float* p = reinterpret_cast<const float*>(t->data.data());
  if (reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) return p;
  owned.assign(n, 0.0f);
  std::copy_n(t->data.data(), n * 4, reinterpret_cast<uint8_t*>(owned.data()));
  return static_cast<const float*>(owned.data());
}

// q8/q4 tensor t (already shape-checked into w.rows x w.cols): views its
// codes, "<name>.scale" and (q4 with zero points) "<name>.zero" in place.
Status ViewQuantized(const Model& model, const ModelTensor& t, Weight& w) {
  const uint64_t rows = static_cast<uint64_t>(w.rows), cols = static_cast<uint64_t>(w.cols);
  const bool q4 = t.type == TensorType::kQ4;
  const auto bytes = TensorBytes(t.type, rows * cols);
  if (!bytes || t.data.size() != *bytes || (q4 && cols % 2 != 0)) {
    return Status(StatusCode::kBadTensorInfo,
                  "runtime: quantized tensor '" + w.name + "' has a bad byte size or odd cols");
  }
  w.format = q4 ? WeightFormat::kQ4 : WeightFormat::kQ8;
  w.codes = t.data.data();
  const uint64_t n_scales = ScaleCount(t.quant, rows, cols);
  switch (t.quant.granularity) {
    case ScaleGranularity::kPerGroup: w.group_size = t.quant.group_size; break;
    case ScaleGranularity::kPerChannel:
    case ScaleGranularity::kPerTensor: w.group_size = w.cols; break;
    default:
      return Status(StatusCode::kBadTensorInfo,
                    "runtime: quantized tensor '" + w.name + "' has no scale granularity");
  }
  if (n_scales == 0) {
    return Status(StatusCode::kBadTensorInfo, "runtime: tensor '" + w.name + "' has no scales");
  }
  SSMQ_ASSIGN_OR_RETURN(w.scales, ViewF32Values(model, w.name + ".scale", n_scales, w.owned_scales));
  if (t.quant.granularity == ScaleGranularity::kPerTensor) {  // one scale -> one per row
    const float s = w.scales[0];
    w.owned_scales.assign(rows, s);
    w.scales = w.owned_scales.data();
  }
  if (q4 && t.quant.has_zero_point) {
    const ModelTensor* z = model.Find(w.name + ".zero");
    if (!z || z->type != TensorType::kU8 || z->data.size() != n_scales) {
      return Status(StatusCode::kBadTensorInfo,
                    "runtime: tensor '" + w.name + ".zero' must be u8 with " +
                        std::to_string(n_scales) + " elements");
    }
    if (t.quant.granularity == ScaleGranularity::kPerTensor) {
      return Status(StatusCode::kUnsupported,
                    "runtime: per-tensor q4 with a zero point ('" + w.name + "')");
    }
    w.zeros = z->data.data();
  }
  return Status::Ok();
}

}  // namespace

int ThreadCount(int n_threads) { return n_threads > 0 ? n_threads : omp_get_max_threads(); }

Result<Weight> LoadWeight(const Model& model, const std::string& name,
                          const std::vector<int64_t>& shape, bool optional, bool keep_half) {
  Weight w;
  w.name = name;
  const ModelTensor* t = model.Find(name);
  if (!t) {
    if (optional) return w;
    return Status(StatusCode::kNotFound, "runtime: tensor '" + name + "' is missing");
  }
  if (t->shape != shape) {
    return Status(StatusCode::kBadShape, "runtime: tensor '" + name + "' has shape " +
                                             ShapeText(t->shape) + ", expected " + ShapeText(shape));
  }
  w.source_type = t->type;
  w.rows = shape.empty() ? 1 : shape[0];
  w.cols = 1;
  for (size_t i = 1; i < shape.size(); ++i) w.cols *= shape[i];
  const uint64_t n = static_cast<uint64_t>(w.rows * w.cols);
  const TensorTypeTraits& traits = TraitsOf(t->type);
  if (traits.is_quantized) {
    SSMQ_RETURN_IF_ERROR(ViewQuantized(model, *t, w));
    return w;
  }
  if (!traits.is_float) {
    return Status(StatusCode::kUnsupported, "runtime: tensor '" + name + "' has type " +
                                                std::string(TensorTypeName(t->type)) +
                                                "; the CPU runtime supports f32/f16/bf16 only");
  }
  const auto bytes = TensorBytes(t->type, n);
  if (!bytes || t->data.size() != *bytes) {
    return Status(StatusCode::kBadTensorInfo,
                  "runtime: tensor '" + name + "' holds " + std::to_string(t->data.size()) +
                      " bytes, expected " + (bytes ? std::to_string(*bytes) : "overflow"));
  }
  if (t->type == TensorType::kF32) {
    w.f32 = t->f32();
    if (!w.f32) w.f32 = reinterpret_cast<const float*>(t->data.data());
    if (reinterpret_cast<uintptr_t>(w.f32) % alignof(float) != 0) {  // copy rather than misread
      w.converted.assign(n, 0.0f);
      std::copy_n(t->data.data(), n * 4, reinterpret_cast<uint8_t*>(w.converted.data()));
      w.f32 = w.converted.data();
    }
    return w;
  }
  if (keep_half && (t->type == TensorType::kF16 || t->type == TensorType::kBF16) &&
      reinterpret_cast<uintptr_t>(t->data.data()) % alignof(uint16_t) == 0) {
    w.format = t->type == TensorType::kF16 ? WeightFormat::kF16 : WeightFormat::kBF16;
    w.half = reinterpret_cast<const uint16_t*>(t->data.data());
    return w;
  }
  w.converted.assign(n, 0.0f);
  Status st = FloatToF32(t->type, t->data, w.converted);
  if (!st.ok()) return st.WithContext("runtime: converting '" + name + "'");
  w.f32 = w.converted.data();
  ReleasePages(t->data.data(), t->data.size(), /*partial=*/true);  // read once, here
  return w;
}

size_t ArenaCopyBytes(const Weight& w) {
  if (!w.zero_copy()) return 0;
  const size_t n = static_cast<size_t>(w.rows * w.cols);
  switch (w.format) {
    case WeightFormat::kQ8: return w.codes ? n : 0;
    case WeightFormat::kQ4: return w.codes ? n / 2 : 0;
    // 16-bit and f32 weights stay views of the file: a copy would fault in
    // fresh anonymous pages for 2 bytes per weight, which on the dev VM
    // costs ~2.5 s at f16 370m (the host backs each page on first touch),
    // for a decode that is not the one the quantized recipes are measured by.
    case WeightFormat::kF16:
    case WeightFormat::kBF16:
    case WeightFormat::kF32: return 0;
  }
  return 0;
}

void CopyToArena(Weight& w, uint8_t* dst) {
  const size_t n = ArenaCopyBytes(w);
  if (n == 0 || dst == nullptr) return;
  const uint8_t* src = w.codes;
  constexpr size_t kBatch = size_t{256} << 10;
  for (size_t at = 0; at < n; at += kBatch) {
    const size_t len = std::min(kBatch, n - at);
    std::memcpy(dst + at, src + at, len);
    ReleasePages(src + at, len, /*partial=*/false);
  }
  ReleasePages(src, n, /*partial=*/true);  // the end pages, and any skipped on the way
  w.codes = dst;
}

namespace {

// Whether [begin, end) lies inside one mapping of /proc/self/maps that is a
// read-only private mapping of a file (perms "r--p" or "r-xp", an inode).
bool InReadOnlyFileMapping(uintptr_t begin, uintptr_t end) {
  std::FILE* f = std::fopen("/proc/self/maps", "re");
  if (!f) return false;
  bool found = false;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    unsigned long lo = 0, hi = 0, inode = 0;
    char perms[8] = {};
    if (std::sscanf(line, "%lx-%lx %7s %*s %*s %lu", &lo, &hi, perms, &inode) != 4) continue;
    if (begin < lo || begin >= hi) continue;
    found = end <= hi && inode != 0 && perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p';
    break;
  }
  std::fclose(f);
  return found;
}

}  // namespace

void ReleasePages(const void* p, size_t n, bool partial) {
#ifdef MADV_PAGEOUT
  if (n == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  const uintptr_t begin = partial ? at & ~(page - 1) : (at + page - 1) & ~(page - 1);
  const uintptr_t end = partial ? (at + n + page - 1) & ~(page - 1) : (at + n) & ~(page - 1);
  if (end <= begin) return;
  const int advice = InReadOnlyFileMapping(begin, end) ? MADV_DONTNEED : MADV_PAGEOUT;
  madvise(reinterpret_cast<void*>(begin), end - begin, advice);
#else
  (void)p, (void)n, (void)partial;
#endif
}

namespace {

// Token blocks keep the activations of one block (<= 64 x cols floats)
// in L2 while every weight row streams past them once.
constexpr int64_t kTokenBlock = 64;
constexpr int64_t kRowChunk = 16;
// From this many tokens on, a non-f32 weight chunk is converted to f32
// once (16 rows x cols floats, in L2) and the f32 kernel runs on it:
// conversion is then paid once per block, not once per 4-token tile.
constexpr int64_t kExpandMinTokens = 8;
// AVX2 and AVX-512 from this many tokens on: the panel kernel (f32_gemm.h).
constexpr int64_t kPanelMinTokens = 16;
bool PanelApplies(KernelIsa isa, int64_t n_tokens) {
  return isa >= KernelIsa::kAvx2 && n_tokens >= kPanelMinTokens;
}

// A token block's MatMul, prepared (RowsPlan).
struct MatMulPlanState {
  const Weight* w;
  const float* bias;  // nullptr: none
  const float* x;
  int64_t x_stride, n_tokens;
  float* y;
  int64_t y_stride;
  KernelIsa isa;
  QuantRowsKernel direct;  // nullptr: f32 weights
  F32RowsKernel f32_rows;
  // Decode on AVX-512: Q4/Q8 with 16-bit fixed-point activations
  // (fixed16_decode.h; 64-column matrices: fixed16_narrow.h), else the Q4
  // table kernel, else the direct kernel. expand: dequantize row chunks.
  bool expand, fixed16, narrow, q4_decode;
  Q4Activations q4_x;
  Fixed16Activations fixed_x;
  Fixed16NarrowActivations narrow_x;
};

void RunMatMulPlan(const MatMulPlanState& p, int64_t row0, int64_t row1) {
  const Weight& w = *p.w;
  const float* b = p.bias;
  if (p.fixed16) {  // the whole range in one call, tiles back to back (w4a16 decode +3-5%)
    Fixed16Rows(w, row0, row1, b, p.fixed_x, p.n_tokens, p.y, p.y_stride);
    return;
  }
  for (int64_t r0 = row0; r0 < row1; r0 += kRowChunk) {
    const int64_t r1 = std::min(row1, r0 + kRowChunk);
    if (!p.direct) {
      p.f32_rows(w.f32 + r0 * w.cols, w.cols, r1 - r0, b ? b + r0 : nullptr, p.x, p.x_stride,
                 p.n_tokens, p.y + r0, p.y_stride);
    } else if (p.expand) {
      thread_local std::vector<float> rows_f32;  // grown once per thread, then reused
      Grow(rows_f32, static_cast<size_t>(kRowChunk * w.cols));
      DequantizeRows(w, r0, r1, rows_f32.data(), p.isa);
      p.f32_rows(rows_f32.data(), w.cols, r1 - r0, b ? b + r0 : nullptr, p.x, p.x_stride,
                 p.n_tokens, p.y + r0, p.y_stride);
    } else if (p.narrow) {
      Fixed16NarrowRows(w, r0, r1, b, p.narrow_x, p.n_tokens, p.y, p.y_stride);
    } else if (p.q4_decode) {
      Q4DecodeRows(w, r0, r1, b, p.q4_x, p.n_tokens, p.y, p.y_stride);
    } else {
      p.direct(w, r0, r1, b, p.x, p.x_stride, p.n_tokens, p.y, p.y_stride);
    }
  }
}

// Rows [row0, row1) of MatMul over n_threads (1: the calling thread only).
void MatMulRange(const Weight& w, const Weight* bias, const float* x, int64_t x_stride,
                 int64_t n_tokens, float* y, int64_t y_stride, int64_t row0, int64_t row1,
                 int n_threads) {
  const float* b = bias && bias->present() ? bias->f32 : nullptr;
  const int64_t n_rows = row1 - row0;
  const int64_t n_chunks = (n_rows + kRowChunk - 1) / kRowChunk;
  const int nt = ThreadCount(n_threads);
  const KernelIsa isa = BestKernelIsa();
  const QuantRowsKernel direct = QuantKernel(w.format, isa);
  if (PanelApplies(isa, n_tokens)) {
    // Prefill: each 32-row panel is converted to f32 and packed once
    // (F32PackPanel), then every token runs against it.
    const int64_t n_panels = (n_rows + kF32PanelRows - 1) / kF32PanelRows;
    thread_local std::vector<float> packed_x;
    const int64_t padded = (n_tokens + kF32TileTokens - 1) / kF32TileTokens * kF32TileTokens;
    Grow(packed_x, static_cast<size_t>(padded * w.cols));
    float* xp = packed_x.data();
    const int64_t n_tiles = (n_tokens + kF32TileTokens - 1) / kF32TileTokens;
    ForEachIndex(n_tiles, nt, WorthThreads(n_tokens * w.cols, nt), [&](int64_t i) {
      const int64_t t0 = i * kF32TileTokens;
      F32PackTokens(x + t0 * x_stride, x_stride, std::min(kF32TileTokens, n_tokens - t0), w.cols,
                    xp + t0 * w.cols);
    });
    ForEachIndex(n_panels, nt, WorthThreads(n_tokens * n_rows * w.cols, nt), [&](int64_t p) {
      thread_local std::vector<float> rows_f32, panel;  // grown once per thread, then reused
      const int64_t r0 = row0 + p * kF32PanelRows, r1 = std::min(row1, r0 + kF32PanelRows);
      Grow(panel, static_cast<size_t>(kF32PanelRows * w.cols));
      // 16-bit and tiled weights straight into the panel; the others through
      // f32 rows (dequantized first unless they are f32 already).
      const bool packed =
          (w.is_half() && F32PackPanelHalf(w.half + r0 * w.cols, w.format == WeightFormat::kBF16,
                                           w.cols, r1 - r0, panel.data())) ||
          (w.has_tiles() && PackTiledPanel(w, r0, r1, panel.data()));
      if (!packed) {
        const float* src;
        if (direct) {
          Grow(rows_f32, static_cast<size_t>(kF32PanelRows * w.cols));
          DequantizeRows(w, r0, r1, rows_f32.data(), isa);
          src = rows_f32.data();
        } else {
          src = w.f32 + r0 * w.cols;
        }
        F32PackPanel(src, w.cols, r1 - r0, panel.data());
      }
      F32PanelTokens(panel.data(), w.cols, r1 - r0, b ? b + r0 : nullptr, xp, n_tokens, y + r0,
                     y_stride);
    });
    return;
  }
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
    const int64_t tn = std::min(kTokenBlock, n_tokens - t0);
    const RowsPlan plan = PlanMatMul(w, bias, x + t0 * x_stride, x_stride, tn, y + t0 * y_stride,
                                     y_stride);
    ForEachIndex(n_chunks, nt, WorthThreads(tn * n_rows * w.cols, nt), [&](int64_t ch) {
      const int64_t r0 = row0 + ch * kRowChunk;
      plan.Run(r0, std::min(row1, r0 + kRowChunk));
    });
  }
}

}  // namespace

bool MatMulPlanApplies(int64_t n_tokens) {
  return n_tokens >= 1 && n_tokens <= kTokenBlock &&
         !PanelApplies(BestKernelIsa(), n_tokens);
}

RowsPlan PlanMatMul(const Weight& w, const Weight* bias, const float* x, int64_t x_stride,
                    int64_t n_tokens, float* y, int64_t y_stride) {
  MatMulPlanState p{};
  p.w = &w;
  p.bias = bias && bias->present() ? bias->f32 : nullptr;
  p.x = x;
  p.x_stride = x_stride;
  p.n_tokens = n_tokens;
  p.y = y;
  p.y_stride = y_stride;
  p.isa = BestKernelIsa();
  p.direct = QuantKernel(w.format, p.isa);
  p.f32_rows = F32Kernel(p.isa);
  p.expand = p.direct && n_tokens >= kExpandMinTokens;
  const bool decode = p.direct && !p.expand;
  // AVX2 has fixed16 kernels for whole tiles only (fixed16_decode.h): an
  // untiled weight keeps the float kernels there.
  p.fixed16 = decode && Fixed16Applies(w, p.isa) &&
              (p.isa == KernelIsa::kAvx512 || w.has_tiles());
  p.narrow = decode && !p.fixed16 && Fixed16NarrowApplies(w, p.isa);
  p.q4_decode = decode && !p.fixed16 && !p.narrow && Q4DecodeApplies(w, p.isa);
  if (p.q4_decode) p.q4_x = PrepareQ4Activations(w, x, x_stride, n_tokens);
  if (p.fixed16) p.fixed_x = PrepareFixed16(x, x_stride, n_tokens, w.cols, Fixed16LayoutFor(w), p.isa);
  if (p.narrow) p.narrow_x = PrepareFixed16Narrow(w, x, x_stride, n_tokens);
  return RowsPlan::Make<MatMulPlanState, RunMatMulPlan>(p);
}

void MatMul(const Weight& w, const Weight* bias, const float* x, int64_t x_stride,
            int64_t n_tokens, float* y, int64_t y_stride, int n_threads) {
  MatMulRange(w, bias, x, x_stride, n_tokens, y, y_stride, 0, w.rows, n_threads);
}

}  // namespace ssmq::rt
