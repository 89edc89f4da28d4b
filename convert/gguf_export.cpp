// Model -> GGUF (see gguf_export.h).
#include "convert/gguf_export.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "convert/gguf_tokenizer.h"
#include "model/arch.h"

namespace ssmq {
namespace {

using gguf::GgmlType;

bool IsMatmulRole(TensorRole r) {
  return r == TensorRole::kTokenEmbd || r == TensorRole::kOutput || r == TensorRole::kInProj ||
         r == TensorRole::kXProj || r == TensorRole::kDtProjW || r == TensorRole::kOutProj;
}

std::string GgufName(const TensorSpec& spec) {
  if (spec.layer < 0) return spec.name;
  const std::string prefix = "blk." + std::to_string(spec.layer) + ".";
  if (spec.role == TensorRole::kNorm) return prefix + "attn_norm.weight";
  if (spec.role == TensorRole::kALog) return prefix + "ssm_a";
  return spec.name;
}

// GGUF dims of a tensor (see the header: llama.cpp's reshapes for Mamba2).
std::vector<uint64_t> GgufNe(const TensorSpec& spec, const HParams& hp) {
  if (hp.arch == Arch::kMamba2) {
    if (spec.role == TensorRole::kALog || spec.role == TensorRole::kD)
      return {1, static_cast<uint64_t>(hp.n_heads)};
    if (spec.role == TensorRole::kSsmNorm)
      return {static_cast<uint64_t>(hp.d_inner / hp.n_groups), static_cast<uint64_t>(hp.n_groups)};
  }
  return std::vector<uint64_t>(spec.shape.rbegin(), spec.shape.rend());
}

// gguf-py's model_weight_count_rounded_notation: "6.6M", "130M", "1.4B".
std::string SizeLabel(uint64_t params) {
  double scaled;
  const char* suffix;
  if (params > 1e12) { scaled = params * 1e-12; suffix = "T"; }
  else if (params > 1e9) { scaled = params * 1e-9; suffix = "B"; }
  else if (params > 1e6) { scaled = params * 1e-6; suffix = "M"; }
  else { scaled = params * 1e-3; suffix = "K"; }
  const int digits = static_cast<int>(std::to_string(static_cast<long long>(std::llround(scaled))).size());
  const int fix = std::max(2 - digits, 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", fix, scaled, suffix);
  return buf;
}

std::vector<uint8_t> ToF16Bytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h = F32ToF16(v[i]);
    out[2 * i] = static_cast<uint8_t>(h & 0xFF);
    out[2 * i + 1] = static_cast<uint8_t>(h >> 8);
  }
  return out;
}

std::vector<uint8_t> ToF32Bytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// Our Q8 per-group-32 codes + scales -> Q8_0 blocks (codes unchanged).
std::vector<uint8_t> PackQ8_0(std::span<const uint8_t> codes, const std::vector<float>& scales) {
  std::vector<uint8_t> out(scales.size() * gguf::kQ8_0Bytes);
  for (size_t b = 0; b < scales.size(); ++b) {
    uint8_t* blk = out.data() + b * gguf::kQ8_0Bytes;
    const uint16_t d = F32ToF16(scales[b]);
    blk[0] = static_cast<uint8_t>(d & 0xFF);
    blk[1] = static_cast<uint8_t>(d >> 8);
    std::memcpy(blk + 2, codes.data() + b * gguf::kQK, gguf::kQK);
  }
  return out;
}

// Our symmetric Q4 per-group-32 (element 2i low nibble) -> Q4_0 blocks (element j low, j+16 high).
std::vector<uint8_t> PackQ4_0(std::span<const uint8_t> codes, const std::vector<float>& scales) {
  std::vector<uint8_t> out(scales.size() * gguf::kQ4_0Bytes);
  for (size_t b = 0; b < scales.size(); ++b) {
    uint8_t* blk = out.data() + b * gguf::kQ4_0Bytes;
    const uint16_t d = F32ToF16(scales[b]);
    blk[0] = static_cast<uint8_t>(d & 0xFF);
    blk[1] = static_cast<uint8_t>(d >> 8);
    const uint8_t* src = codes.data() + b * 16;
    for (int j = 0; j < 16; ++j)
      blk[2 + j] = static_cast<uint8_t>(Q4Get(src, j) | (Q4Get(src, j + 16) << 4));
  }
  return out;
}

bool IsGroup32(const ModelTensor& t, bool q4) {
  return t.quant.granularity == ScaleGranularity::kPerGroup && t.quant.group_size == gguf::kQK &&
         !t.quant.has_zero_point && !t.shape.empty() && t.shape.back() % gguf::kQK == 0 &&
         t.type == (q4 ? TensorType::kQ4 : TensorType::kQ8);
}

Status CheckExportable(const Model& model, const GgufExportOptions& opts) {
  const HParams& hp = model.hp;
  for (const ModelTensor& t : model.tensors()) {
    if (t.name.find(".perm.") != std::string::npos)
      return Status(StatusCode::kUnsupported,
                    "tensor '" + t.name + "' is a channel permutation; GGUF has no way to express it and "
                    "llama.cpp would compute wrong outputs");
  }
  bool act_scales = false;
  for (const Metadata::Entry& e : model.extra.entries()) {
    if (e.key.find("hadamard.") != std::string::npos)
      return Status(StatusCode::kUnsupported,
                    "metadata '" + e.key + "': the model uses a Hadamard rotation, which GGUF cannot express "
                    "(llama.cpp would run the rotated weights without the rotation); export the float model "
                    "before rotation instead");
    if (e.key.starts_with("blk.") && e.key.find(".act.") != std::string::npos) act_scales = true;
  }
  if (act_scales && !opts.dequantize)
    return Status(StatusCode::kUnsupported,
                  "the model has activation scales (w*a8 quantization), which GGUF cannot express; "
                  "use --dequantize to write the equivalent float (weight-only) model");
  if (hp.proj_bias)
    return Status(StatusCode::kUnsupported, "llama.cpp's Mamba models have no in/out projection biases");
  if (!hp.conv_bias)
    return Status(StatusCode::kUnsupported, "llama.cpp's Mamba models need a conv1d bias");
  if (hp.arch == Arch::kMamba1 && hp.d_inner != 2 * hp.d_model && !opts.force)
    return Status(StatusCode::kUnsupported, "llama.cpp supports Mamba1 only with d_inner = 2 * d_model "
                                            "(--force writes the file anyway)");
  if (hp.arch == Arch::kMamba2) {
    if (hp.n_groups > 1 && hp.norm_group_size == hp.d_inner && !opts.force)
      return Status(StatusCode::kUnsupported,
                    "this Mamba2 model normalizes y*silu(z) over the full d_inner (" + std::to_string(hp.d_inner) +
                        ") with n_groups = " + std::to_string(hp.n_groups) +
                        "; GGUF cannot say so and llama.cpp normalizes per group of " +
                        std::to_string(hp.d_inner / hp.n_groups) +
                        ", which changes the outputs (--force writes it anyway)");
    if ((hp.dt_limit_min != 0.0 || std::isfinite(hp.dt_limit_max)) && !opts.force)
      return Status(StatusCode::kUnsupported, "llama.cpp does not clamp dt (time_step_limit); --force writes it anyway");
  }
  if (model.tokenizer_json.empty())
    return Status(StatusCode::kUnsupported, "the model has no tokenizer; a GGUF needs tokenizer.ggml.*");
  return Status::Ok();
}

Status AddTensor(const Model& model, const TensorSpec& spec, const GgufExportOptions& opts, gguf::GgufWriter& w) {
  const ModelTensor* t = model.Find(spec.name);
  if (!t) return Status(StatusCode::kNotFound, "tensor '" + spec.name + "' is missing");
  const HParams& hp = model.hp;
  const std::vector<uint64_t> ne = GgufNe(spec, hp);
  const std::string name = GgufName(spec);
  GgmlType type = GgmlType::kF32;
  if (IsMatmulRole(spec.role)) {
    type = opts.type == GgufExportType::kQ8_0 ? GgmlType::kQ8_0
           : opts.type == GgufExportType::kQ4_0 ? GgmlType::kQ4_0 : GgmlType::kF16;
    if (ne[0] % gguf::kQK != 0) type = GgmlType::kF16;  // llama.cpp's loader accepts f16 here
  }
  if (type == GgmlType::kQ8_0 && IsGroup32(*t, false)) {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> scales, model.ReadAsF32(spec.name + ".scale"));
    return w.AddTensor(name, ne, type, PackQ8_0(t->data, scales));
  }
  if (type == GgmlType::kQ4_0 && IsGroup32(*t, true)) {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> scales, model.ReadAsF32(spec.name + ".scale"));
    return w.AddTensor(name, ne, type, PackQ4_0(t->data, scales));
  }
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> v, model.ReadAsF32(spec.name));
  if (spec.role == TensorRole::kALog)
    for (float& x : v) x = -std::exp(x);  // llama.cpp stores A = -exp(A_log)
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      return Status(StatusCode::kBadValue, "tensor '" + spec.name + "' element " + std::to_string(i) + " is not finite");
  switch (type) {
    case GgmlType::kQ8_0: return w.AddTensor(name, ne, type, gguf::QuantizeQ8_0(v));
    case GgmlType::kQ4_0: return w.AddTensor(name, ne, type, gguf::QuantizeQ4_0(v));
    case GgmlType::kF16: return w.AddTensor(name, ne, type, ToF16Bytes(v));
    default: return w.AddTensor(name, ne, type, ToF32Bytes(v));
  }
}

}  // namespace

