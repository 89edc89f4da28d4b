// The architecture tables: metadata keys per hyper-parameter, the tensors
// each architecture has (name, role, expected shape) and the Hugging Face /
// state-spaces checkpoint names they come from. Everything here is data;
// the functions below only walk the tables.
#include "model/arch.h"

#include <charconv>
#include <string>
#include <string_view>

namespace ssmq {
namespace {

// Which architectures a table row applies to.
enum ArchMask : unsigned { kM1 = 1, kM2 = 2, kBoth = 3 };

unsigned MaskOf(Arch a) { return a == Arch::kMamba1 ? kM1 : kM2; }

// ---- hyper-parameter <-> metadata ----

struct IntKey {
  const char* suffix;
  int64_t HParams::*field;
  unsigned archs;
};
constexpr IntKey kIntKeys[] = {
    {keys::kDModel, &HParams::d_model, kBoth},
    {keys::kNLayer, &HParams::n_layer, kBoth},
    {keys::kVocabSize, &HParams::vocab_size, kBoth},
    {keys::kDInner, &HParams::d_inner, kBoth},
    {keys::kDState, &HParams::d_state, kBoth},
    {keys::kDConv, &HParams::d_conv, kBoth},
    {keys::kDtRank, &HParams::dt_rank, kM1},
    {keys::kNGroups, &HParams::n_groups, kM2},
    {keys::kHeadDim, &HParams::head_dim, kM2},
    {keys::kNHeads, &HParams::n_heads, kM2},
    {keys::kChunkSize, &HParams::chunk_size, kM2},
    {keys::kNormGroupSize, &HParams::norm_group_size, kM2},
};

struct FloatKey {
  const char* suffix;
  double HParams::*field;
  unsigned archs;
};
constexpr FloatKey kFloatKeys[] = {
    {keys::kNormEps, &HParams::norm_eps, kBoth},
    {keys::kDtLimitMin, &HParams::dt_limit_min, kM2},
    {keys::kDtLimitMax, &HParams::dt_limit_max, kM2},  // may be +inf (no clamp)
};

struct BoolKey {
  const char* suffix;
  bool HParams::*field;
  unsigned archs;
};
constexpr BoolKey kBoolKeys[] = {
    {keys::kResidualInFp32, &HParams::residual_in_fp32, kBoth},
    {keys::kTiedEmbeddings, &HParams::tied_embeddings, kBoth},
    {keys::kConvBias, &HParams::conv_bias, kBoth},
    {keys::kProjBias, &HParams::proj_bias, kBoth},
};

std::string ArchKey(Arch a, const char* suffix) { return std::string(ArchName(a)) + "." + suffix; }

// ---- tensors ----

using ShapeFn = std::vector<int64_t> (*)(const HParams&);

struct GlobalTensorRow {
  TensorRole role;
  const char* name;
  ShapeFn shape;
  bool HParams::*absent_when;  // the tensor does not exist when this flag is set (nullptr: always exists)
  bool is_matmul_weight;
};

struct LayerTensorRow {
  TensorRole role;
  const char* suffix;  // after "blk.{i}."
  unsigned archs;
  ShapeFn shape;
  bool HParams::*present_when;  // exists only when this flag is set (nullptr: always)
  bool is_matmul_weight;
};

const GlobalTensorRow kHeadTensors[] = {
    {TensorRole::kTokenEmbd, "token_embd.weight",
     [](const HParams& h) { return std::vector<int64_t>{h.vocab_size, h.d_model}; }, nullptr, false},
};

const LayerTensorRow kLayerTensors[] = {
    {TensorRole::kNorm, "norm.weight", kBoth,
     [](const HParams& h) { return std::vector<int64_t>{h.d_model}; }, nullptr, false},
    {TensorRole::kInProj, "ssm_in.weight", kBoth,
     [](const HParams& h) { return std::vector<int64_t>{h.in_proj_dim(), h.d_model}; }, nullptr, true},
    {TensorRole::kInProjBias, "ssm_in.bias", kBoth,
     [](const HParams& h) { return std::vector<int64_t>{h.in_proj_dim()}; }, &HParams::proj_bias, false},
    {TensorRole::kConvW, "ssm_conv1d.weight", kBoth,
     [](const HParams& h) { return std::vector<int64_t>{h.conv_dim(), h.d_conv}; }, nullptr, false},
    {TensorRole::kConvB, "ssm_conv1d.bias", kBoth,
     [](const HParams& h) { return std::vector<int64_t>{h.conv_dim()}; }, &HParams::conv_bias, false},
    {TensorRole::kXProj, "ssm_x.weight", kM1,
     [](const HParams& h) { return std::vector<int64_t>{h.dt_rank + 2 * h.d_state, h.d_inner}; }, nullptr, true},
    {TensorRole::kDtProjW, "ssm_dt.weight", kM1,
     [](const HParams& h) { return std::vector<int64_t>{h.d_inner, h.dt_rank}; }, nullptr, true},
    {TensorRole::kDtProjB, "ssm_dt.bias", kM1,
     [](const HParams& h) { return std::vector<int64_t>{h.d_inner}; }, nullptr, false},
    {TensorRole::kDtProjB, "ssm_dt.bias", kM2,
     [](const HParams& h) { return std::vector<int64_t>{h.n_heads}; }, nullptr, false},
    {TensorRole::kALog, "ssm_a_log", kM1,
     [](const HParams& h) { return std::vector<int64_t>{h.d_inner, h.d_state}; }, nullptr, false},
    {TensorRole::kALog, "ssm_a_log", kM2,
     [](const HParams& h) { return std::vector<int64_t>{h.n_heads}; }, nullptr, false},
    {TensorRole::kD, "ssm_d", kM1,
     [](const HParams& h) { return std::vector<int64_t>{h.d_inner}; }, nullptr, false},
    {TensorRole::kD, "ssm_d", kM2,
     [](const HParams& h) { return std::vector<int64_t>{h.n_heads}; }, nullptr, false},
    {TensorRole::kSsmNorm, "ssm_norm.weight", kM2,
     [](const HParams& h) { return std::vector<int64_t>{h.d_inner}; }, nullptr, false},
    {TensorRole::kOutProj, "ssm_out.weight", kBoth,
     [](const HParams& h) { return std::vector<int64_t>{h.d_model, h.d_inner}; }, nullptr, true},
    {TensorRole::kOutProjBias, "ssm_out.bias", kBoth,
     [](const HParams& h) { return std::vector<int64_t>{h.d_model}; }, &HParams::proj_bias, false},
};

const GlobalTensorRow kTailTensors[] = {
    {TensorRole::kOutputNorm, "output_norm.weight",
     [](const HParams& h) { return std::vector<int64_t>{h.d_model}; }, nullptr, false},
    {TensorRole::kOutput, "output.weight",
     [](const HParams& h) { return std::vector<int64_t>{h.vocab_size, h.d_model}; },
     &HParams::tied_embeddings, true},
};

// ---- checkpoint names ----

// Whole-name aliases (after stripping a leading "model.").
struct GlobalNameRow {
  const char* hf;
  const char* ours;
};
constexpr GlobalNameRow kGlobalNames[] = {
    {"backbone.embeddings.weight", "token_embd.weight"},  // transformers
    {"backbone.embedding.weight", "token_embd.weight"},   // state-spaces mamba_ssm
    {"backbone.norm_f.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// Per-layer names: "backbone.layers.{i}.<hf>" -> "blk.{i}.<ours>".
struct LayerNameRow {
  const char* hf;
  const char* ours;
  unsigned archs;
};
constexpr LayerNameRow kLayerNames[] = {
    {"norm.weight", "norm.weight", kBoth},
    {"mixer.in_proj.weight", "ssm_in.weight", kBoth},
    {"mixer.in_proj.bias", "ssm_in.bias", kBoth},
    {"mixer.conv1d.weight", "ssm_conv1d.weight", kBoth},  // [C, 1, K] in the checkpoint
    {"mixer.conv1d.bias", "ssm_conv1d.bias", kBoth},
    {"mixer.x_proj.weight", "ssm_x.weight", kM1},
    {"mixer.dt_proj.weight", "ssm_dt.weight", kM1},
    {"mixer.dt_proj.bias", "ssm_dt.bias", kM1},
    {"mixer.dt_bias", "ssm_dt.bias", kM2},
    {"mixer.A_log", "ssm_a_log", kBoth},
    {"mixer.D", "ssm_d", kBoth},
    {"mixer.norm.weight", "ssm_norm.weight", kM2},
    {"mixer.out_proj.weight", "ssm_out.weight", kBoth},
    {"mixer.out_proj.bias", "ssm_out.bias", kBoth},
};

constexpr std::string_view kLayerPrefix = "backbone.layers.";

}  // namespace

void HParamsToMetadata(const HParams& hp, Metadata& md) {
  const unsigned mask = MaskOf(hp.arch);
  md.Set(keys::kArchitecture, MetaValue::String(ArchName(hp.arch)));
  for (const IntKey& k : kIntKeys)
    if (k.archs & mask) md.Set(ArchKey(hp.arch, k.suffix), MetaValue::U64(static_cast<uint64_t>(hp.*k.field)));
  for (const FloatKey& k : kFloatKeys)
    if (k.archs & mask) md.Set(ArchKey(hp.arch, k.suffix), MetaValue::F64(hp.*k.field));
  for (const BoolKey& k : kBoolKeys)
    if (k.archs & mask) md.Set(ArchKey(hp.arch, k.suffix), MetaValue::Bool(hp.*k.field));
}

Result<HParams> HParamsFromMetadata(const Metadata& md) {
  HParams hp;
  Result<std::string> arch = md.GetString(keys::kArchitecture);
  if (!arch.ok()) return arch.status().WithContext(std::string("metadata '") + keys::kArchitecture + "'");
  if (*arch == ArchName(Arch::kMamba1)) {
    hp.arch = Arch::kMamba1;
  } else if (*arch == ArchName(Arch::kMamba2)) {
    hp.arch = Arch::kMamba2;
  } else {
    return Status(StatusCode::kUnsupported, "unsupported architecture '" + *arch + "' in metadata '" +
                                                keys::kArchitecture + "'");
  }
  const unsigned mask = MaskOf(hp.arch);
  for (const IntKey& k : kIntKeys) {
    if (!(k.archs & mask)) continue;
    const std::string key = ArchKey(hp.arch, k.suffix);
    Result<int64_t> v = md.GetInt(key);
    if (!v.ok()) return v.status().WithContext("metadata '" + key + "'");
    hp.*k.field = *v;
  }
  for (const FloatKey& k : kFloatKeys) {
    if (!(k.archs & mask)) continue;
    const std::string key = ArchKey(hp.arch, k.suffix);
    Result<double> v = md.GetDouble(key);
    if (!v.ok()) return v.status().WithContext("metadata '" + key + "'");
    hp.*k.field = *v;
  }
  for (const BoolKey& k : kBoolKeys) {
    if (!(k.archs & mask)) continue;
    const std::string key = ArchKey(hp.arch, k.suffix);
    Result<bool> v = md.GetBool(key);
    if (!v.ok()) return v.status().WithContext("metadata '" + key + "'");
    hp.*k.field = *v;
  }
  Status st = hp.Validate();
  if (!st.ok()) return Status(StatusCode::kBadMetadata, st.message());
  return hp;
}

std::string LayerTensorName(int layer, const char* suffix) {
  return "blk." + std::to_string(layer) + "." + suffix;
}

std::vector<TensorSpec> ExpectedTensors(const HParams& hp) {
  std::vector<TensorSpec> specs;
  auto add_global = [&](const GlobalTensorRow& row) {
    if (row.absent_when && hp.*row.absent_when) return;
    specs.push_back({row.role, row.name, row.shape(hp), true, -1, row.is_matmul_weight});
  };
  for (const GlobalTensorRow& row : kHeadTensors) add_global(row);
  const unsigned mask = MaskOf(hp.arch);
  for (int layer = 0; layer < hp.n_layer; ++layer) {
    for (const LayerTensorRow& row : kLayerTensors) {
      if (!(row.archs & mask)) continue;
      if (row.present_when && !(hp.*row.present_when)) continue;
      specs.push_back({row.role, LayerTensorName(layer, row.suffix), row.shape(hp), true, layer,
                       row.is_matmul_weight});
    }
  }
  for (const GlobalTensorRow& row : kTailTensors) add_global(row);
  return specs;
}

std::optional<std::string> MapHfTensorName(Arch arch, const std::string& hf_name) {
  std::string_view name = hf_name;
  if (name.starts_with("model.")) name.remove_prefix(6);
  for (const GlobalNameRow& row : kGlobalNames)
    if (name == row.hf) return std::string(row.ours);
  if (!name.starts_with(kLayerPrefix)) return std::nullopt;
  name.remove_prefix(kLayerPrefix.size());
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 6) return std::nullopt;
  int layer = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + dot, layer);
  if (ec != std::errc() || end != name.data() + dot || layer < 0) return std::nullopt;
  if (name[0] == '0' && dot > 1) return std::nullopt;  // "01" is not a layer index
  const std::string_view rest = name.substr(dot + 1);
  for (const LayerNameRow& row : kLayerNames)
    if ((row.archs & MaskOf(arch)) && rest == row.hf) return LayerTensorName(layer, row.ours);
  return std::nullopt;
}

}  // namespace ssmq
