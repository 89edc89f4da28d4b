// A8 recipes: rewrites, calibration and the static activation scales.
#include "convert/act_recipe.h"

#include <algorithm>
#include <cstring>

#include "convert/quantize_weights.h"
#include "convert/reorder.h"
#include "convert/rotate.h"
#include "format/quant.h"
#include "model/act_sites.h"
#include "model/arch.h"

namespace ssmq {

namespace {

// Quamba's observers clamp the statistic at 1e-5 before dividing by 127.
float ScaleOf(float absmax) { return std::max(absmax, 1e-5f) / 127.0f; }

struct Switch {
  const char* name;
  bool ActComponents::*field;
};
constexpr Switch kSwitches[] = {
    {"rotate-residual", &ActComponents::rotate_residual},
    {"hadamard", &ActComponents::hadamard},
    {"percentile", &ActComponents::percentile},
    {"reorder", &ActComponents::reorder},
    {"x-groups", &ActComponents::x_groups},
    {"group-bc", &ActComponents::group_bc},
    {"segment-scales", &ActComponents::segment_scales},
    {"out-proj-dynamic", &ActComponents::out_proj_dynamic},
    {"small-int8", &ActComponents::small_int8},
    {"state-int8", &ActComponents::state_int8},
};

Result<const SiteStats*> Stats(const CalibResult& calib, ObsSite site, int layer) {
  const SiteStats* s = calib.Find(site, layer);
  if (!s) {
    return Status(StatusCode::kNotFound, std::string("calibration: no statistics for site ") +
                                             ObsSiteName(site) + " of layer " +
                                             std::to_string(layer));
  }
  return s;
}

float MaxOver(const std::vector<float>& v, int64_t c0, int64_t c1) {
  float m = 0;
  for (int64_t c = c0; c < c1; ++c) m = std::max(m, v[static_cast<size_t>(c)]);
  return m;
}

void AddStatic(Model& m, int l, ActSite site, const std::vector<float>& scales,
               std::vector<int64_t> shape) {
  m.SetTensor(ModelTensor::FromF32(ActScaleTensor(l, site), std::move(shape), scales));
  m.extra.Set(ActModeKey(l, site), MetaValue::String(ActModeName(ActMode::kStatic)));
}

void AddPerTensor(Model& m, int l, ActSite site, float absmax) {
  AddStatic(m, l, site, {ScaleOf(absmax)}, {1});
}

// Per-channel scales of a row made of segments, each segment per tensor.
void AddSegments(Model& m, int l, ActSite site, const std::vector<float>& channel_absmax,
                 const std::vector<int64_t>& segment_widths) {
  std::vector<float> scales;
  int64_t c0 = 0;
  for (int64_t w : segment_widths) {
    scales.insert(scales.end(), static_cast<size_t>(w), ScaleOf(MaxOver(channel_absmax, c0, c0 + w)));
    c0 += w;
  }
  AddStatic(m, l, site, scales, {static_cast<int64_t>(scales.size())});
}

Result<std::vector<int32_t>> ReadI32(const Model& m, const std::string& name, size_t n) {
  const ModelTensor* t = m.Find(name);
  if (!t || t->type != TensorType::kI32 || t->data.size() != n * 4) {
    return Status(StatusCode::kBadTensorInfo, "act recipe: tensor '" + name + "' must be i32 with " +
                                                  std::to_string(n) + " elements");
  }
  std::vector<int32_t> v(n);
  std::memcpy(v.data(), t->data.data(), n * 4);
  return v;
}

// Mamba2 conv output [x | B | C]: x per (SSD group, head group, dim group) from
// the reorder's cluster tensors (else per tensor), B and C per SSD group (else
// per tensor).
Status AddMamba2ConvOutput(Model& m, const CalibResult& calib, int l, const ActComponents& c) {
  const HParams& hp = m.hp;
  const int64_t di = hp.d_inner, G = hp.n_groups, N = hp.d_state, H = hp.n_heads, P = hp.head_dim;
  SSMQ_ASSIGN_OR_RETURN(const SiteStats* sx, Stats(calib, ObsSite::kConvOutX, l));
  SSMQ_ASSIGN_OR_RETURN(const SiteStats* sb, Stats(calib, ObsSite::kConvOutB, l));
  SSMQ_ASSIGN_OR_RETURN(const SiteStats* sc, Stats(calib, ObsSite::kConvOutC, l));
  std::vector<float> scales(static_cast<size_t>(hp.conv_dim()));
  const ModelTensor* hg_t = m.Find("blk." + std::to_string(l) + ".x_head_groups");
  const ModelTensor* dg_t = m.Find("blk." + std::to_string(l) + ".x_dim_groups");
  if (c.x_groups && hg_t && dg_t && hg_t->shape.size() == 2 && dg_t->shape.size() == 3) {
    const int64_t n_hg = hg_t->shape[1], n_dg = dg_t->shape[2];
    SSMQ_ASSIGN_OR_RETURN(std::vector<int32_t> head_ends,
                          ReadI32(m, hg_t->name, static_cast<size_t>(G * n_hg)));
    SSMQ_ASSIGN_OR_RETURN(std::vector<int32_t> dim_ends,
                          ReadI32(m, dg_t->name, static_cast<size_t>(G * n_hg * n_dg)));
    const int64_t hpg = H / G;
    // cluster id of every x channel, then the max statistic per cluster
    std::vector<int64_t> cluster(static_cast<size_t>(di));
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / hpg, hl = h % hpg;
      int64_t hg = 0;
      while (hg < n_hg && hl >= head_ends[g * n_hg + hg]) ++hg;
      hg = std::min(hg, n_hg - 1);
      for (int64_t p = 0; p < P; ++p) {
        int64_t dg = 0;
        while (dg < n_dg && p >= dim_ends[(g * n_hg + hg) * n_dg + dg]) ++dg;
        dg = std::min(dg, n_dg - 1);
        cluster[h * P + p] = (g * n_hg + hg) * n_dg + dg;
      }
    }
    std::vector<float> cmax(static_cast<size_t>(G * n_hg * n_dg), 0.0f);
    for (int64_t ch = 0; ch < di; ++ch)
      cmax[cluster[ch]] = std::max(cmax[cluster[ch]], sx->channel_absmax[ch]);
    for (int64_t ch = 0; ch < di; ++ch) scales[ch] = ScaleOf(cmax[cluster[ch]]);
  } else {
    const float x = c.percentile ? sx->percentile_ema : sx->absmax;
    std::fill(scales.begin(), scales.begin() + di, ScaleOf(x));
  }
  for (int which = 0; which < 2; ++which) {
    const SiteStats* s = which == 0 ? sb : sc;
    const int64_t base = di + which * G * N;
    for (int64_t g = 0; g < G; ++g) {
      const float v = c.group_bc ? MaxOver(s->channel_absmax, g * N, (g + 1) * N) : s->absmax;
      std::fill(scales.begin() + base + g * N, scales.begin() + base + (g + 1) * N, ScaleOf(v));
    }
  }
  AddStatic(m, l, ActSite::kConvOutput, scales, {hp.conv_dim()});
  return Status::Ok();
}

// The int8 state cache scales: mamba1 [1, d_state] per tensor (percentile or
// min-max, as Quamba); mamba2 [n_heads, d_state] (per head and state index;
// Quamba2 uses per head group, dim group and state index) or [1, d_state]
// per tensor without x_groups.
void AddState(Model& m, const SiteStats& st, int l, const ActComponents& c) {
  const HParams& hp = m.hp;
  const int64_t N = hp.d_state;
  if (hp.arch == Arch::kMamba1 || !c.x_groups) {
    const float v = c.percentile && st.percentile_ema > 0 ? st.percentile_ema : st.absmax;
    AddStatic(m, l, ActSite::kSsmState, std::vector<float>(static_cast<size_t>(N), ScaleOf(v)),
              {1, N});
    return;
  }
  const int64_t H = hp.n_heads, P = hp.head_dim;
  std::vector<float> scales(static_cast<size_t>(H * N));
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t n = 0; n < N; ++n) {
      float v = 0;
      for (int64_t p = 0; p < P; ++p) v = std::max(v, st.channel_absmax[(h * P + p) * N + n]);
      scales[h * N + n] = ScaleOf(v);
    }
  }
  AddStatic(m, l, ActSite::kSsmState, scales, {H, N});
}

