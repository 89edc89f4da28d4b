// GPTQ weight quantization (see gptq.h).
//
// The algorithm, per output row r (rows are independent given H):
//   U = upper Cholesky factor of (H + damp·I)^-1, i.e. Uᵀ U = H^-1
//   for i = 0 .. cols-1:
//     q      = the grid value of w_i (scale: per row, or the group's when i starts a group)
//     e      = (w_i − q) / U_ii
//     w_j   -= e · U_ij   for j > i
// Lazy batching: inside a block of columns the update touches the block only;
// the rest of the row gets the block's errors at once at the end of the block
// (W[:, end:] −= E · U[block, end:]), which is the same arithmetic reordered.
// With groups the block is a whole number of groups, so when a group starts
// all its columns already carry every earlier column's error (the scale sees
// the current, updated weights).
#include "convert/gptq.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <utility>

#include "model/arch.h"
#include "runtime_cpu/simd_dispatch.h"
#include "runtime_cpu/observer.h"
#include "runtime_cpu/runtime.h"
#include "tokenizer/tokenizer.h"

namespace ssmq {

// ------------------------------------------------------------------ Hessian

namespace {

int Threads(int n) { return n > 0 ? n : omp_get_max_threads(); }

// h[i][j] += coef · Σ_t x[t][i] x[t][j] for i in [i0, i1), j in [j0, j1) (one
// tile of h, at most 64x64), t over `rows` rows of stride `stride`. Per chunk
// of 64 rows the tile's inputs are copied to double (xi, xj: [t][64], in L1),
// then every row of the tile is a run of contiguous AXPYs, which -O3 vectorizes.
SSMQ_HOT void AccumulateTile(const float* x, int64_t rows, int64_t stride, int64_t i0,
                             int64_t i1, int64_t j0, int64_t j1, double coef, double* h,
                             int64_t C) {
  constexpr int64_t kChunk = 64, kMax = 64;
  const int64_t ni = i1 - i0, nj = j1 - j0;
  std::vector<double> xi_buf(kChunk * kMax), xj_buf(kChunk * kMax);
  double* __restrict xi = xi_buf.data();
  double* __restrict xj = xj_buf.data();
  for (int64_t t0 = 0; t0 < rows; t0 += kChunk) {
    const int64_t nc = std::min(kChunk, rows - t0);
    for (int64_t t = 0; t < nc; ++t) {
      const float* xt = x + (t0 + t) * stride;
      for (int64_t k = 0; k < ni; ++k) xi[t * ni + k] = coef * static_cast<double>(xt[i0 + k]);
      for (int64_t k = 0; k < nj; ++k) xj[t * nj + k] = xt[j0 + k];
    }
    for (int64_t k = 0; k < ni; ++k) {
      double* __restrict hrow = h + (i0 + k) * C + j0;
      for (int64_t t = 0; t < nc; ++t) {
        const double a = xi[t * ni + k];
        const double* __restrict xr = xj + t * nj;
        for (int64_t m = 0; m < nj; ++m) hrow[m] += a * xr[m];
      }
    }
  }
}

}  // namespace

void Hessian::Add(const float* x, int64_t rows, int64_t stride, int n_threads) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t C = cols;
  if (h.size() != static_cast<size_t>(C * C)) h.assign(static_cast<size_t>(C * C), 0.0);
  // h = h · n/(n+rows) + 2/(n+rows) · Σ x xᵀ, as GPTQ's add_batch.
  const double total = static_cast<double>(n + rows);
  if (n > 0) {
    const double keep = static_cast<double>(n) / total;
    for (double& v : h) v *= keep;
  }
  const double coef = 2.0 / total;
  const int nt = Threads(n_threads);
  // The tiles of the upper triangle (64x64; diagonal tiles whole, their lower
  // halves are overwritten below); tiles are independent, so one parallel
  // region over them.
  constexpr int64_t kTile = 64;
  const int64_t n_tiles = (C + kTile - 1) / kTile;
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (int64_t a = 0; a < n_tiles; ++a)
    for (int64_t b = a; b < n_tiles; ++b) pairs.emplace_back(a, b);
  const int64_t n_pairs = static_cast<int64_t>(pairs.size());
  double* hd = h.data();
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1 && n_pairs > 1 && rows * C * C >= (int64_t{1} << 22))
  for (int64_t p = 0; p < n_pairs; ++p) {
    const int64_t i0 = pairs[p].first * kTile, j0 = pairs[p].second * kTile;
    AccumulateTile(x, rows, stride, i0, std::min(C, i0 + kTile), j0, std::min(C, j0 + kTile), coef,
                   hd, C);
  }
  for (int64_t i = 0; i < C; ++i)
    for (int64_t j = i + 1; j < C; ++j) h[j * C + i] = h[i * C + j];
  n += rows;
}

