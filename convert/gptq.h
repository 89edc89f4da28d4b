// GPTQ weight quantization (Frantar et al. 2022, "OPTQ"), as the Quamba code
// uses it: one Hessian per matmul input from calibration activations of the
// float model, percdamp = 0.01, no act-order, column-by-column quantization in
// the natural column order with the error of each column fed forward through
// the upper Cholesky factor of H^-1, lazy batch updates in blocks of 128
// columns. The output is stored exactly like the RTN recipe's
// (convert/quantize_weights.h): codes under "<name>" (q8 per output channel or
// q4 symmetric per group of EffectiveGroupSize(cols, group_size) along the
// input dimension) plus the f32 scales "<name>.scale", so files dequantize by
// spec/format.md §6.1 and the runtime executes them unchanged.
//
// Shapes: a weight W is [rows, cols] row-major (PyTorch order, cols = the
// input dimension); the layer computes y = W x for inputs x of length cols.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "convert/calibrate.h"
#include "convert/quantize_weights.h"
#include "format/quant.h"
#include "format/status.h"
#include "model/model.h"

namespace ssmq {

struct GptqOptions {
  double percdamp = 0.01;      // damp = percdamp · mean(diag H), added to the diagonal
  int64_t block_size = 128;    // lazy-batch block (columns); with groups rounded to whole groups
  int n_threads = 0;           // Hessian accumulation and the row updates (<= 0: OpenMP default)
  // ApplyGptq keeps the Hessians of at most this many bytes at once; when the
  // model needs more it runs the calibration windows again per subset of
  // layers (the float model every time, so the result does not change).
  int64_t max_hessian_bytes = int64_t{2} << 30;
};

// The Hessian of one matmul input: H = (2/n) Σ_t x_t x_tᵀ over the n calibration
// rows (tokens) seen so far; h is [cols][cols] row-major, symmetric, double.
// (GPTQ's own normalization; the algorithm is invariant to the scale of H.)
struct Hessian {
  int64_t cols = 0;
  int64_t n = 0;
  std::vector<double> h;

  Hessian() = default;
  explicit Hessian(int64_t c) : cols(c), h(static_cast<size_t>(c * c), 0.0) {}
  // Adds `rows` input rows: row t is x[t·stride + 0 .. t·stride + cols) (stride >= cols).
  // Threads: n_threads (<= 0: OpenMP default).
  void Add(const float* x, int64_t rows, int64_t stride, int n_threads = 0);
};

// The quantized result of one weight: codes + scales as format/quant.h makes
// them, with the QuantInfo the tensor carries.
struct GptqResult {
  QuantizedTensor q;  // kW8: rows·cols int8 codes, `rows` scales; kW4: rows·cols/2 bytes, rows·ceil(cols/G) scales
  QuantInfo info;     // kPerChannel, or kPerGroup with group_size G
  double loss = 0;    // Σ_r Σ_i (w_ri − ŵ_ri)² / (2·U_ii²), U = upper Cholesky factor of H^-1 (GPTQ's "error")
};

// GPTQ of one [rows, cols] float matrix `w` with Hessian H (H.cols == cols).
// kW8: s_r = absmax(row r)/127 (after dead columns are zeroed), codes
// clamp(rhe(w/s), -127, 127). kW4: G = EffectiveGroupSize(cols, group_size);
// the scale of each (row, group) is absmax/7 of the row's current, already
// error-updated weights of the group when its first column is reached, codes
// clamp(rhe(w/s), -8, 7) + 8 packed (format/quant.h). A zero scale (all-zero
// row or group) stores zero codes. Dead columns (H_ii == 0) get H_ii = 1 and
// W[:, i] = 0. kInvalidArgument for bits == kFloat, bad shapes, odd cols for
// kW4 or a Hessian that is not positive definite after damping; kBadValue on
// non-finite weights.
Result<GptqResult> GptqQuantize(std::span<const float> w, int64_t rows, int64_t cols,
                                const Hessian& H, WeightBits bits, uint32_t group_size,
                                const GptqOptions& opts = {});

// GPTQ of float tensor `name` ([rows, cols], 2-D) with Hessian H: replaces it
// with codes + "<name>.scale" exactly as QuantizeTensor does (same types,
// shapes, QuantInfo). kFloat leaves it alone.
Status GptqQuantizeTensor(Model& model, const std::string& name, const Hessian& H,
                          WeightBits bits, uint32_t group_size, const GptqOptions& opts = {});

// Runs the calibration windows through the float model (the runtime with an
// observer; windows picked exactly as Calibrate does: `calib.samples` windows of
// `calib.seqlen` tokens from the tokenized train split, first
// floor(calib.train_fraction · n_chars) characters, start_i = rng() % (n_tokens −
// seqlen + 1) with std::mt19937_64(calib.seed), `calib.batch` per Prefill)
// and collects the Hessian of every matmul input:
//   blk.i.ssm_in.weight   <- kInProjInput                      [T][d_model]
//   blk.i.ssm_x.weight    <- kConvOutX (mamba1)                 [T][d_inner]
//   blk.i.ssm_dt.weight   <- first dt_rank columns of kXProjOutput (mamba1)
//   blk.i.ssm_out.weight  <- kOutProjInput (after the online Hadamard, if any)
//   output.weight         <- kLmHeadInput (a tied head is the embedding too: skipped)
// then GPTQ-quantizes each of those whose bits_of(name) is not kFloat (tensors
// that are absent or no longer float are skipped). Non-sequential: every
// Hessian comes from the float model's activations. progress(done, total)
// counts calibration windows run (per pass) and tensors quantized.
Status ApplyGptq(Model& model, std::string_view calib_text, const CalibOptions& calib,
                 const std::function<WeightBits(const std::string& tensor_name)>& bits_of,
                 uint32_t group_size, const GptqOptions& opts = {},
                 const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace ssmq
