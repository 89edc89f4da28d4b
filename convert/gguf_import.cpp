// GGUF -> Model (see gguf_import.h).
#include "convert/gguf_import.h"

#include <cmath>
#include <cstring>
#include <map>
#include <string_view>

#include "convert/gguf_tokenizer.h"
#include "model/arch.h"

namespace ssmq {
namespace {

using gguf::GgmlType;
using gguf::GgufFile;
using gguf::GgufTensorInfo;

std::string ShapeStr(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

Result<int64_t> ArchInt(const Metadata& md, const std::string& arch, const char* suffix,
                        std::optional<int64_t> fallback = std::nullopt) {
  const std::string key = arch + "." + suffix;
  if (!md.Find(key) && fallback) return *fallback;
  Result<int64_t> v = md.GetInt(key);
  if (!v.ok()) return Status(v.status().code() == StatusCode::kNotFound ? StatusCode::kNotFound : StatusCode::kBadMetadata,
                             "GGUF metadata '" + key + "': " + v.status().message());
  return *v;
}

// GGUF tensor name -> ours. Empty when unknown.
std::string OurName(const std::string& g) {
  if (g == "token_embd.weight" || g == "output_norm.weight" || g == "output.weight") return g;
  if (!g.starts_with("blk.")) return "";
  const size_t dot = g.find('.', 4);
  if (dot == std::string::npos) return "";
  const std::string prefix = g.substr(0, dot + 1);
  const std::string_view rest = std::string_view(g).substr(dot + 1);
  if (rest == "attn_norm.weight") return prefix + "norm.weight";
  if (rest == "ssm_a") return prefix + "ssm_a_log";
  static constexpr const char* kSame[] = {"ssm_in.weight", "ssm_in.bias", "ssm_conv1d.weight", "ssm_conv1d.bias",
                                          "ssm_x.weight", "ssm_dt.weight", "ssm_dt.bias", "ssm_d",
                                          "ssm_norm.weight", "ssm_out.weight", "ssm_out.bias"};
  for (const char* s : kSame)
    if (rest == s) return g;
  return "";
}

std::vector<int64_t> WithoutOnes(const std::vector<int64_t>& s) {
  std::vector<int64_t> r;
  for (int64_t d : s)
    if (d != 1) r.push_back(d);
  return r;
}

Result<HParams> ReadHParams(const GgufFile& f, const GgufImportOptions& opts) {
  const Metadata& md = f.metadata();
  Result<std::string> arch_r = md.GetString("general.architecture");
  if (!arch_r.ok()) return Status(StatusCode::kBadMetadata, "GGUF metadata 'general.architecture' is missing or not a string");
  const std::string arch = *arch_r;
  HParams hp;
  if (arch == "mamba") hp.arch = Arch::kMamba1;
  else if (arch == "mamba2") hp.arch = Arch::kMamba2;
  else return Status(StatusCode::kUnsupported, "GGUF architecture '" + arch + "' is not supported (mamba, mamba2)");
  SSMQ_ASSIGN_OR_RETURN(hp.d_model, ArchInt(md, arch, "embedding_length"));
  SSMQ_ASSIGN_OR_RETURN(hp.n_layer, ArchInt(md, arch, "block_count"));
  SSMQ_ASSIGN_OR_RETURN(hp.d_inner, ArchInt(md, arch, "ssm.inner_size"));
  SSMQ_ASSIGN_OR_RETURN(hp.d_state, ArchInt(md, arch, "ssm.state_size"));
  SSMQ_ASSIGN_OR_RETURN(hp.d_conv, ArchInt(md, arch, "ssm.conv_kernel"));
  SSMQ_ASSIGN_OR_RETURN(int64_t time_step_rank, ArchInt(md, arch, "ssm.time_step_rank"));
  Result<double> eps = md.GetDouble(arch + ".attention.layer_norm_rms_epsilon");
  if (!eps.ok()) return Status(StatusCode::kBadMetadata, "GGUF metadata '" + arch + ".attention.layer_norm_rms_epsilon': " + eps.status().message());
  hp.norm_eps = *eps;
  if (const MetaValue* rms = md.Find(arch + ".ssm.dt_b_c_rms")) {
    Result<bool> b = rms->AsBool();
    if (b.ok() && *b)
      return Status(StatusCode::kUnsupported, "GGUF '" + arch + ".ssm.dt_b_c_rms' = true (Falcon-Mamba's extra dt/B/C norms) is not supported");
  }
  const GgufTensorInfo* emb = f.FindTensor("token_embd.weight");
  if (!emb || emb->ne.size() != 2)
    return Status(StatusCode::kBadShape, "GGUF tensor 'token_embd.weight' is missing or not 2-D");
  if (static_cast<int64_t>(emb->ne[0]) != hp.d_model)
    return Status(StatusCode::kBadShape, "GGUF tensor 'token_embd.weight' has ne[0] = " + std::to_string(emb->ne[0]) +
                                             ", embedding_length is " + std::to_string(hp.d_model), emb->info_offset);
  hp.vocab_size = static_cast<int64_t>(emb->ne[1]);
  hp.tied_embeddings = f.FindTensor("output.weight") == nullptr;
  hp.conv_bias = f.FindTensor("blk.0.ssm_conv1d.bias") != nullptr;
  hp.proj_bias = f.FindTensor("blk.0.ssm_in.bias") != nullptr;
  hp.residual_in_fp32 = true;
  if (hp.arch == Arch::kMamba1) {
    hp.dt_rank = time_step_rank;
  } else {
    hp.n_heads = time_step_rank;
    SSMQ_ASSIGN_OR_RETURN(hp.n_groups, ArchInt(md, arch, "ssm.group_count", 1));
    if (hp.n_heads <= 0 || hp.d_inner % hp.n_heads != 0)
      return Status(StatusCode::kBadConfig, "GGUF: inner_size " + std::to_string(hp.d_inner) +
                                                " is not a multiple of time_step_rank (heads) " + std::to_string(hp.n_heads));
    hp.head_dim = hp.d_inner / hp.n_heads;
    if (hp.n_groups <= 0 || hp.d_inner % hp.n_groups != 0)
      return Status(StatusCode::kBadConfig, "GGUF: group_count " + std::to_string(hp.n_groups) + " does not divide inner_size");
    const NormGrouping g = opts.mamba2_norm.value_or(NormGrouping::kGrouped);
    hp.norm_group_size = g == NormGrouping::kFull ? hp.d_inner : hp.d_inner / hp.n_groups;
  }
  Status st = hp.Validate();
  if (!st.ok()) return Status(StatusCode::kBadConfig, "GGUF hyper-parameters: " + st.message());
  return hp;
}

// Q8_0 blocks -> our Q8 codes + per-group-32 scales. False when a code is
// -128 (outside our [-127, 127]).
bool SplitQ8_0(std::span<const uint8_t> src, std::vector<uint8_t>* codes, std::vector<float>* scales) {
  const size_t blocks = src.size() / gguf::kQ8_0Bytes;
  codes->resize(blocks * gguf::kQK);
  scales->resize(blocks);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = src.data() + b * gguf::kQ8_0Bytes;
    (*scales)[b] = F16ToF32(static_cast<uint16_t>(blk[0] | (blk[1] << 8)));
    for (uint32_t j = 0; j < gguf::kQK; ++j) {
      if (blk[2 + j] == 0x80) return false;
      (*codes)[b * gguf::kQK + j] = blk[2 + j];
    }
  }
  return true;
}

// Q4_0 blocks -> our Q4 (element 2i low nibble, 2i+1 high) + scales.
void SplitQ4_0(std::span<const uint8_t> src, std::vector<uint8_t>* codes, std::vector<float>* scales) {
  const size_t blocks = src.size() / gguf::kQ4_0Bytes;
  codes->assign(blocks * gguf::kQK / 2, 0);
  scales->resize(blocks);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = src.data() + b * gguf::kQ4_0Bytes;
    (*scales)[b] = F16ToF32(static_cast<uint16_t>(blk[0] | (blk[1] << 8)));
    uint8_t q[32];
    for (int j = 0; j < 16; ++j) {
      q[j] = blk[2 + j] & 0x0F;
      q[j + 16] = blk[2 + j] >> 4;
    }
    uint8_t* out = codes->data() + b * 16;
    for (int k = 0; k < 16; ++k) out[k] = static_cast<uint8_t>(q[2 * k] | (q[2 * k + 1] << 4));
  }
}

TensorType FloatType(GgmlType t) {
  return t == GgmlType::kF16 ? TensorType::kF16 : t == GgmlType::kBF16 ? TensorType::kBF16 : TensorType::kF32;
}

Status ImportTensor(const GgufFile& f, const GgufTensorInfo& g, const TensorSpec& spec, const HParams& hp,
                    const GgufImportOptions& opts, Model& model) {
  const std::string& name = spec.name;
  const std::span<const uint8_t> bytes = f.TensorData(g);
  const bool is_a = spec.role == TensorRole::kALog;
  const bool plain_float = g.type == GgmlType::kF32 || g.type == GgmlType::kF16 || g.type == GgmlType::kBF16;
  if (plain_float && !is_a) {
    model.SetTensor(ModelTensor::Owned(name, FloatType(g.type), spec.shape, std::vector<uint8_t>(bytes.begin(), bytes.end())));
    return Status::Ok();
  }
  const bool row_layout = !spec.shape.empty() && static_cast<uint64_t>(spec.shape.back()) == g.ne[0];
  if (!is_a && opts.keep_quantized && row_layout && (g.type == GgmlType::kQ8_0 || g.type == GgmlType::kQ4_0)) {
    std::vector<uint8_t> codes;
    std::vector<float> scales;
    bool exact = true;
    if (g.type == GgmlType::kQ8_0) exact = SplitQ8_0(bytes, &codes, &scales);
    else SplitQ4_0(bytes, &codes, &scales);
    if (exact) {
      const int64_t cols = spec.shape.back();
      const int64_t rows = static_cast<int64_t>(g.numel()) / cols;
      ModelTensor t = ModelTensor::Owned(name, g.type == GgmlType::kQ8_0 ? TensorType::kQ8 : TensorType::kQ4,
                                         spec.shape, std::move(codes));
      t.quant.granularity = ScaleGranularity::kPerGroup;
      t.quant.group_size = gguf::kQK;
      model.SetTensor(std::move(t));
      model.SetTensor(ModelTensor::FromF32(name + ".scale", {rows, cols / static_cast<int64_t>(gguf::kQK)}, scales));
      return Status::Ok();
    }
  }
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> values, f.ReadAsF32(g));
  if (is_a) {
    // llama.cpp stores A = -exp(A_log); we store A_log.
    for (size_t i = 0; i < values.size(); ++i) {
      if (!(values[i] < 0.0f) || !std::isfinite(values[i]))
        return Status(StatusCode::kBadValue, "GGUF tensor '" + g.name + "' element " + std::to_string(i) +
                                                 " is " + std::to_string(values[i]) + "; A = -exp(A_log) must be negative",
                      g.info_offset);
      values[i] = static_cast<float>(std::log(-static_cast<double>(values[i])));
    }
  }
  (void)hp;
  model.SetTensor(ModelTensor::FromF32(name, spec.shape, values));
  return Status::Ok();
}

}  // namespace