Status AddLayerSites(Model& m, const CalibResult& calib, int l, const ActComponents& c) {
  const HParams& hp = m.hp;
  const bool m1 = hp.arch == Arch::kMamba1;
  const int64_t di = hp.d_inner, N = hp.d_state, G = hp.n_groups;
  SSMQ_ASSIGN_OR_RETURN(const SiteStats* in, Stats(calib, ObsSite::kInProjInput, l));
  AddPerTensor(m, l, ActSite::kInProjInput, in->absmax);

  SSMQ_ASSIGN_OR_RETURN(const SiteStats* proj, Stats(calib, ObsSite::kInProjOutput, l));
  if (c.segment_scales && m1) {
    AddSegments(m, l, ActSite::kInProjOutput, proj->channel_absmax, {di, di});
  } else if (c.segment_scales || (!m1 && (c.x_groups || c.group_bc))) {
    // Quamba2 always scales z, x, B, C, dt separately
    AddSegments(m, l, ActSite::kInProjOutput, proj->channel_absmax,
                {di, di, G * N, G * N, hp.n_heads});
  } else {
    AddPerTensor(m, l, ActSite::kInProjOutput, proj->absmax);
  }

  if (m1) {
    SSMQ_ASSIGN_OR_RETURN(const SiteStats* x, Stats(calib, ObsSite::kConvOutX, l));
    AddPerTensor(m, l, ActSite::kConvOutput, c.percentile ? x->percentile_ema : x->absmax);
    SSMQ_ASSIGN_OR_RETURN(const SiteStats* dbc, Stats(calib, ObsSite::kXProjOutput, l));
    if (c.segment_scales) {
      AddSegments(m, l, ActSite::kXProjOutput, dbc->channel_absmax, {hp.dt_rank, N, N});
    } else {
      AddPerTensor(m, l, ActSite::kXProjOutput, dbc->absmax);
    }
    SSMQ_ASSIGN_OR_RETURN(const SiteStats* dt, Stats(calib, ObsSite::kDtProjOutput, l));
    AddPerTensor(m, l, ActSite::kDtProjOutput, dt->absmax);
  } else {
    SSMQ_RETURN_IF_ERROR(AddMamba2ConvOutput(m, calib, l, c));
  }

  if (c.out_proj_dynamic) {
    m.extra.Set(ActModeKey(l, ActSite::kOutProjInput),
                MetaValue::String(ActModeName(ActMode::kDynamicPerToken)));
  } else {
    SSMQ_ASSIGN_OR_RETURN(const SiteStats* o, Stats(calib, ObsSite::kOutProjInput, l));
    AddPerTensor(m, l, ActSite::kOutProjInput, o->absmax);
  }
  if (c.state_int8) {
    SSMQ_ASSIGN_OR_RETURN(const SiteStats* st, Stats(calib, ObsSite::kSsmStateFinal, l));
    AddState(m, *st, l, c);
  }
  return Status::Ok();
}