// ---------------------------------------------------------------- GPTQ core

namespace {

// Σ a[k] b[k] with 8 independent partial sums (not bound by the latency of
// one long chain of additions).
inline double Dot(const double* a, const double* b, int64_t n) {
  double p[8] = {};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int u = 0; u < 8; ++u) p[u] += a[k + u] * b[k + u];
  double s = ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

// In place lower Cholesky factor of the symmetric A ([C][C] row-major, lower
// triangle read and written), left-looking by columns: every inner product
// runs over two contiguous row prefixes. Returns the first failing pivot or -1.
SSMQ_HOT int64_t CholeskyLower(double* A, int64_t C) {
  for (int64_t j = 0; j < C; ++j) {
    double* Lj = A + j * C;
    const double d = Lj[j] - Dot(Lj, Lj, j);
    if (!(d > 0) || !std::isfinite(d)) return j;
    const double root = std::sqrt(d), inv = 1.0 / root;
    Lj[j] = root;
    for (int64_t i = j + 1; i < C; ++i) {
      double* Li = A + i * C;
      Li[j] = (Li[j] - Dot(Li, Lj, j)) * inv;
    }
  }
  return -1;
}

// Column j of L^-1 (L lower, row-major): m[i] for i in [j, C), m[i] = 0 above.
SSMQ_HOT void InverseColumn(const double* L, int64_t C, int64_t j, double* m) {
  m[j] = 1.0 / L[j * C + j];
  for (int64_t i = j + 1; i < C; ++i) {
    const double* Li = L + i * C;
    m[i] = -Dot(Li + j, m + j, i - j) / Li[i];
  }
}

// U with Uᵀ U = A^-1, U upper triangular with a positive diagonal, for a
// symmetric positive definite A ([C][C] row-major; destroyed). With P the
// reversal permutation and P A P = L Lᵀ: A^-1 = P L^-ᵀ L^-1 P = Uᵀ U for
// U = P L^-1 P (upper, since L^-1 is lower) — one Cholesky and one triangular
// inverse instead of Cholesky, inverse and Cholesky again.
Status UpperCholeskyOfInverse(std::vector<double>& A, int64_t C, int nt, std::vector<double>& U) {
  std::reverse(A.begin(), A.end());  // A[i][j] <- A[C-1-i][C-1-j]
  const int64_t bad = CholeskyLower(A.data(), C);
  if (bad >= 0) {
    return Status(StatusCode::kInvalidArgument,
                  "gptq: the damped Hessian is not positive definite (pivot " +
                      std::to_string(C - 1 - bad) + ")");
  }
  // M = L^-1 column by column (independent forward substitutions), written
  // straight into U[C-1-i][C-1-j] = M[i][j].
  U.assign(static_cast<size_t>(C * C), 0.0);
#pragma omp parallel num_threads(nt) if (nt > 1 && C >= 256)
  {
    std::vector<double> m(static_cast<size_t>(C));
#pragma omp for schedule(dynamic, 16)
    for (int64_t j = 0; j < C; ++j) {
      InverseColumn(A.data(), C, j, m.data());
      for (int64_t i = j; i < C; ++i) U[(C - 1 - i) * C + (C - 1 - j)] = m[i];
    }
  }
  return Status::Ok();
}

constexpr int64_t kRowTile = 16;

struct SweepShape {
  int64_t rows, C;
  bool w4;
  int64_t G, n_groups, B;  // group (w4), groups per row, lazy-batch block
};

// The GPTQ sweep over rows [r0, r0 + kRowTile) ∩ [0, rows): copies them to W
// (double, [kRowTile][C], dead columns zeroed), quantizes column by column
// with the error feedback through U, writes codes and scales into `q`
// (disjoint bytes per row: C is even for q4). E: [kRowTile][B] scratch.
// Returns the rows' share of the loss.
SSMQ_HOT double SweepRowTile(const SweepShape& sh, const float* w, const uint8_t* dead,
                             const double* U, int64_t r0, double* W, double* E,
                             QuantizedTensor& q) {
  const int64_t C = sh.C, B = sh.B, G = sh.G, nr = std::min(kRowTile, sh.rows - r0);
  const float qmin = sh.w4 ? -8.0f : -127.0f, qmax = sh.w4 ? 7.0f : 127.0f;
  float s[kRowTile];
  for (int64_t r = 0; r < nr; ++r) {
    const float* src = w + (r0 + r) * C;
    double* dst = W + r * C;
    float absmax = 0;
    for (int64_t c = 0; c < C; ++c) {
      dst[c] = dead[c] ? 0.0 : static_cast<double>(src[c]);
      absmax = std::max(absmax, std::fabs(static_cast<float>(dst[c])));
    }
    if (!sh.w4) {  // per output channel, from the row before any update
      s[r] = absmax / 127.0f;
      q.scales[r0 + r] = s[r];
    }
  }
  double loss = 0;
  for (int64_t b0 = 0; b0 < C; b0 += B) {
    const int64_t b1 = std::min(C, b0 + B);
    for (int64_t i = b0; i < b1; ++i) {
      if (sh.w4 && i % G == 0) {  // a group starts: its scale from the current weights
        const int64_t g1 = std::min(C, i + G);
        for (int64_t r = 0; r < nr; ++r) {
          const double* wr = W + r * C;
          float absmax = 0;
          for (int64_t c = i; c < g1; ++c)
            absmax = std::max(absmax, std::fabs(static_cast<float>(wr[c])));
          s[r] = absmax / 7.0f;
          q.scales[(r0 + r) * sh.n_groups + i / G] = s[r];
        }
      }
      const double* Ui = U + i * C;
      const double d = Ui[i];
      for (int64_t r = 0; r < nr; ++r) {
        double* wr = W + r * C;
        const double wv = wr[i];
        float k = 0, deq = 0;
        if (s[r] != 0.0f) {
          k = std::clamp(std::nearbyint(static_cast<float>(wv) / s[r]), qmin, qmax);
          deq = k * s[r];
        }
        const uint64_t idx = static_cast<uint64_t>((r0 + r) * C + i);
        if (sh.w4) {
          const uint8_t code = static_cast<uint8_t>(k + 8.0f);
          uint8_t& byte = q.codes[idx / 2];
          byte = (idx & 1) ? static_cast<uint8_t>((byte & 0x0F) | (code << 4))
                           : static_cast<uint8_t>((byte & 0xF0) | code);
        } else {
          q.codes[idx] = static_cast<uint8_t>(static_cast<int8_t>(k));
        }
        const double e = (wv - static_cast<double>(deq)) / d;
        loss += 0.5 * e * e;
        E[r * B + (i - b0)] = e;
        for (int64_t j = i + 1; j < b1; ++j) wr[j] -= e * Ui[j];
      }
    }
    if (b1 < C) {  // the block's errors reach the remaining columns at once
      for (int64_t r = 0; r < nr; ++r) {
        double* wr = W + r * C;
        const double* er = E + r * B;
        for (int64_t k = b0; k < b1; ++k) {
          const double e = er[k - b0];
          const double* Uk = U + k * C;
          for (int64_t j = b1; j < C; ++j) wr[j] -= e * Uk[j];
        }
      }
    }
  }
  return loss;
}

}  // namespace

