#include "inspect/labels.h"

#include <cctype>

namespace ssmq::inspect {

const char* RoleName(TensorRole role) {
  switch (role) {
    case TensorRole::kTokenEmbd: return "token_embd";
    case TensorRole::kOutputNorm: return "output_norm";
    case TensorRole::kOutput: return "output";
    case TensorRole::kNorm: return "norm";
    case TensorRole::kInProj: return "in_proj";
    case TensorRole::kInProjBias: return "in_proj_bias";
    case TensorRole::kConvW: return "conv_w";
    case TensorRole::kConvB: return "conv_b";
    case TensorRole::kXProj: return "x_proj";
    case TensorRole::kDtProjW: return "dt_proj_w";
    case TensorRole::kDtProjB: return "dt_proj_b";
    case TensorRole::kALog: return "a_log";
    case TensorRole::kD: return "d";
    case TensorRole::kSsmNorm: return "ssm_norm";
    case TensorRole::kOutProj: return "out_proj";
    case TensorRole::kOutProjBias: return "out_proj_bias";
  }
  return "other";
}

int LayerOfName(const std::string& name) {
  static constexpr std::string_view kPrefix = "blk.";
  if (name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  size_t i = kPrefix.size();
  int64_t layer = 0;
  size_t digits = 0;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) {
    layer = layer * 10 + (name[i] - '0');
    if (layer > 1'000'000) return -1;
    ++i;
    ++digits;
  }
  if (digits == 0 || i >= name.size() || name[i] != '.') return -1;
  return static_cast<int>(layer);
}

namespace {
bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

TensorLabeler::TensorLabeler(const Metadata& md) {
  Result<HParams> hp = HParamsFromMetadata(md);
  if (!hp.ok()) {
    hparams_error_ = hp.status().ToString();
    return;
  }
  hparams_ = hp.value();
  for (TensorSpec& spec : ExpectedTensors(*hparams_)) {
    std::string name = spec.name;
    specs_.emplace(std::move(name), std::move(spec));
  }
}

TensorLabel TensorLabeler::Label(const std::string& name) const {
  TensorLabel label;
  label.layer = LayerOfName(name);
  if (auto it = specs_.find(name); it != specs_.end()) {
    label.role = RoleName(it->second.role);
    label.layer = it->second.layer;
    label.is_matmul_weight = it->second.is_matmul_weight;
    label.known = true;
    label.expected_shape = it->second.shape;
    return label;
  }
  for (std::string_view aux : {".scale", ".zero"}) {
    if (EndsWith(name, aux)) {
      label.role = std::string(aux.substr(1));
      label.base = name.substr(0, name.size() - aux.size());
      return label;
    }
  }
  if (label.layer >= 0 && name.find(".perm.") != std::string::npos) {
    label.role = "perm";
    return label;
  }
  label.role = "other";
  return label;
}

}  // namespace ssmq::inspect
