// config.json -> HParams for transformers (MambaForCausalLM,
// Mamba2ForCausalLM) and state-spaces mamba_ssm checkpoints. Defaults are
// those of the respective config classes; anything we cannot run exactly is
// refused with kUnsupported rather than imported as a different model.
#include "convert/hf_config.h"

#include <cmath>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ssmq {
namespace {

using json = nlohmann::json;

// Typed field access with the file name and key in every error.
class Fields {
 public:
  Fields(const json& obj, std::string label) : obj_(obj), label_(std::move(label)) {}

  bool Has(const char* key) const { return obj_.contains(key) && !obj_.at(key).is_null(); }

  Result<int64_t> Int(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    if (!Has(key)) {
      if (fallback) return *fallback;
      return Missing(key);
    }
    const json& v = obj_.at(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
        std::fabs(v.get<double>()) < 9e15)
      return static_cast<int64_t>(v.get<double>());
    return Wrong(key, "an integer");
  }

  Result<double> Float(const char* key, std::optional<double> fallback = std::nullopt) const {
    if (!Has(key)) {
      if (fallback) return *fallback;
      return Missing(key);
    }
    std::optional<double> v = AsFloat(obj_.at(key));
    if (!v) return Wrong(key, "a number");
    return *v;
  }

  Result<bool> Bool(const char* key, bool fallback) const {
    if (!Has(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_boolean()) return Wrong(key, "true or false");
    return v.get<bool>();
  }

  Result<std::string> String(const char* key, std::string fallback) const {
    if (!Has(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_string()) return Wrong(key, "a string");
    return v.get<std::string>();
  }

  // A [min, max] pair of numbers (inf written as {"__float__": "Infinity"}).
  Result<std::pair<double, double>> FloatPair(const char* key, std::pair<double, double> fallback) const {
    if (!Has(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_array() || v.size() != 2) return Wrong(key, "a [min, max] pair");
    std::optional<double> lo = AsFloat(v[0]), hi = AsFloat(v[1]);
    if (!lo || !hi) return Wrong(key, "a [min, max] pair of numbers");
    return std::pair(*lo, *hi);
  }

  // Accepts numbers, {"__float__": "Infinity"} (how transformers 5 writes
  // non-finite floats) and the strings "inf"/"Infinity"/"-Infinity"/"NaN".
  static std::optional<double> AsFloat(const json& v) {
    if (v.is_number()) return v.get<double>();
    const json* s = &v;
    if (v.is_object() && v.size() == 1 && v.contains("__float__")) s = &v.at("__float__");
    if (!s->is_string()) return std::nullopt;
    const std::string text = s->get<std::string>();
    if (text == "Infinity" || text == "inf" || text == "+inf") return INFINITY;
    if (text == "-Infinity" || text == "-inf") return -INFINITY;
    if (text == "NaN" || text == "nan") return NAN;
    return std::nullopt;
  }

  const std::string& label() const { return label_; }
  const json& raw(const char* key) const { return obj_.at(key); }

 private:
  Status Missing(const char* key) const {
    return Status(StatusCode::kBadConfig, label_ + ": required field '" + key + "' is missing");
  }
  Status Wrong(const char* key, const char* what) const {
    return Status(StatusCode::kBadConfig, label_ + ": field '" + key + "' must be " + what + ", got " +
                                              obj_.at(key).dump());
  }
  const json& obj_;
  std::string label_;
};

Status Unsupported(const std::string& label, const std::string& what) {
  return Status(StatusCode::kUnsupported, label + ": " + what);
}

int64_t AutoDtRank(int64_t d_model) { return (d_model + 15) / 16; }  // ceil(d_model / 16)

// "auto" or an integer.
Result<int64_t> DtRank(const Fields& f, const char* key, int64_t d_model) {
  if (f.Has(key)) {
    Result<std::string> s = f.String(key, "");
    if (s.ok()) {
      if (*s == "auto") return AutoDtRank(d_model);
      return Status(StatusCode::kBadConfig, f.label() + ": field '" + key + "' must be \"auto\" or an integer");
    }
    return f.Int(key);
  }
  return AutoDtRank(d_model);
}

Result<std::optional<int64_t>> OptionalId(const Fields& f, const char* key) {
  if (!f.Has(key)) return std::optional<int64_t>();
  // Some configs list several eos ids: the first is the one generation stops at.
  if (f.raw(key).is_array()) {
    const json& a = f.raw(key);
    if (a.empty()) return std::optional<int64_t>();
    if (!a[0].is_number_integer())
      return Status(StatusCode::kBadConfig, f.label() + ": field '" + key + "' must hold integer ids");
    return std::optional<int64_t>(a[0].get<int64_t>());
  }
  SSMQ_ASSIGN_OR_RETURN(int64_t id, f.Int(key));
  return std::optional<int64_t>(id);
}

// ---- transformers ----

Status ParseTransformers(const json& root, const std::string& label, HfConfig& out) {
  Fields f(root, label);
  HParams& hp = out.hp;
  SSMQ_ASSIGN_OR_RETURN(hp.d_model, f.Int("hidden_size"));
  SSMQ_ASSIGN_OR_RETURN(hp.n_layer, f.Int("num_hidden_layers"));
  SSMQ_ASSIGN_OR_RETURN(out.config_vocab_size, f.Int("vocab_size", 0));
  SSMQ_ASSIGN_OR_RETURN(hp.d_conv, f.Int("conv_kernel", 4));
  SSMQ_ASSIGN_OR_RETURN(hp.norm_eps, f.Float("layer_norm_epsilon", 1e-5));
  SSMQ_ASSIGN_OR_RETURN(hp.residual_in_fp32, f.Bool("residual_in_fp32", true));
  SSMQ_ASSIGN_OR_RETURN(hp.conv_bias, f.Bool("use_conv_bias", true));
  SSMQ_ASSIGN_OR_RETURN(hp.proj_bias, f.Bool("use_bias", false));
  SSMQ_ASSIGN_OR_RETURN(double expand, f.Float("expand", 2.0));
  SSMQ_ASSIGN_OR_RETURN(std::string act, f.String("hidden_act", "silu"));
  if (act != "silu" && act != "swish") return Unsupported(label, "hidden_act '" + act + "' (only silu)");
  if (hp.arch == Arch::kMamba1) {
    SSMQ_ASSIGN_OR_RETURN(hp.d_state, f.Int("state_size", 16));
    SSMQ_ASSIGN_OR_RETURN(hp.d_inner, f.Int("intermediate_size", static_cast<int64_t>(expand * static_cast<double>(hp.d_model))));
    SSMQ_ASSIGN_OR_RETURN(hp.dt_rank, DtRank(f, "time_step_rank", hp.d_model));
    SSMQ_ASSIGN_OR_RETURN(out.config_says_tied, f.Bool("tie_word_embeddings", true));
    return Status::Ok();
  }
  // Mamba2: intermediate_size = int(expand * hidden_size) in transformers.
  SSMQ_ASSIGN_OR_RETURN(hp.d_state, f.Int("state_size", 128));
  hp.d_inner = static_cast<int64_t>(expand * static_cast<double>(hp.d_model));
  SSMQ_ASSIGN_OR_RETURN(hp.head_dim, f.Int("head_dim", 64));
  SSMQ_ASSIGN_OR_RETURN(hp.n_heads, f.Int("num_heads", hp.head_dim > 0 ? hp.d_inner / hp.head_dim : 0));
  SSMQ_ASSIGN_OR_RETURN(hp.n_groups, f.Int("n_groups", 8));
  SSMQ_ASSIGN_OR_RETURN(hp.chunk_size, f.Int("chunk_size", 256));
  SSMQ_ASSIGN_OR_RETURN(auto limit, f.FloatPair("time_step_limit", {0.0, INFINITY}));
  hp.dt_limit_min = limit.first;
  hp.dt_limit_max = limit.second;
  SSMQ_ASSIGN_OR_RETURN(bool rms_norm, f.Bool("rms_norm", true));
  if (!rms_norm) return Unsupported(label, "rms_norm = false (LayerNorm-gated Mamba2) is not supported");
  SSMQ_ASSIGN_OR_RETURN(bool norm_before_gate, f.Bool("norm_before_gate", false));
  if (norm_before_gate) return Unsupported(label, "norm_before_gate = true is not supported");
  SSMQ_ASSIGN_OR_RETURN(out.config_says_tied, f.Bool("tie_word_embeddings", false));
  if (hp.n_heads * hp.head_dim != hp.d_inner)
    return Status(StatusCode::kBadConfig,
                  label + ": num_heads (" + std::to_string(hp.n_heads) + ") * head_dim (" +
                      std::to_string(hp.head_dim) + ") != expand * hidden_size (" + std::to_string(hp.d_inner) + ")");
  return Status::Ok();
}

// ---- state-spaces mamba_ssm (MambaConfig + ssm_cfg) ----

Status ParseStateSpaces(const json& root, const std::string& label, HfConfig& out) {
  Fields f(root, label);
  HParams& hp = out.hp;
  SSMQ_ASSIGN_OR_RETURN(hp.d_model, f.Int("d_model"));
  SSMQ_ASSIGN_OR_RETURN(hp.n_layer, f.Int("n_layer"));
  SSMQ_ASSIGN_OR_RETURN(out.config_vocab_size, f.Int("vocab_size", 0));
  SSMQ_ASSIGN_OR_RETURN(int64_t d_intermediate, f.Int("d_intermediate", 0));
  if (d_intermediate > 0)
    return Unsupported(label, "d_intermediate = " + std::to_string(d_intermediate) + " (an MLP after each mixer) is not supported");
  if (root.contains("attn_layer_idx") && root["attn_layer_idx"].is_array() && !root["attn_layer_idx"].empty())
    return Unsupported(label, "attn_layer_idx is not empty (hybrid attention layers are not supported)");
  SSMQ_ASSIGN_OR_RETURN(bool rms_norm, f.Bool("rms_norm", true));
  if (!rms_norm) return Unsupported(label, "rms_norm = false (LayerNorm blocks) is not supported");
  SSMQ_ASSIGN_OR_RETURN(hp.residual_in_fp32, f.Bool("residual_in_fp32", true));
  SSMQ_ASSIGN_OR_RETURN(out.config_says_tied, f.Bool("tie_embeddings", true));
  SSMQ_ASSIGN_OR_RETURN(hp.norm_eps, f.Float("norm_epsilon", 1e-5));

  static const json kEmpty = json::object();
  const json& ssm_cfg = root.contains("ssm_cfg") && root["ssm_cfg"].is_object() ? root["ssm_cfg"] : kEmpty;
  Fields s(ssm_cfg, label + " ssm_cfg");
  SSMQ_ASSIGN_OR_RETURN(std::string layer, s.String("layer", "Mamba1"));
  if (layer == "Mamba1") {
    hp.arch = Arch::kMamba1;
  } else if (layer == "Mamba2") {
    hp.arch = Arch::kMamba2;
  } else {
    return Unsupported(label, "ssm_cfg.layer '" + layer + "' is not supported (Mamba1 or Mamba2)");
  }
  SSMQ_ASSIGN_OR_RETURN(hp.d_conv, s.Int("d_conv", 4));
  SSMQ_ASSIGN_OR_RETURN(double expand, s.Float("expand", 2.0));
  hp.d_inner = static_cast<int64_t>(expand * static_cast<double>(hp.d_model));
  SSMQ_ASSIGN_OR_RETURN(hp.conv_bias, s.Bool("conv_bias", true));
  SSMQ_ASSIGN_OR_RETURN(hp.proj_bias, s.Bool("bias", false));
  if (hp.arch == Arch::kMamba1) {
    SSMQ_ASSIGN_OR_RETURN(hp.d_state, s.Int("d_state", 16));
    SSMQ_ASSIGN_OR_RETURN(hp.dt_rank, DtRank(s, "dt_rank", hp.d_model));
    return Status::Ok();
  }
  SSMQ_ASSIGN_OR_RETURN(hp.d_state, s.Int("d_state", 128));
  SSMQ_ASSIGN_OR_RETURN(hp.head_dim, s.Int("headdim", 64));
  SSMQ_ASSIGN_OR_RETURN(hp.n_groups, s.Int("ngroups", 1));
  SSMQ_ASSIGN_OR_RETURN(hp.chunk_size, s.Int("chunk_size", 256));
  if (s.Has("d_ssm")) {
    SSMQ_ASSIGN_OR_RETURN(int64_t d_ssm, s.Int("d_ssm"));
    if (d_ssm != hp.d_inner)
      return Unsupported(label, "ssm_cfg.d_ssm = " + std::to_string(d_ssm) + " != d_inner " +
                                    std::to_string(hp.d_inner) + " (a gated MLP inside the mixer, d_mlp > 0)");
  }
  SSMQ_ASSIGN_OR_RETURN(bool gated_rmsnorm, s.Bool("rmsnorm", true));
  if (!gated_rmsnorm) return Unsupported(label, "ssm_cfg.rmsnorm = false is not supported");
  SSMQ_ASSIGN_OR_RETURN(bool norm_before_gate, s.Bool("norm_before_gate", false));
  if (norm_before_gate) return Unsupported(label, "ssm_cfg.norm_before_gate = true is not supported");
  SSMQ_ASSIGN_OR_RETURN(bool d_has_hdim, s.Bool("D_has_hdim", false));
  if (d_has_hdim) return Unsupported(label, "ssm_cfg.D_has_hdim = true (D per channel) is not supported");
  SSMQ_ASSIGN_OR_RETURN(auto limit, s.FloatPair("dt_limit", {0.0, INFINITY}));
  hp.dt_limit_min = limit.first;
  hp.dt_limit_max = limit.second;
  if (hp.head_dim <= 0 || hp.d_inner % hp.head_dim != 0)
    return Status(StatusCode::kBadConfig, label + ": d_inner " + std::to_string(hp.d_inner) +
                                              " is not a multiple of ssm_cfg.headdim " + std::to_string(hp.head_dim));
  hp.n_heads = hp.d_inner / hp.head_dim;
  return Status::Ok();
}

}  // namespace

Result<HfConfig> ParseHfConfig(const std::string& json_text, const std::string& label) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    return Status(StatusCode::kParseError, label + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) return Status(StatusCode::kParseError, label + ": not a JSON object");
  HfConfig out;
  Fields f(root, label);

  // Which kind of checkpoint: transformers names the class; mamba_ssm has d_model/n_layer.
  std::string arch_name;
  if (f.Has("architectures")) {
    const json& a = root["architectures"];
    if (!a.is_array() || a.empty() || !a[0].is_string())
      return Status(StatusCode::kBadConfig, label + ": 'architectures' must be a list of class names");
    arch_name = a[0].get<std::string>();
  }
  SSMQ_ASSIGN_OR_RETURN(std::string model_type, f.String("model_type", ""));
  const bool state_spaces = f.Has("d_model") && f.Has("n_layer") && !f.Has("hidden_size");
  Status st;
  if (state_spaces && (arch_name.empty() || arch_name == "MambaLMHeadModel")) {
    out.kind = CheckpointKind::kStateSpaces;
    st = ParseStateSpaces(root, label, out);
  } else {
    out.kind = CheckpointKind::kTransformers;
    if (arch_name == "MambaForCausalLM" || arch_name == "MambaModel" ||
        (arch_name.empty() && model_type == "mamba")) {
      out.hp.arch = Arch::kMamba1;
    } else if (arch_name == "Mamba2ForCausalLM" || arch_name == "Mamba2Model" ||
               (arch_name.empty() && model_type == "mamba2")) {
      out.hp.arch = Arch::kMamba2;
    } else if (!arch_name.empty()) {
      return Unsupported(label, "architecture '" + arch_name + "' is not supported (MambaForCausalLM or Mamba2ForCausalLM)");
    } else if (!model_type.empty()) {
      return Unsupported(label, "model_type '" + model_type + "' is not supported (mamba or mamba2)");
    } else {
      return Status(StatusCode::kBadConfig, label + ": neither 'architectures', 'model_type' nor d_model/n_layer say what model this is");
    }
    if (!model_type.empty() && model_type != ArchName(out.hp.arch))
      return Unsupported(label, "model_type '" + model_type + "' does not match architecture '" + arch_name + "'");
    st = ParseTransformers(root, label, out);
  }
  if (!st.ok()) return st;
  SSMQ_ASSIGN_OR_RETURN(out.bos_id, OptionalId(f, "bos_token_id"));
  SSMQ_ASSIGN_OR_RETURN(out.eos_id, OptionalId(f, "eos_token_id"));
  SSMQ_ASSIGN_OR_RETURN(out.pad_id, OptionalId(f, "pad_token_id"));
  return out;
}

}  // namespace ssmq
