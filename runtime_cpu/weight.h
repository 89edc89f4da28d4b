// A model tensor as the runtime uses it: a view of [rows, cols] (1-D
// tensors: cols = 1). F32 tensors are viewed in place (zero copy). F16/BF16
// matmul weights are viewed in place too (kF16/kBF16, converted in registers
// by the kernels, so an f16 model costs 2 bytes per weight in memory and per
// decoded token); other F16/BF16 tensors are converted once into `converted`.
// Every matmul goes through MatMul(const Weight&, ...).
#pragma once

#include <omp.h>

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "format/status.h"
#include "format/tensor_types.h"
#include "model/model.h"
#include "runtime_cpu/team_blocks.h"

namespace ssmq::rt {

// How a Weight's values are held. kF32: `f32`. kF16 / kBF16: `half`, a
// zero-copy view of the file's 16-bit values. kQ8 / kQ4: zero-copy views of
// the file's codes and scales. Both are converted inside the matmul kernels
// (runtime_cpu/quant_matmul.h), never expanded to f32 at load.
enum class WeightFormat : uint8_t { kF32, kF16, kBF16, kQ8, kQ4 };

struct Weight {
  std::string name;
  TensorType source_type = TensorType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const float* f32 = nullptr;    // rows*cols values, row-major; nullptr when absent
  std::vector<float> converted;  // owns the values when the source was not F32
  const uint16_t* half = nullptr;  // kF16 / kBF16: rows*cols values, row-major

  // Quantized storage (format != kF32). A row's scales cover consecutive
  // groups of `group_size` columns (the last group may be shorter); per
  // channel is group_size == cols, per tensor is expanded to per channel.
  WeightFormat format = WeightFormat::kF32;
  const uint8_t* codes = nullptr;   // kQ8: int8 [rows][cols]; kQ4: packed [rows][cols/2]
  const float* scales = nullptr;    // [rows][groups_per_row()]
  const uint8_t* zeros = nullptr;   // kQ4 with zero points: like scales; nullptr: z = 8
  int64_t group_size = 0;
  std::vector<float> owned_scales;  // when the file's scales could not be viewed in place
  // kQ4 / kQ8 rows [0, tiled_rows) (a multiple of 16) again in 16-row tiles for
  // the decode kernels (weight_tiles.h); 0: none. The row-major codes stay valid.
  // The tiles live in the runtime's HugeArena, or in owned_tiles (shared,
  // so a copy of the Weight keeps them alive).
  const uint8_t* tiled_codes = nullptr;
  // The tiled rows' scales again, per tile and group as the 16 rows' floats
  // ([tiles][groups_per_row()][16], after the codes in the same buffer), for
  // the tile kernels of 16-bit activations (one load where the row-major
  // array takes a gather); nullptr: those kernels read `scales` (weights
  // that only meet int8 activations, whose kernels read `scales`).
  // `scales` stays valid for every row (its pages of tiled rows are handed
  // back: read again, they fault back in).
  const float* tiled_scales = nullptr;
  std::shared_ptr<const std::vector<uint8_t>> owned_tiles;
  int64_t tiled_rows = 0;
  bool has_tiles() const { return tiled_rows > 0; }
  // kQ8 with int8 activations: Σ code over each block of q8_sum_block
  // columns of every row ([rows][blocks]), built at load (BuildQ8BlockSums,
  // act_quant.h) so the AVX-512 decode kernel's +128 bias correction is a
  // lookup, not a second vpdpbusd per 64 weights; empty: computed there.
  std::vector<int32_t> q8_block_sums;
  int64_t q8_sum_block = 0;
  bool row_tiled(int64_t r) const { return r < tiled_rows; }