// A 1-D float tensor as q8 with one scale (Quamba's per-tensor absmax).
Status QuantizePerTensor1D(Model& m, const std::string& name) {
  const ModelTensor* t = m.Find(name);
  if (!t || t->shape.size() != 1) {
    return Status(StatusCode::kNotFound, "act recipe: 1-D tensor '" + name + "' not found");
  }
  const std::vector<int64_t> shape = t->shape;
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> v, m.ReadAsF32(name));
  QuantInfo info;
  info.granularity = ScaleGranularity::kPerTensor;
  SSMQ_ASSIGN_OR_RETURN(QuantizedTensor q, QuantizeQ8(v, static_cast<uint64_t>(shape[0]), 1, info));
  ModelTensor codes = ModelTensor::Owned(name, TensorType::kQ8, shape, std::move(q.codes));
  codes.quant = info;
  m.SetTensor(std::move(codes));
  m.SetTensor(ModelTensor::FromF32(name + ".scale", {1}, q.scales));
  return Status::Ok();
}

// Quamba's int8 small tensors: conv1d weight (per channel here, per tensor in
// Quamba), A_log (mamba1 per row; mamba2 per tensor), D (per tensor) and the
// mamba1 dt bias (per tensor; Quamba2 keeps the mamba2 dt bias fp16).
Status QuantizeSmallTensors(Model& m, int l) {
  SSMQ_RETURN_IF_ERROR(
      QuantizeTensor(m, LayerTensorName(l, "ssm_conv1d.weight"), WeightBits::kW8, 0));
  SSMQ_RETURN_IF_ERROR(QuantizePerTensor1D(m, LayerTensorName(l, "ssm_d")));
  if (m.hp.arch == Arch::kMamba1) {
    SSMQ_RETURN_IF_ERROR(QuantizeTensor(m, LayerTensorName(l, "ssm_a_log"), WeightBits::kW8, 0));
    SSMQ_RETURN_IF_ERROR(QuantizePerTensor1D(m, LayerTensorName(l, "ssm_dt.bias")));
  } else {
    SSMQ_RETURN_IF_ERROR(QuantizePerTensor1D(m, LayerTensorName(l, "ssm_a_log")));
  }
  return Status::Ok();
}

}  // namespace

