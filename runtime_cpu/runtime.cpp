// Runtime: weight loading (Create), state handling and the shared forward
// pass (embedding -> blocks -> final norm -> logits). The mixers live in
// mamba1_mixer.cpp / mamba2_mixer.cpp.
#include "runtime_cpu/runtime.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "model/arch.h"
#include "runtime_cpu/weight_tiles.h"
#include "runtime_cpu/runtime_impl.h"
#include "runtime_cpu/quant_matmul.h"

namespace ssmq {

namespace {

Status CheckHParams(const HParams& hp) {
  auto bad = [](const std::string& what) {
    return Status(StatusCode::kBadConfig, "runtime: " + what);
  };
  if (hp.d_model <= 0 || hp.n_layer <= 0 || hp.vocab_size <= 0 || hp.d_inner <= 0 ||
      hp.d_state <= 0 || hp.d_conv <= 0) {
    return bad("d_model, n_layer, vocab_size, d_inner, d_state and d_conv must be positive");
  }
  if (hp.arch == Arch::kMamba1) {
    if (hp.dt_rank <= 0) return bad("dt_rank must be positive");
    return Status::Ok();
  }
  if (hp.n_heads <= 0 || hp.head_dim <= 0 || hp.n_heads * hp.head_dim != hp.d_inner) {
    return bad("n_heads * head_dim must equal d_inner");
  }
  if (hp.n_groups <= 0 || hp.n_heads % hp.n_groups != 0) {
    return bad("n_heads must be a multiple of n_groups");
  }
  if (hp.chunk_size <= 0 || hp.chunk_size > kMaxChunkSize) {
    return bad("chunk_size must be in [1, " + std::to_string(kMaxChunkSize) + "]");
  }
  const int64_t group = hp.norm_group_size == 0 ? hp.d_inner : hp.norm_group_size;
  if (group <= 0 || hp.d_inner % group != 0) {
    return bad("norm_group_size " + std::to_string(hp.norm_group_size) + " must divide d_inner " +
               std::to_string(hp.d_inner));
  }
  return Status::Ok();
}

// Widens static groups to the longest runs of equal scales (the gcd of the
// positions where the value changes), so per-segment scales stored per channel
// run the integer kernels with wide blocks. The values are unchanged.
void CoarsenGroups(rt::ActQuant& aq, int64_t width) {
  int64_t g = width;
  for (size_t k = 1; k < aq.scales.size(); ++k) {
    if (aq.scales[k] != aq.scales[k - 1]) g = std::gcd(g, static_cast<int64_t>(k) * aq.group);
  }
  if (g == aq.group) return;
  std::vector<float> wide(static_cast<size_t>(width / g));
  for (size_t k = 0; k < wide.size(); ++k) wide[k] = aq.scales[k * static_cast<size_t>(g / aq.group)];
  aq.scales = std::move(wide);
  aq.group = g;
}

// Reads one site's mode (metadata blk.{i}.act.{name}) and static scales
// (tensor blk.{i}.act.{name}.scale) into aq / sq (model/act_sites.h).
Status LoadActSite(const Model& m, const HParams& hp, int l, ActSite site, rt::ActQuant& aq,
                   rt::StateQuant& sq) {
  const std::string key = ActModeKey(l, site);
  const MetaValue* v = m.extra.Find(key);
  if (!v) return Status::Ok();
  const int64_t width = ActSiteWidth(hp, site);
  const Result<std::string> text = v->AsString();
  const std::optional<ActMode> mode = text.ok() ? ParseActMode(*text) : std::nullopt;
  if (!mode || width == 0 || (site == ActSite::kSsmState && *mode != ActMode::kStatic)) {
    return Status(StatusCode::kBadMetadata,
                  "runtime: metadata '" + key + "' must be " +
                      (width == 0 ? std::string("absent for this architecture")
                                  : site == ActSite::kSsmState
                                        ? std::string("\"static\"")
                                        : std::string("\"static\" or \"dynamic_per_token\"")));
  }
  if (*mode == ActMode::kDynamicPerToken) {
    aq.mode = rt::ActQuant::Mode::kDynamicPerToken;
    return Status::Ok();
  }
  const std::string tname = ActScaleTensor(l, site);
  const ModelTensor* t = m.Find(tname);
  if (!t || t->type != TensorType::kF32) {
    return Status(StatusCode::kNotFound, "runtime: static site '" + key +
                                             "' needs the f32 tensor '" + tname + "'");
  }
  const int64_t n = t->numel();
  const bool state = site == ActSite::kSsmState;
  const bool shape_ok = state ? (t->shape.size() == 2 && t->shape[1] == hp.d_state &&
                                 t->shape[0] > 0 && width % t->shape[0] == 0)
                              : (t->shape.size() == 1 && n > 0 && width % n == 0);
  if (!shape_ok || t->data.size() != static_cast<size_t>(n) * 4) {
    return Status(StatusCode::kBadShape,
                  "runtime: tensor '" + tname + "' has shape " + rt::ShapeText(t->shape) +
                      (state ? ", expected [R, d_state] with R dividing d_inner "
                             : ", expected [n] with n dividing the site width ") +
                      std::to_string(width));
  }
  std::vector<float> scales(static_cast<size_t>(n));
  std::memcpy(scales.data(), t->data.data(), static_cast<size_t>(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    if (!(scales[i] > 0.0f) || !std::isfinite(scales[i])) {
      return Status(StatusCode::kBadValue, "runtime: tensor '" + tname + "' element " +
                                               std::to_string(i) +
                                               " is not a positive finite scale");
    }
  }
  if (state) {
    sq.rows_per_group = width / t->shape[0];
    sq.d_state = hp.d_state;
    sq.scales = std::move(scales);
    sq.inv_scales.resize(sq.scales.size());
    for (size_t i = 0; i < sq.scales.size(); ++i) sq.inv_scales[i] = 1.0f / sq.scales[i];
  } else {
    aq.mode = rt::ActQuant::Mode::kStatic;
    aq.group = width / n;
    aq.scales = std::move(scales);
    CoarsenGroups(aq, width);
    rt::SetColumnScales(aq, width);
  }
  return Status::Ok();
}

// Columns [c0, c1) of a row site's quantization (the dt_in slice of mamba1's
// x_proj output). kBadShape when the slice cuts a static group.
Result<rt::ActQuant> SliceActQuant(const rt::ActQuant& aq, int64_t c0, int64_t c1,
                                   const std::string& what) {
  rt::ActQuant out = aq;
  if (aq.mode != rt::ActQuant::Mode::kStatic) return out;
  if (aq.scales.size() == 1) {
    out.group = c1 - c0;
    rt::SetColumnScales(out, c1 - c0);
    return out;
  }
  if (c0 % aq.group != 0 || (c1 - c0) % aq.group != 0) {
    return Status(StatusCode::kBadShape, "runtime: the static groups of " + what +
                                             " (width " + std::to_string(aq.group) +
                                             ") cut its columns [" + std::to_string(c0) + ", " +
                                             std::to_string(c1) + ")");
  }
  out.scales.assign(aq.scales.begin() + c0 / aq.group, aq.scales.begin() + c1 / aq.group);
  CoarsenGroups(out, c1 - c0);
  rt::SetColumnScales(out, c1 - c0);
  return out;
}

// An integer matmul needs its act groups to tile the weight's groups.
Status CheckInt8Compatible(const rt::Weight& w, const rt::ActQuant& aq, const std::string& site) {
  if (!aq.enabled() || !w.quantized() || rt::Int8BlockWidth(w, aq) > 0) return Status::Ok();
  return Status(StatusCode::kBadTensorInfo,
                "runtime: activation groups of '" + site + "' (width " + std::to_string(aq.group) +
                    ") and the weight groups of '" + w.name + "' (width " +
                    std::to_string(w.group_size) + ") do not nest");
}

Status LoadActs(const Model& m, const HParams& hp, int l, rt::LayerWeights& w) {
  rt::LayerActs& a = w.act;
  for (int i = 0; i < kActSiteCount; ++i) {
    SSMQ_RETURN_IF_ERROR(LoadActSite(m, hp, l, static_cast<ActSite>(i), a.site[i], a.state));
  }
  if (hp.arch == Arch::kMamba1) {
    SSMQ_ASSIGN_OR_RETURN(a.dt_proj_input,
                          SliceActQuant(a[ActSite::kXProjOutput], 0, hp.dt_rank,
                                        ActModeKey(l, ActSite::kXProjOutput)));
    SSMQ_RETURN_IF_ERROR(
        CheckInt8Compatible(w.x_proj, a[ActSite::kConvOutput], ActModeKey(l, ActSite::kConvOutput)));
    SSMQ_RETURN_IF_ERROR(CheckInt8Compatible(w.dt_proj, a.dt_proj_input,
                                             ActModeKey(l, ActSite::kXProjOutput)));
  }
  SSMQ_RETURN_IF_ERROR(
      CheckInt8Compatible(w.in_proj, a[ActSite::kInProjInput], ActModeKey(l, ActSite::kInProjInput)));
  SSMQ_RETURN_IF_ERROR(CheckInt8Compatible(w.out_proj, a[ActSite::kOutProjInput],
                                           ActModeKey(l, ActSite::kOutProjInput)));
  return Status::Ok();
}

// Small per-channel parameters (norms, conv, dt bias, A_log, D) may be stored
// as q8 by the A8 recipes; the kernels read them as f32, so they are expanded
// here (a few values per channel, unlike the matmul weights).
Result<rt::Weight> LoadSmall(const Model& m, const std::string& name,
                             const std::vector<int64_t>& shape, bool optional = false) {
  SSMQ_ASSIGN_OR_RETURN(rt::Weight w, rt::LoadWeight(m, name, shape, optional));
  if (w.quantized()) rt::ExpandToF32(w);
  return w;
}

Status LoadLayer(const Model& m, const HParams& hp, int l, rt::LayerWeights& w) {
  auto name = [l](const char* suffix) { return LayerTensorName(l, suffix); };
  const int64_t dm = hp.d_model, di = hp.d_inner, N = hp.d_state;
  SSMQ_ASSIGN_OR_RETURN(w.norm, LoadSmall(m, name("norm.weight"), {dm}));
  SSMQ_ASSIGN_OR_RETURN(w.in_proj, rt::LoadWeight(m, name("ssm_in.weight"), {hp.in_proj_dim(), dm}, false, true));
  SSMQ_ASSIGN_OR_RETURN(w.in_proj_bias,
                        rt::LoadWeight(m, name("ssm_in.bias"), {hp.in_proj_dim()}, true));
  SSMQ_ASSIGN_OR_RETURN(w.conv_w,
                        LoadSmall(m, name("ssm_conv1d.weight"), {hp.conv_dim(), hp.d_conv}));
  SSMQ_ASSIGN_OR_RETURN(w.conv_b, LoadSmall(m, name("ssm_conv1d.bias"), {hp.conv_dim()},
                                                 !hp.conv_bias));
  SSMQ_ASSIGN_OR_RETURN(w.out_proj, rt::LoadWeight(m, name("ssm_out.weight"), {dm, di}, false, true));
  SSMQ_ASSIGN_OR_RETURN(w.out_proj_bias, rt::LoadWeight(m, name("ssm_out.bias"), {dm}, true));
  SSMQ_ASSIGN_OR_RETURN(const std::optional<HadamardKind> had,
                        ReadHadamardDescriptor(m.extra, l, "ssm_out"));
  if (had) {
    if (had->size() != di) {
      return Status(StatusCode::kBadConfig, "runtime: blk." + std::to_string(l) +
                                                ".hadamard.ssm_out.size must equal d_inner " +
                                                std::to_string(di));
    }
    w.has_out_proj_hadamard = true;
    w.out_proj_hadamard = *had;
  }
  rt::Weight a_log;
  if (hp.arch == Arch::kMamba1) {
    SSMQ_ASSIGN_OR_RETURN(w.x_proj,
                          rt::LoadWeight(m, name("ssm_x.weight"), {hp.dt_rank + 2 * N, di}, false, true));
    SSMQ_ASSIGN_OR_RETURN(w.dt_proj, rt::LoadWeight(m, name("ssm_dt.weight"), {di, hp.dt_rank}, false, true));
    SSMQ_ASSIGN_OR_RETURN(w.dt_bias, LoadSmall(m, name("ssm_dt.bias"), {di}));
    SSMQ_ASSIGN_OR_RETURN(a_log, LoadSmall(m, name("ssm_a_log"), {di, N}));
    SSMQ_ASSIGN_OR_RETURN(w.d, LoadSmall(m, name("ssm_d"), {di}));
  } else {
    const int64_t H = hp.n_heads;
    SSMQ_ASSIGN_OR_RETURN(w.dt_bias, LoadSmall(m, name("ssm_dt.bias"), {H}));
    SSMQ_ASSIGN_OR_RETURN(a_log, LoadSmall(m, name("ssm_a_log"), {H}));
    SSMQ_ASSIGN_OR_RETURN(w.d, LoadSmall(m, name("ssm_d"), {H}));
    SSMQ_ASSIGN_OR_RETURN(w.ssm_norm, LoadSmall(m, name("ssm_norm.weight"), {di}));
  }
  const int64_t n_a = a_log.rows * a_log.cols;
  w.a.resize(static_cast<size_t>(n_a));
  for (int64_t i = 0; i < n_a; ++i) w.a[i] = -std::exp(a_log.f32[i]);
  if (a_log.zero_copy()) rt::ReleasePages(a_log.f32, static_cast<size_t>(n_a) * 4, true);
  return LoadActs(m, hp, l, w);
}

}  // namespace

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

Result<std::unique_ptr<Runtime>> Runtime::Create(const Model& model, int n_threads) {
  RuntimeOptions opts;
  opts.n_threads = n_threads;
  return Create(model, opts);
}

Result<std::unique_ptr<Runtime>> Runtime::Create(const Model& model, const RuntimeOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->model = &model;
  impl->hp = model.hp;
  impl->n_threads = opts.n_threads;
  impl->simulate_act_quant = opts.simulate_act_quant;
  impl->decode_team = opts.decode_team;
  impl->idle_prefetch = opts.idle_prefetch;
  HParams& hp = impl->hp;
  SSMQ_RETURN_IF_ERROR(CheckHParams(hp));
  if (hp.arch == Arch::kMamba2 && hp.norm_group_size == 0) hp.norm_group_size = hp.d_inner;
  SSMQ_ASSIGN_OR_RETURN(impl->token_embd,
                        rt::LoadWeight(model, "token_embd.weight", {hp.vocab_size, hp.d_model}, false, true));
  SSMQ_ASSIGN_OR_RETURN(impl->output_norm,
                        LoadSmall(model, "output_norm.weight", {hp.d_model}));
  if (!hp.tied_embeddings) {
    SSMQ_ASSIGN_OR_RETURN(impl->output,
                          rt::LoadWeight(model, "output.weight", {hp.vocab_size, hp.d_model}, false, true));
  }
  impl->layers.resize(static_cast<size_t>(hp.n_layer));
  for (int l = 0; l < hp.n_layer; ++l) {
    SSMQ_RETURN_IF_ERROR(LoadLayer(model, hp, l, impl->layers[l]));
  }
  SSMQ_RETURN_IF_ERROR(impl->LayOutMatmulWeights(opts));
  impl->any_float_state = impl->any_int8_state = impl->any_half_state = false;
  for (const rt::LayerWeights& w : impl->layers) {
    bool& uses = w.act.state.enabled() ? impl->any_int8_state
                 : opts.f16_state      ? impl->any_half_state
                                       : impl->any_float_state;
    uses = true;
  }
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

// The decode matmul weights: Q4 ones into 16-row tiles (opts.weight_tiles,
// where they apply), the others copied as they are (opts.huge_pages), both
// into the huge-page arena when opts.huge_pages (sized first: Plan, then
// Take in the same order), else the tiles into each weight's own buffer.
Status Runtime::Impl::LayOutMatmulWeights(const RuntimeOptions& opts) {
  // Each decode matmul weight with the activation quantization of its input
  // (the LM head's input stays float).
  std::vector<rt::Weight*> mats;
  std::vector<bool> int8_input;  // the matrix only ever meets int8 activations at decode
  for (rt::LayerWeights& w : layers) {
    const std::pair<rt::Weight*, const rt::ActQuant*> inputs[] = {
        {&w.in_proj, &w.act[ActSite::kInProjInput]},
        {&w.x_proj, &w.act[ActSite::kConvOutput]},
        {&w.dt_proj, &w.act.dt_proj_input},
        {&w.out_proj, &w.act[ActSite::kOutProjInput]}};
    for (const auto& [m, aq] : inputs) {
      rt::BuildQ8BlockSums(*m, *aq);  // the Q8 decode kernel's bias correction (act_quant.h)
      mats.push_back(m);
      int8_input.push_back(aq->enabled() && !simulate_act_quant);
    }
  }
  mats.push_back(hp.tied_embeddings ? &token_embd : &output);
  int8_input.push_back(false);
  const auto tiles = [&](size_t i) {
    return opts.weight_tiles ? rt::TileBytes(*mats[i], int8_input[i]) : 0;
  };
  if (!opts.huge_pages) {
    for (size_t i = 0; i < mats.size(); ++i) {
      if (tiles(i) > 0) rt::BuildTiles(*mats[i], nullptr, int8_input[i]);
    }
    return Status::Ok();
  }
  for (size_t i = 0; i < mats.size(); ++i) {
    arena.Plan(tiles(i) > 0 ? tiles(i) : rt::ArenaCopyBytes(*mats[i]));
  }
  SSMQ_RETURN_IF_ERROR(arena.Allocate());
  for (size_t i = 0; i < mats.size(); ++i) {
    rt::Weight& m = *mats[i];
    if (const size_t n = tiles(i); n > 0) {
      rt::BuildTiles(m, arena.Take(n), int8_input[i]);
    } else if (const size_t c = rt::ArenaCopyBytes(m); c > 0) {
      rt::CopyToArena(m, arena.Take(c));
    }
  }
  return Status::Ok();
}

const HParams& Runtime::hparams() const { return impl_->hp; }

void Runtime::SetObserver(Observer* observer) { impl_->observer = observer; }

void Runtime::Impl::OutProjInputTransform(int l, float* y, int64_t T) {
  const int64_t di = hp.d_inner;
  Observe(ObsSite::kSsmOutput, l, y, T, di, di);
  const rt::LayerWeights& w = layers[l];
  if (w.has_out_proj_hadamard) HadamardTransformRows(w.out_proj_hadamard, y, T, di, n_threads);
  Observe(ObsSite::kOutProjInput, l, y, T, di, di);
}

void Runtime::Impl::MatMulAct(const rt::Weight& w, const rt::Weight* bias, const rt::ActQuant& aq,
                              float* x, int64_t x_stride, int64_t T, float* y, int64_t y_stride) {
  if (aq.enabled() && (simulate_act_quant || !w.quantized())) {
    rt::FakeQuantize(aq, x, x_stride, T, w.cols, n_threads);
  } else if (aq.enabled()) {
    rt::Grow(scratch.act_codes, static_cast<size_t>(T * w.cols));
    rt::Grow(scratch.act_row_scales, static_cast<size_t>(T));
    rt::QuantizeActivations(aq, x, x_stride, T, w.cols, scratch.act_codes.data(),
                            scratch.act_row_scales.data(), n_threads);
    rt::Int8MatMul(w, bias, aq, scratch.act_codes.data(), scratch.act_row_scales.data(), T, y,
                   y_stride, n_threads);
    return;
  }
  rt::MatMul(w, bias, x, x_stride, T, y, y_stride, n_threads);
}

rt::RowsPlan Runtime::Impl::PlanMatMulAct(const rt::Weight& w, const rt::Weight* bias,
                                          const rt::ActQuant& aq, const float* x,
                                          int64_t x_stride, int64_t T, float* y,
                                          int64_t y_stride) const {
  if (aq.enabled() && w.quantized()) {
    thread_local std::vector<int8_t> codes;  // per thread: grown once, then reused
    thread_local std::vector<float> row_scales;
    rt::Grow(codes, static_cast<size_t>(T * w.cols));
    rt::Grow(row_scales, static_cast<size_t>(T));
    rt::QuantizeActivations(aq, x, x_stride, T, w.cols, codes.data(), row_scales.data(), 1);
    return rt::PlanInt8MatMul(w, bias, aq, codes.data(), row_scales.data(), T, y, y_stride);
  }
  return rt::PlanMatMul(w, bias, x, x_stride, T, y, y_stride);
}

RecurrentState Runtime::NewState(int64_t batch) const {
  RecurrentState s;
  s.batch = batch;
  const size_t ssm = impl_->ssm_floats_per_layer(batch) * impl_->hp.n_layer;
  s.conv.assign(impl_->conv_floats_per_layer(batch) * impl_->hp.n_layer, 0.0f);
  if (impl_->any_float_state) s.ssm.assign(ssm, 0.0f);
  if (impl_->any_int8_state) s.ssm_q.assign(ssm, 0);
  if (impl_->any_half_state) s.ssm_h.assign(ssm, 0);  // +0.0 in half
  return s;
}

void Runtime::ResetState(RecurrentState& s) const {
  std::fill(s.conv.begin(), s.conv.end(), 0.0f);
  std::fill(s.ssm.begin(), s.ssm.end(), 0.0f);
  std::fill(s.ssm_q.begin(), s.ssm_q.end(), int8_t{0});
  std::fill(s.ssm_h.begin(), s.ssm_h.end(), uint16_t{0});
}

Status Runtime::Prefill(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len,
                        RecurrentState& state, std::vector<float>& logits) {
  return impl_->Forward(tokens, batch, seq_len, state, logits, /*recurrent=*/false);
}

Status Runtime::Step(std::span<const int32_t> tokens, RecurrentState& state,
                     std::vector<float>& logits) {
  return impl_->Forward(tokens, static_cast<int64_t>(tokens.size()), 1, state, logits,
                        /*recurrent=*/true);
}

Status Runtime::PrefillLast(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len,
                            RecurrentState& state, std::vector<float>& logits) {
  using Logits = Impl::Logits;
  if (batch <= 0 || seq_len <= kPrefillPiece ||
      static_cast<int64_t>(tokens.size()) != batch * seq_len) {  // one piece (or Forward's error)
    return impl_->Forward(tokens, batch, seq_len, state, logits, false, Logits::kLast);
  }
  std::vector<int32_t> piece;
  for (int64_t t0 = 0; t0 < seq_len; t0 += kPrefillPiece) {
    const int64_t n = std::min(kPrefillPiece, seq_len - t0);
    piece.resize(static_cast<size_t>(batch * n));
    for (int64_t b = 0; b < batch; ++b) {
      std::copy_n(tokens.begin() + b * seq_len + t0, n, piece.begin() + b * n);
    }
    const bool last = t0 + n == seq_len;
    SSMQ_RETURN_IF_ERROR(impl_->Forward(piece, batch, n, state, logits, false,
                                        last ? Logits::kLast : Logits::kNone));
  }
  return Status::Ok();
}

void Runtime::Impl::GrowStateScratch(int64_t batch) {
  if (any_int8_state || any_half_state) rt::Grow(scratch.state_f32, ssm_floats_per_layer(batch));
}

rt::SsmStateRef Runtime::Impl::LayerSsm(int l, int64_t batch, RecurrentState& state) {
  const size_t per_layer = ssm_floats_per_layer(batch);
  const rt::StateQuant& sq = layers[l].act.state;
  rt::SsmStateRef ssm;
  if (sq.enabled()) {  // int8 cache: the mixer converts it row range by row range
    ssm = {scratch.state_f32.data(), state.ssm_q.data() + l * per_layer, &sq};
  } else if (any_half_state) {  // f16 state: converted like the int8 cache
    ssm.f32 = scratch.state_f32.data();
    ssm.half = state.ssm_h.data() + l * per_layer;
    ssm.d_state = hp.d_state;
  } else {
    ssm.f32 = state.ssm.data() + l * per_layer;
  }
  return ssm;
}

Status Runtime::Impl::Forward(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len,
                              RecurrentState& state, std::vector<float>& logits, bool recurrent,
                              Logits which) {
  if (batch <= 0 || seq_len <= 0) {
    return Status(StatusCode::kInvalidArgument, "runtime: batch and seq_len must be positive");
  }
  if (static_cast<int64_t>(tokens.size()) != batch * seq_len) {
    return Status(StatusCode::kInvalidArgument,
                  "runtime: got " + std::to_string(tokens.size()) + " tokens for batch " +
                      std::to_string(batch) + " x seq_len " + std::to_string(seq_len));
  }
  const size_t conv_per_layer = conv_floats_per_layer(batch);
  const size_t ssm_per_layer = ssm_floats_per_layer(batch);
  if (state.batch != batch || state.conv.size() != conv_per_layer * hp.n_layer ||
      state.ssm.size() != (any_float_state ? ssm_per_layer * hp.n_layer : 0) ||
      state.ssm_q.size() != (any_int8_state ? ssm_per_layer * hp.n_layer : 0) ||
      state.ssm_h.size() != (any_half_state ? ssm_per_layer * hp.n_layer : 0)) {
    return Status(StatusCode::kInvalidArgument,
                  "runtime: recurrent state is for batch " + std::to_string(state.batch) +
                      " (or has the wrong size), tokens are for batch " + std::to_string(batch));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= hp.vocab_size) {
      return Status(StatusCode::kInvalidArgument,
                    "runtime: token " + std::to_string(i) + " has id " + std::to_string(tokens[i]) +
                        " outside the vocabulary [0, " + std::to_string(hp.vocab_size) + ")");
    }
  }
  const int64_t T = batch * seq_len, dm = hp.d_model;
  rt::Scratch& s = scratch;
  rt::Grow(s.hidden, T * dm);
  rt::Grow(s.normed, T * dm);
  rt::Grow(s.mixer_out, T * dm);
  rt::Grow(s.proj, T * hp.in_proj_dim());
  rt::Grow(s.conv_out, T * hp.conv_dim());
  rt::Grow(s.y, T * hp.d_inner);
  if (hp.arch == Arch::kMamba1) {
    rt::Grow(s.dbc, T * (hp.dt_rank + 2 * hp.d_state));
    rt::Grow(s.dt, T * hp.d_inner);
  } else {
    rt::Grow(s.dt, T * hp.n_heads);
    rt::Grow(s.gated, T * hp.d_inner);
    const rt::Mamba2Dims dims{hp.n_heads, hp.head_dim, hp.n_groups, hp.d_state};
    rt::Grow(s.per_thread, static_cast<size_t>(rt::ThreadCount(n_threads)) *
                               rt::Mamba2ChunkScratchFloats(dims, hp.chunk_size));
  }
  for (int64_t t = 0; t < T; ++t) {
    rt::DequantizeRow(token_embd, tokens[t], s.hidden.data() + t * dm);  // f32 rows: a copy
  }
  if (recurrent && seq_len == 1 && DecodeTeamApplies(batch)) {
    if (which == Logits::kNone) {
      DecodeTeam(batch, state, nullptr);
    } else {
      logits.resize(static_cast<size_t>(batch * hp.vocab_size));
      DecodeTeam(batch, state, logits.data());
    }
    return Status::Ok();
  }
  GrowStateScratch(batch);
  const int nt = rt::ThreadCount(n_threads);
  for (int l = 0; l < hp.n_layer; ++l) {
    rt::RmsNormRows(s.hidden.data(), T, dm, layers[l].norm.f32, hp.norm_eps, s.normed.data(),
                    n_threads);
    float* conv_state = state.conv.data() + l * conv_per_layer;
    const rt::SsmStateRef ssm = LayerSsm(l, batch, state);
    float* ssm_state = ssm.f32;  // after the mixer: the layer's final state in float
    Observe(ObsSite::kInProjInput, l, s.normed.data(), T, dm, dm);
    if (hp.arch == Arch::kMamba1) {
      Mamba1Mixer(l, batch, seq_len, conv_state, ssm, recurrent);
    } else {
      Mamba2Mixer(l, batch, seq_len, conv_state, ssm, recurrent);
    }
    Observe(ObsSite::kOutProjOutput, l, s.mixer_out.data(), T, dm, dm);
    if (!recurrent) {
      const int64_t per_seq = static_cast<int64_t>(ssm_per_layer) / batch;
      Observe(ObsSite::kSsmStateFinal, l, ssm_state, batch, per_seq, per_seq);
    }
    float* h = s.hidden.data();
    const float* o = s.mixer_out.data();
    const int64_t n = T * dm;
#pragma omp parallel for simd num_threads(nt) schedule(static) if (n > 65536 && nt > 1)
    for (int64_t i = 0; i < n; ++i) h[i] += o[i];
  }
  if (which == Logits::kNone) return Status::Ok();
  int64_t rows = T;
  if (which == Logits::kLast && seq_len > 1) {  // keep each sequence's last row, in place
    for (int64_t b = 0; b < batch; ++b) {
      std::copy_n(s.hidden.data() + (b * seq_len + seq_len - 1) * dm, dm, s.hidden.data() + b * dm);
    }
    rows = batch;
  }
  rt::RmsNormRows(s.hidden.data(), rows, dm, output_norm.f32, hp.norm_eps, s.normed.data(),
                  n_threads);
  Observe(ObsSite::kLmHeadInput, -1, s.normed.data(), rows, dm, dm);
  logits.resize(static_cast<size_t>(rows * hp.vocab_size));
  rt::MatMul(lm_head(), nullptr, s.normed.data(), dm, rows, logits.data(), hp.vocab_size,
             n_threads);
  return Status::Ok();
}

}  // namespace ssmq