  bool present() const { return f32 != nullptr || codes != nullptr || half != nullptr; }
  bool quantized() const { return format == WeightFormat::kQ8 || format == WeightFormat::kQ4; }
  bool is_half() const { return format == WeightFormat::kF16 || format == WeightFormat::kBF16; }
  bool zero_copy() const { return present() && converted.empty(); }
  int64_t groups_per_row() const {
    return group_size > 0 ? (cols + group_size - 1) / group_size : 0;
  }
};

// Bytes of w's codes (kQ8 / kQ4) when they are a view of the file, which
// CopyToArena would copy; else 0 (16-bit and f32 weights are not copied).
size_t ArenaCopyBytes(const Weight& w);

// Copies those bytes to `dst` (ArenaCopyBytes(w) of them, e.g. a
// HugeArena slice), points w at the copy and hands the file's pages back
// batch by batch (ReleasePages), so the resident size never holds both.
void CopyToArena(Weight& w, uint8_t* dst);

// Gives the pages of [p, p + n) back to the kernel, for bytes that were read
// once at load (a tensor converted or copied to a layout of our own).
// partial: the pages the range only touches at its ends as well. Never
// changes a byte:
// - inside one read-only private file mapping (an mmap'd model file):
//   MADV_DONTNEED, which only unmaps the pages (a later read maps them in
//   again from the file); the page cache keeps them, so the next load of
//   the file does not go to the disk;
// - anywhere else (heap, anonymous): MADV_PAGEOUT, which reclaims them
//   (to swap if anonymous) and reads them back when touched.
// The kind of mapping is looked up in /proc/self/maps on every call.
void ReleasePages(const void* p, size_t n, bool partial);

// Loads tensor `name` expecting exactly `shape` (PyTorch order; 1-D or 2-D).
// kNotFound when absent (unless optional: then an absent Weight), kBadShape on a
// shape mismatch, kUnsupported for non-float types other than q8/q4 (whose
// "<name>.scale" / "<name>.zero" tensors are viewed alongside). keep_half:
// F16/BF16 tensors stay 16-bit views (matmul weights); otherwise they are
// converted to f32 (the per-channel vectors the element kernels read).
Result<Weight> LoadWeight(const Model& model, const std::string& name,
                          const std::vector<int64_t>& shape, bool optional = false,
                          bool keep_half = false);

// y[t*y_stride + r] = sum_c W[r][c] * x[t*x_stride + c] (+ bias[r])
// for t < n_tokens, r < W.rows; c < W.cols. fp32 accumulation. Tokens are
// processed in blocks so that each weight row is read once per block.
// n_threads <= 0: OpenMP's current default. Quantized weights run the
// Q8/Q4 kernels of quant_matmul.h.
void MatMul(const Weight& w, const Weight* bias, const float* x, int64_t x_stride,
            int64_t n_tokens, float* y, int64_t y_stride, int n_threads);

// A matmul of a few tokens, prepared: the kernel chosen and the activations
// in the form it reads, in the preparing thread's buffers (valid until that
// thread prepares another of the same kind). Run(r0, r1) computes rows
// [r0, r1) of y for the plan's tokens and may run on any thread; nothing is
// allocated. PlanMatMul below and PlanInt8MatMul (act_quant.h) make them;
// MatMul and Int8MatMul run theirs over row chunks, and a mixer's own team
// runs one per thread over the rows of its channels.
class RowsPlan {
 public:
  void Run(int64_t r0, int64_t r1) const { run_(state_, r0, r1); }

  // A plan that calls F(state, r0, r1); State is trivially copyable.
  template <class State, void (*F)(const State&, int64_t, int64_t)>
  static RowsPlan Make(const State& state) {
    static_assert(sizeof(State) <= kStateBytes && alignof(State) <= kStateAlign);
    static_assert(std::is_trivially_copyable_v<State>);
    RowsPlan p;
    new (p.state_) State(state);
    p.run_ = [](const unsigned char* st, int64_t r0, int64_t r1) {
      F(*std::launder(reinterpret_cast<const State*>(st)), r0, r1);
    };
    return p;
  }

 private:
  static constexpr size_t kStateBytes = 320, kStateAlign = 16;
  void (*run_)(const unsigned char*, int64_t, int64_t) = nullptr;
  alignas(kStateAlign) unsigned char state_[kStateBytes];
};

// Whether PlanMatMul takes n_tokens (a decode-sized block: fewer than the
// AVX2 / AVX-512 prefill panel path starts at, at most one token block otherwise).
bool MatMulPlanApplies(int64_t n_tokens);
RowsPlan PlanMatMul(const Weight& w, const Weight* bias, const float* x, int64_t x_stride,
                    int64_t n_tokens, float* y, int64_t y_stride);

// Replaces a quantized weight by its dequantized f32 values (owned); used for
// the small per-channel parameters only, never for matmul weights.
void ExpandToF32(Weight& w);

// The zero point z of Q4 scale entry `scale_index` ([rows][groups_per_row()]):
// the stored one, or 8 for symmetric codes (w.zeros == nullptr).
inline int Q4Zero(const Weight& w, int64_t scale_index) {
  return w.zeros ? static_cast<int>(w.zeros[scale_index]) : 8;
}

// Grows a scratch vector to at least n elements (never shrinks it).
template <typename T>
inline void Grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// "[a, b]" for error messages.
std::string ShapeText(const std::vector<int64_t>& shape);

// OpenMP thread count for a parallel region (n <= 0: omp_get_max_threads()).
int ThreadCount(int n_threads);

// Whether a region of `work` multiply-adds (or comparable element operations)
// is worth a team of threads. A fork/join with spinning OpenMP workers costs
// ~1-2 µs; 128K multiply-adds take ~15 µs on one core, so from there on two
// threads win. At batch-1 decode this puts mamba's x_proj (96 x 2048) and
// dt_proj (2048 x 64) on both cores instead of leaving one idle; tiny models
// and element-wise steps below it stay on one thread.
inline constexpr int64_t kMinParallelWork = int64_t{1} << 17;
// The causal conv's work per channel and tap in those units: one multiply-add,
// plus the channel's SiLU (an exp and a divide) spread over its taps, and at
// decode the taps and the conv state come from L3 (~60 KB per layer), not L1.
inline constexpr int64_t kConvWorkPerTap = 32;
inline bool WorthThreads(int64_t work, int n_threads) {
  return n_threads > 1 && work >= kMinParallelWork;
}

}  // namespace ssmq::rt