Result<GptqResult> GptqQuantize(std::span<const float> w, int64_t rows, int64_t cols,
                                const Hessian& H, WeightBits bits, uint32_t group_size,
                                const GptqOptions& opts) {
  if (bits == WeightBits::kFloat)
    return Status(StatusCode::kInvalidArgument, "gptq: nothing to do for float weights");
  if (rows <= 0 || cols <= 0 || static_cast<int64_t>(w.size()) != rows * cols) {
    return Status(StatusCode::kInvalidArgument,
                  "gptq: " + std::to_string(w.size()) + " weights for a " + std::to_string(rows) +
                      "x" + std::to_string(cols) + " matrix");
  }
  if (H.cols != cols || H.h.size() != static_cast<size_t>(cols * cols)) {
    return Status(StatusCode::kInvalidArgument,
                  "gptq: Hessian of " + std::to_string(H.cols) + " columns for a weight of " +
                      std::to_string(cols));
  }
  if (opts.block_size <= 0 || !(opts.percdamp >= 0))
    return Status(StatusCode::kInvalidArgument, "gptq: block_size must be positive, percdamp >= 0");
  const bool w4 = bits == WeightBits::kW4;
  if (w4 && cols % 2 != 0)
    return Status(StatusCode::kInvalidArgument,
                  "gptq: q4 needs an even number of cols, got " + std::to_string(cols));
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i]))
      return Status(StatusCode::kBadValue,
                    "gptq: non-finite weight at flat index " + std::to_string(i));
  }
  for (double v : H.h) {
    if (!std::isfinite(v)) return Status(StatusCode::kBadValue, "gptq: non-finite Hessian");
  }
  const int64_t C = cols;
  const int nt = Threads(opts.n_threads);

  // Dead inputs, damping, U.
  std::vector<double> A = H.h;
  std::vector<uint8_t> dead(static_cast<size_t>(C), 0);
  double diag_sum = 0;
  for (int64_t i = 0; i < C; ++i) {
    if (A[i * C + i] == 0) {
      dead[i] = 1;
      A[i * C + i] = 1;
    }
    diag_sum += A[i * C + i];
  }
  const double damp = opts.percdamp * diag_sum / static_cast<double>(C);
  for (int64_t i = 0; i < C; ++i) A[i * C + i] += damp;
  std::vector<double> U;
  SSMQ_RETURN_IF_ERROR(UpperCholeskyOfInverse(A, C, nt, U));
  std::vector<double>().swap(A);

  GptqResult out;
  const uint32_t G = w4 ? EffectiveGroupSize(C, group_size) : 0;
  out.info.granularity = w4 ? ScaleGranularity::kPerGroup : ScaleGranularity::kPerChannel;
  out.info.group_size = G;
  const int64_t n_groups = w4 ? (C + G - 1) / G : 1;
  out.q.scales.assign(static_cast<size_t>(rows * n_groups), 0.0f);
  out.q.codes.assign(static_cast<size_t>(w4 ? rows * C / 2 : rows * C), 0);
  // Blocks of whole groups, so that no group straddles a block boundary.
  int64_t B = opts.block_size;
  if (w4) B = G >= B ? G : (B / G) * G;
  const SweepShape sh{rows, C, w4, G, n_groups, B};
  const int64_t n_tiles = (rows + kRowTile - 1) / kRowTile;
  double loss = 0;