Result<gguf::GgufWriter> ExportGguf(const Model& model, const GgufExportOptions& opts) {
  SSMQ_RETURN_IF_ERROR(model.Validate());
  SSMQ_RETURN_IF_ERROR(CheckExportable(model, opts));
  const HParams& hp = model.hp;
  const std::string arch = ArchName(hp.arch);
  const std::vector<TensorSpec> specs = ExpectedTensors(hp);
  uint64_t params = 0;
  for (const TensorSpec& s : specs)
    if (model.Find(s.name)) params += model.Find(s.name)->numel();

  gguf::GgufWriter w;
  w.SetString("general.architecture", arch);
  w.SetString("general.type", "model");
  Result<std::string> name = model.extra.GetString(keys::kName);
  w.SetString("general.name", name.ok() ? *name : std::string("ssmq model"));
  w.SetString("general.size_label", SizeLabel(params));
  w.SetU32(arch + ".context_length", 1u << 20);
  w.SetU32(arch + ".embedding_length", static_cast<uint32_t>(hp.d_model));
  w.SetU32(arch + ".feed_forward_length", 0);
  w.SetU32(arch + ".attention.head_count", 0);
  w.SetU32(arch + ".block_count", static_cast<uint32_t>(hp.n_layer));
  w.SetU32(arch + ".ssm.conv_kernel", static_cast<uint32_t>(hp.d_conv));
  w.SetU32(arch + ".ssm.inner_size", static_cast<uint32_t>(hp.d_inner));
  w.SetU32(arch + ".ssm.state_size", static_cast<uint32_t>(hp.d_state));
  w.SetU32(arch + ".ssm.time_step_rank",
           static_cast<uint32_t>(hp.arch == Arch::kMamba1 ? hp.dt_rank : hp.n_heads));
  if (hp.arch == Arch::kMamba2) w.SetU32(arch + ".ssm.group_count", static_cast<uint32_t>(hp.n_groups));
  w.SetF32(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(hp.norm_eps));
  if (hp.arch == Arch::kMamba1) w.SetBool(arch + ".ssm.dt_b_c_rms", false);
  // LlamaFileType: MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2, MOSTLY_Q8_0 = 7.
  const uint32_t file_type = opts.type == GgufExportType::kF16 ? 1 : opts.type == GgufExportType::kQ4_0 ? 2 : 7;
  w.SetU32("general.file_type", file_type);
  w.SetU32("general.quantization_version", 2);
  SSMQ_RETURN_IF_ERROR(gguf::WriteGgufTokenizer(model.tokenizer_json, hp.vocab_size, model.extra, w));

  for (const TensorSpec& spec : specs) {
    if (!model.Find(spec.name) && !spec.required) continue;
    SSMQ_RETURN_IF_ERROR(AddTensor(model, spec, opts, w));
  }
  return w;
}

Status ExportGgufFile(const Model& model, const std::string& path, const GgufExportOptions& opts) {
  SSMQ_ASSIGN_OR_RETURN(gguf::GgufWriter w, ExportGguf(model, opts));
  return w.WriteFile(path);
}

}  // namespace ssmq