Result<ActComponents> RecipeComponents(const std::string& recipe) {
  ActComponents c;  // ssmq
  if (recipe == "ssmq") {
    // Measured on the fixtures (bench/results/quant_accuracy.md): with the
    // out_proj input scaled per token, neither rotation pays. The online
    // Hadamard makes the int4 out_proj weights (W H^T) much worse (w4a8
    // mamba1 +6.7% with it, +1.6% without) and w8a8 slightly worse; the
    // residual rotation unties a tied LM head (+6% of the w8a8 file).
    c.rotate_residual = false;
    c.hadamard = false;
    return c;
  }
  if (recipe == "quamba") {
    c.rotate_residual = true;  // Quamba always rotates (configure_model)
    c.hadamard = true;
    c.out_proj_dynamic = false;
    c.segment_scales = false;  // mamba1: one in_proj output scale; mamba2 keeps its segments
    c.small_int8 = true;
    return c;
  }
  if (recipe == "naive") {
    for (const Switch& s : kSwitches) c.*(s.field) = false;
    c.state_int8 = true;
    return c;
  }
  return Status(StatusCode::kInvalidArgument,
                "--recipe must be ssmq, quamba or naive (got '" + recipe + "')");
}

Status SetComponent(ActComponents& c, const std::string& name, bool on) {
  for (const Switch& s : kSwitches) {
    if (name == s.name) {
      c.*(s.field) = on;
      return Status::Ok();
    }
  }
  std::string known;
  for (const Switch& s : kSwitches) known += std::string(known.empty() ? "" : ", ") + s.name;
  return Status(StatusCode::kInvalidArgument,
                "unknown recipe component '" + name + "' (known: " + known + ")");
}

std::string ComponentsText(const ActComponents& c) {
  std::string out;
  for (const Switch& s : kSwitches) {
    out += std::string(out.empty() ? "" : ", ") + s.name + "=" + (c.*(s.field) ? "on" : "off");
  }
  return out;
}

Result<CalibResult> ApplyActRecipe(Model& model, const ActRecipeOptions& opts) {
  const ActComponents& c = opts.components;
  const HParams& hp = model.hp;
  if (static_cast<int64_t>(opts.layer_a8.size()) != hp.n_layer) {
    return Status(StatusCode::kInvalidArgument, "act recipe: layer_a8 must have one entry per layer");
  }
  auto progress = [&](const char* stage) {
    return [&opts, stage](int64_t d, int64_t t) {
      if (opts.progress) opts.progress(stage, d, t);
    };
  };
  if (c.rotate_residual) SSMQ_RETURN_IF_ERROR(RotateResidual(model));
  if (hp.arch == Arch::kMamba2 && c.reorder) {
    CalibOptions pre = opts.calib;
    pre.percentile_sites.clear();  // the reorder needs channel profiles only
    SSMQ_ASSIGN_OR_RETURN(CalibResult profile,
                          Calibrate(model, opts.calib_text, pre, progress("reorder statistics")));
    SSMQ_RETURN_IF_ERROR(ReorderMamba2(model, profile));
  }
  if (c.hadamard) SSMQ_RETURN_IF_ERROR(RotateOutProjInput(model));
  SSMQ_ASSIGN_OR_RETURN(CalibResult calib,
                        Calibrate(model, opts.calib_text, opts.calib, progress("calibration")));
  for (int l = 0; l < hp.n_layer; ++l) {
    if (!opts.layer_a8[static_cast<size_t>(l)]) continue;
    SSMQ_RETURN_IF_ERROR(AddLayerSites(model, calib, l, c));
    if (c.small_int8) SSMQ_RETURN_IF_ERROR(QuantizeSmallTensors(model, l));
  }
  model.extra.Set("quant.calib.text_xxh3", MetaValue::U64(calib.text_xxh3));
  model.extra.Set("quant.calib.samples", MetaValue::U32(static_cast<uint32_t>(calib.samples)));
  model.extra.Set("quant.calib.seqlen", MetaValue::U32(static_cast<uint32_t>(calib.seqlen)));
  model.extra.Set("quant.calib.seed", MetaValue::U64(calib.seed));
  model.extra.Set("quant.calib.percentile", MetaValue::F64(calib.percentile));
  return calib;
}

}  // namespace ssmq