#pragma omp parallel num_threads(nt) reduction(+ : loss) if (nt > 1 && n_tiles > 1)
  {
    std::vector<double> W(static_cast<size_t>(kRowTile * C));
    std::vector<double> E(static_cast<size_t>(kRowTile * B));
#pragma omp for schedule(dynamic, 1)
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
      loss += SweepRowTile(sh, w.data(), dead.data(), U.data(), tile * kRowTile, W.data(),
                           E.data(), out.q);
    }
  }
  out.loss = loss;
  return out;
}

// ------------------------------------------------------------ model tensors

namespace {

// Stores `r` as tensor `name` + "<name>.scale", exactly as QuantizeTensor does.
void StoreQuantized(Model& model, const std::string& name, const std::vector<int64_t>& shape,
                    WeightBits bits, GptqResult&& r) {
  const TensorType type = bits == WeightBits::kW4 ? TensorType::kQ4 : TensorType::kQ8;
  const int64_t rows = shape[0];
  ModelTensor codes = ModelTensor::Owned(name, type, shape, std::move(r.q.codes));
  codes.quant = r.info;
  model.SetTensor(std::move(codes));
  const int64_t n_scales = static_cast<int64_t>(r.q.scales.size());
  std::vector<int64_t> scale_shape = {rows};
  if (r.info.granularity == ScaleGranularity::kPerGroup) scale_shape.push_back(n_scales / rows);
  model.SetTensor(ModelTensor::FromF32(name + ".scale", scale_shape, r.q.scales));
}

}  // namespace