Result<Model> ImportGgufFile(const GgufFile& f, const GgufImportOptions& opts) {
  SSMQ_ASSIGN_OR_RETURN(HParams hp, ReadHParams(f, opts));
  Model model;
  model.hp = hp;
  const std::vector<TensorSpec> specs = ExpectedTensors(hp);
  std::map<std::string, const TensorSpec*> spec_by_name;
  for (const TensorSpec& s : specs) spec_by_name[s.name] = &s;
  std::map<std::string, const GgufTensorInfo*> by_ours;
  for (const GgufTensorInfo& g : f.tensors()) {
    const std::string ours = OurName(g.name);
    auto it = ours.empty() ? spec_by_name.end() : spec_by_name.find(ours);
    if (it == spec_by_name.end())
      return Status(StatusCode::kBadTensorInfo, "GGUF tensor '" + g.name + "' is not part of a " +
                                                    std::string(ArchName(hp.arch)) + " model with these hyper-parameters",
                    g.info_offset);
    const TensorSpec& spec = *it->second;
    const std::vector<int64_t> torch = g.TorchShape();
    bool shape_ok = WithoutOnes(torch) == WithoutOnes(spec.shape);
    if (spec.role == TensorRole::kSsmNorm)  // stored as [n_group, d_inner / n_group]
      shape_ok = shape_ok || torch == std::vector<int64_t>{hp.n_groups, hp.d_inner / hp.n_groups};
    if (!shape_ok)
      return Status(StatusCode::kBadShape, "GGUF tensor '" + g.name + "' has shape " + ShapeStr(torch) +
                                               " (PyTorch order), expected " + ShapeStr(spec.shape),
                    g.info_offset);
    by_ours[ours] = &g;
  }
  uint64_t done = 0;
  for (const TensorSpec& spec : specs) {
    auto it = by_ours.find(spec.name);
    if (it == by_ours.end()) {
      if (!spec.required) continue;
      return Status(StatusCode::kBadShape, "GGUF file lacks tensor for '" + spec.name + "'");
    }
    SSMQ_RETURN_IF_ERROR(ImportTensor(f, *it->second, spec, hp, opts, model));
    if (opts.progress) opts.progress(++done, by_ours.size());
  }

  SSMQ_ASSIGN_OR_RETURN(model.tokenizer_json, gguf::TokenizerJsonFromGguf(f.metadata()));
  const Metadata& md = f.metadata();
  if (const MetaValue* n = md.Find("general.name"); n && n->type == MetaType::kString)
    model.extra.Set(keys::kName, *n);
  struct IdKey {
    const char* gguf;
    const char* ours;
  };
  constexpr IdKey kIds[] = {{"tokenizer.ggml.bos_token_id", keys::kBosId},
                            {"tokenizer.ggml.eos_token_id", keys::kEosId},
                            {"tokenizer.ggml.padding_token_id", keys::kPadId},
                            {"tokenizer.ggml.unknown_token_id", "tokenizer.unk_id"}};
  for (const IdKey& k : kIds) {
    Result<int64_t> v = md.GetInt(k.gguf);
    if (v.ok()) model.extra.Set(k.ours, MetaValue::I64(*v));
  }
  SSMQ_RETURN_IF_ERROR(model.Validate());
  return model;
}

Result<Model> ImportGguf(const std::string& path, const GgufImportOptions& opts) {
  SSMQ_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
  Result<Model> m = ImportGgufFile(*f, opts);
  if (!m.ok()) return m.status().WithContext(path);
  return m;
}

Status DequantizeModelTensors(Model& model) {
  std::vector<std::string> quantized;
  for (const ModelTensor& t : model.tensors())
    if (TraitsOf(t.type).is_quantized) quantized.push_back(t.name);
  for (const std::string& name : quantized) {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> values, model.ReadAsF32(name));
    std::vector<int64_t> shape = model.Find(name)->shape;
    model.SetTensor(ModelTensor::FromF32(name, std::move(shape), values));
    model.Erase(name + ".scale");
    model.Erase(name + ".zero");
  }
  return Status::Ok();
}

}  // namespace ssmq