Status GptqQuantizeTensor(Model& model, const std::string& name, const Hessian& H,
                          WeightBits bits, uint32_t group_size, const GptqOptions& opts) {
  const ModelTensor* t = model.Find(name);
  if (!t) return Status(StatusCode::kNotFound, "gptq: tensor '" + name + "' not found");
  if (!TraitsOf(t->type).is_float) {
    return Status(StatusCode::kInvalidArgument,
                  "gptq: tensor '" + name + "' is not a float tensor");
  }
  if (t->shape.size() != 2) {
    return Status(StatusCode::kInvalidArgument, "gptq: tensor '" + name + "' is not 2-D");
  }
  if (bits == WeightBits::kFloat) return Status::Ok();
  const std::vector<int64_t> shape = t->shape;
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> values, model.ReadAsF32(name));
  Result<GptqResult> r = GptqQuantize(values, shape[0], shape[1], H, bits, group_size, opts);
  if (!r.ok()) return r.status().WithContext("gptq: tensor '" + name + "'");
  StoreQuantized(model, name, shape, bits, std::move(r).value());
  return Status::Ok();
}

// ---------------------------------------------------------------- ApplyGptq

namespace {

// One weight to quantize and the activation rows that feed it: columns
// [offset, offset + cols) of site (site, layer).
struct Target {
  std::string name;
  std::vector<int64_t> shape;
  WeightBits bits = WeightBits::kFloat;
  ObsSite site = ObsSite::kInProjInput;
  int layer = 0;
  int64_t offset = 0;
  int64_t cols = 0;
};

// Feeds the observed rows of the targets of one pass into their Hessians.
class HessianObserver : public Observer {
 public:
  HessianObserver(const std::vector<Target>& targets, const std::vector<size_t>& pass,
                  std::vector<Hessian>& hessians, int n_threads)
      : targets_(targets), pass_(pass), hessians_(hessians), n_threads_(n_threads) {
    for (size_t k = 0; k < pass.size(); ++k) {
      const Target& t = targets[pass[k]];
      index_[{static_cast<int>(t.site), t.layer}].push_back(k);
    }
  }
  void Observe(ObsSite site, int layer, const float* data, int64_t rows, int64_t cols) override {
    auto it = index_.find({static_cast<int>(site), layer});
    if (it == index_.end()) return;
    for (size_t k : it->second) {
      Hessian& H = hessians_[k];
      if (H.cols + offset(k) > cols) {  // cannot happen for a validated model
        failed_ = true;
        continue;
      }
      H.Add(data + offset(k), rows, cols, n_threads_);
    }
  }
  bool failed() const { return failed_; }

 private:
  int64_t offset(size_t k) const { return targets_[pass_[k]].offset; }

  const std::vector<Target>& targets_;
  const std::vector<size_t>& pass_;
  std::vector<Hessian>& hessians_;
  int n_threads_;
  std::map<std::pair<int, int>, std::vector<size_t>> index_;
  bool failed_ = false;
};

// The activation site feeding a matmul weight of role `role`, or false when
// GPTQ does not handle it.
bool SiteOf(const HParams& hp, const TensorSpec& spec, ObsSite* site, int64_t* cols) {
  switch (spec.role) {
    case TensorRole::kInProj: *site = ObsSite::kInProjInput; *cols = hp.d_model; return true;
    case TensorRole::kXProj: *site = ObsSite::kConvOutX; *cols = hp.d_inner; return true;
    case TensorRole::kDtProjW:
      if (hp.arch != Arch::kMamba1) return false;
      *site = ObsSite::kXProjOutput;  // the first dt_rank columns of [dt_in; B; C]
      *cols = hp.dt_rank;
      return true;
    case TensorRole::kOutProj: *site = ObsSite::kOutProjInput; *cols = hp.d_inner; return true;
    case TensorRole::kOutput: *site = ObsSite::kLmHeadInput; *cols = hp.d_model; return true;
    default: return false;
  }
}

}  // namespace

Status ApplyGptq(Model& model, std::string_view calib_text, const CalibOptions& calib,
                 const std::function<WeightBits(const std::string& tensor_name)>& bits_of,
                 uint32_t group_size, const GptqOptions& opts,
                 const std::function<void(int64_t, int64_t)>& progress) {
  if (calib.samples <= 0 || calib.seqlen <= 0 || calib.batch <= 0 ||
      !(calib.train_fraction > 0) || calib.train_fraction > 1) {
    return Status(StatusCode::kInvalidArgument,
                  "gptq: samples, seqlen and batch must be positive, train_fraction in (0, 1]");
  }
  if (opts.block_size <= 0 || !(opts.percdamp >= 0))
    return Status(StatusCode::kInvalidArgument, "gptq: block_size must be positive, percdamp >= 0");
  if (!bits_of) return Status(StatusCode::kInvalidArgument, "gptq: no bits_of");

  // The weights to quantize.
  std::vector<Target> targets;
  for (const TensorSpec& spec : ExpectedTensors(model.hp)) {
    if (!spec.is_matmul_weight) continue;
    if (spec.role == TensorRole::kOutput && model.hp.tied_embeddings) continue;  // the embedding
    Target t;
    if (!SiteOf(model.hp, spec, &t.site, &t.cols)) continue;
    t.bits = bits_of(spec.name);
    if (t.bits == WeightBits::kFloat) continue;
    const ModelTensor* mt = model.Find(spec.name);
    if (!mt || !TraitsOf(mt->type).is_float) continue;  // absent, or quantized already
    if (mt->shape.size() != 2 || mt->shape[1] != t.cols) {
      return Status(StatusCode::kInvalidArgument,
                    "gptq: tensor '" + spec.name + "' does not have " + std::to_string(t.cols) +
                        " input columns");
    }
    t.name = spec.name;
    t.shape = mt->shape;
    t.layer = spec.layer;
    t.offset = 0;
    targets.push_back(std::move(t));
  }
  if (targets.empty()) return Status::Ok();

  // Calibration windows, picked as Calibrate picks them.
  if (model.tokenizer_json.empty())
    return Status(StatusCode::kInvalidArgument, "gptq: the model has no tokenizer");
  SSMQ_ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::FromJson(model.tokenizer_json));
  const std::vector<int32_t> ids = tokenizer->Encode(TrainSplit(calib_text, calib.train_fraction));
  const int64_t n_tokens = static_cast<int64_t>(ids.size());
  if (n_tokens < calib.seqlen) {
    return Status(StatusCode::kInvalidArgument,
                  "gptq: the train split has " + std::to_string(n_tokens) +
                      " tokens, fewer than seqlen " + std::to_string(calib.seqlen));
  }
  std::mt19937_64 rng(calib.seed);
  const uint64_t n_starts = static_cast<uint64_t>(n_tokens - calib.seqlen + 1);
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < calib.samples; ++i) starts.push_back(static_cast<int64_t>(rng() % n_starts));

  // Passes: consecutive targets whose Hessians fit the budget together.
  std::vector<std::vector<size_t>> passes;
  int64_t pass_bytes = 0;
  for (size_t k = 0; k < targets.size(); ++k) {
    const int64_t bytes = targets[k].cols * targets[k].cols * static_cast<int64_t>(sizeof(double));
    if (passes.empty() || pass_bytes + bytes > opts.max_hessian_bytes) {
      passes.emplace_back();
      pass_bytes = 0;
    }
    passes.back().push_back(k);
    pass_bytes += bytes;
  }
  const int64_t total =
      static_cast<int64_t>(passes.size()) * calib.samples + static_cast<int64_t>(targets.size());
  int64_t done = 0;

  const int hess_threads = opts.n_threads > 0 ? opts.n_threads : calib.threads;
  std::vector<std::pair<size_t, GptqResult>> results;  // applied once the runtime is gone
  {
    SSMQ_ASSIGN_OR_RETURN(auto runtime, Runtime::Create(model, calib.threads));
    std::vector<int32_t> tokens;
    std::vector<float> logits;
    for (const std::vector<size_t>& pass : passes) {
      std::vector<Hessian> hessians;
      for (size_t k : pass) hessians.emplace_back(targets[k].cols);
      HessianObserver observer(targets, pass, hessians, hess_threads);
      runtime->SetObserver(&observer);
      for (int64_t first = 0; first < calib.samples; first += calib.batch) {
        const int64_t batch = std::min(calib.batch, calib.samples - first);
        tokens.clear();
        for (int64_t b = 0; b < batch; ++b) {
          const int64_t start = starts[first + b];
          tokens.insert(tokens.end(), ids.begin() + start, ids.begin() + start + calib.seqlen);
        }
        RecurrentState state = runtime->NewState(batch);
        const Status st = runtime->Prefill(tokens, batch, calib.seqlen, state, logits);
        if (!st.ok()) {
          runtime->SetObserver(nullptr);
          return st.WithContext("gptq: calibration");
        }
        done += batch;
        if (progress) progress(done, total);
      }
      runtime->SetObserver(nullptr);
      if (observer.failed())
        return Status(StatusCode::kBadShape, "gptq: an observed site is narrower than its weight");
      for (size_t k = 0; k < pass.size(); ++k) {
        const Target& t = targets[pass[k]];
        if (hessians[k].n == 0)
          return Status(StatusCode::kInvalidArgument, "gptq: no activations observed for '" + t.name + "'");
        SSMQ_ASSIGN_OR_RETURN(std::vector<float> values, model.ReadAsF32(t.name));
        Result<GptqResult> r =
            GptqQuantize(values, t.shape[0], t.shape[1], hessians[k], t.bits, group_size, opts);
        if (!r.ok()) return r.status().WithContext("gptq: tensor '" + t.name + "'");
        results.emplace_back(pass[k], std::move(r).value());
        std::vector<double>().swap(hessians[k].h);
        ++done;
        if (progress) progress(done, total);
      }
    }
  }
  for (auto& [k, r] : results) StoreQuantized(model, targets[k].name, targets[k].shape, targets[k].bits, std::move(r));
  return Status::Ok();
}

}  // namespace ssmq
