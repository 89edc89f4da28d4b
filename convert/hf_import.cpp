// Hugging Face / state-spaces checkpoint directory -> Model. The shards are
// memory-mapped; the Model's tensors view the mappings (keepalive holds the
// SafetensorsFile). Every tensor is checked against ExpectedTensors(hp): a
// config that contradicts the tensors is an error naming the tensor.
#include "convert/hf_import.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "convert/hf_config.h"
#include "convert/safetensors.h"
#include "model/arch.h"

namespace ssmq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Result<std::string> ReadText(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::error_code ec;
    return Status(fs::exists(path, ec) ? StatusCode::kIoError : StatusCode::kNotFound,
                  path.string() + ": cannot open");
  }
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status(StatusCode::kIoError, path.string() + ": read failed");
  return ss.str();
}

// One checkpoint tensor, wherever it lives.
struct SourceTensor {
  std::string hf_name;
  const SafetensorsTensor* tensor = nullptr;
  std::shared_ptr<SafetensorsFile> file;
};

// Opens model.safetensors, or every shard named by model.safetensors.index.json.
Result<std::vector<SourceTensor>> OpenWeights(const fs::path& dir) {
  std::vector<SourceTensor> out;
  const fs::path index_path = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    const fs::path single = dir / "model.safetensors";
    if (!fs::exists(single, ec))
      return Status(StatusCode::kNotFound, dir.string() + ": neither model.safetensors nor model.safetensors.index.json found");
    SSMQ_ASSIGN_OR_RETURN(std::shared_ptr<SafetensorsFile> file, SafetensorsFile::Open(single.string()));
    for (const SafetensorsTensor& t : file->tensors()) out.push_back({t.name, &t, file});
    return out;
  }
  SSMQ_ASSIGN_OR_RETURN(std::string text, ReadText(index_path));
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  try {
    const json root = json::parse(text);
    if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object())
      return Status(StatusCode::kBadConfig, index_path.string() + ": no 'weight_map' object");
    for (auto it = root["weight_map"].begin(); it != root["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return Status(StatusCode::kBadConfig, index_path.string() + ": weight_map entry '" + it.key() + "' is not a file name");
      weight_map[it.key()] = it.value().get<std::string>();
    }
  } catch (const json::exception& e) {
    return Status(StatusCode::kParseError, index_path.string() + ": not valid JSON: " + e.what());
  }
  // Open each shard once; a missing shard names one tensor that lives in it.
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (const auto& [tensor, shard] : weight_map) {
    if (shards.count(shard)) continue;
    if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
        shard == "." || shard == "..")
      return Status(StatusCode::kBadConfig, index_path.string() + ": shard name '" + shard + "' (of tensor '" +
                                                tensor + "') is not a plain file name");
    const fs::path shard_path = dir / shard;
    if (!fs::exists(shard_path, ec))
      return Status(StatusCode::kNotFound, "shard '" + shard + "' (holding tensor '" + tensor +
                                               "') listed in model.safetensors.index.json does not exist in " +
                                               dir.string());
    SSMQ_ASSIGN_OR_RETURN(shards[shard], SafetensorsFile::Open(shard_path.string()));
  }
  for (const auto& [tensor, shard] : weight_map) {
    const std::shared_ptr<SafetensorsFile>& file = shards[shard];
    const SafetensorsTensor* t = file->Find(tensor);
    if (!t)
      return Status(StatusCode::kNotFound, "tensor '" + tensor + "' is listed in model.safetensors.index.json under shard '" +
                                               shard + "' but that shard does not contain it");
    out.push_back({tensor, t, file});
  }
  return out;
}

std::optional<TensorType> FloatDtype(const std::string& dtype) {
  if (dtype == "F32") return TensorType::kF32;
  if (dtype == "F16") return TensorType::kF16;
  if (dtype == "BF16") return TensorType::kBF16;
  return std::nullopt;
}

// A tensor's shape in our layout: conv1d weight [C, 1, K] -> [C, K].
std::vector<int64_t> OurShape(TensorRole role, const std::vector<int64_t>& shape) {
  if (role == TensorRole::kConvW && shape.size() == 3 && shape[1] == 1) return {shape[0], shape[2]};
  return shape;
}

// Explains a shape mismatch: unsupported features first, else the config is wrong.
Status ShapeMismatch(const HParams& hp, const TensorSpec& spec, const SourceTensor& src,
                     const std::vector<int64_t>& actual) {
  const std::string which = "tensor '" + spec.name + "' ('" + src.hf_name + "')";
  if (hp.arch == Arch::kMamba2 && spec.role == TensorRole::kInProj && actual.size() == 2 &&
      actual[1] == spec.shape[1] && actual[0] > spec.shape[0] && (actual[0] - spec.shape[0]) % 2 == 0)
    return Status(StatusCode::kUnsupported,
                  which + " has " + std::to_string(actual[0]) + " rows, " + std::to_string(spec.shape[0]) +
                      " expected: the extra rows are a gated MLP inside the mixer (d_mlp = " +
                      std::to_string((actual[0] - spec.shape[0]) / 2) + " > 0), which is not supported");
  if (hp.arch == Arch::kMamba2 && spec.role == TensorRole::kD && actual == std::vector<int64_t>{hp.d_inner})
    return Status(StatusCode::kUnsupported, which + " has one entry per channel (D_has_hdim), which is not supported");
  return Status(StatusCode::kBadConfig, which + " has shape " + ShapeString(actual) +
                                            " but config.json implies " + ShapeString(spec.shape));
}

// bos/eos/pad ids: config.json first, else the token strings of
// tokenizer_config.json looked up in tokenizer.json's added_tokens.
void AddTokenIds(const HfConfig& cfg, const fs::path& dir, const std::string& tokenizer_json, Metadata& extra) {
  std::optional<int64_t> ids[3] = {cfg.bos_id, cfg.eos_id, cfg.pad_id};
  const char* meta_keys[3] = {keys::kBosId, keys::kEosId, keys::kPadId};
  const char* config_keys[3] = {"bos_token", "eos_token", "pad_token"};
  if ((!ids[0] || !ids[1] || !ids[2]) && !tokenizer_json.empty()) {
    Result<std::string> text = ReadText(dir / "tokenizer_config.json");
    if (text.ok()) {
      try {
        const json tc = json::parse(*text);
        const json tok = json::parse(tokenizer_json);
        for (int i = 0; i < 3; ++i) {
          if (ids[i] || !tc.contains(config_keys[i])) continue;
          const json& v = tc[config_keys[i]];
          const json* content = v.is_string() ? &v : (v.is_object() && v.contains("content") ? &v["content"] : nullptr);
          if (!content || !content->is_string() || !tok.contains("added_tokens")) continue;
          for (const json& added : tok["added_tokens"])
            if (added.value("content", "") == content->get<std::string>() && added.contains("id"))
              ids[i] = added["id"].get<int64_t>();
        }
      } catch (const json::exception&) {
        // Not fatal: the ids are a convenience; the tokenizer itself is checked by its loader.
      }
    }
  }
  for (int i = 0; i < 3; ++i)
    if (ids[i]) extra.Set(meta_keys[i], MetaValue::I64(*ids[i]));
}

// "models/mamba2-tiny/" -> "mamba2-tiny" (the general.name of the import).
std::string DirectoryName(const fs::path& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // a trailing '/'
  return p.filename().string();
}

}  // namespace

Result<Model> ImportHfDirectory(const std::string& dir_str, const HfImportOptions& opts) {
  const fs::path dir(dir_str);
  SSMQ_ASSIGN_OR_RETURN(std::string config_text, ReadText(dir / "config.json"));
  SSMQ_ASSIGN_OR_RETURN(HfConfig cfg, ParseHfConfig(config_text, (dir / "config.json").string()));
  SSMQ_ASSIGN_OR_RETURN(std::vector<SourceTensor> sources, OpenWeights(dir));

  // Our name -> checkpoint tensor. Every checkpoint tensor must be one we know:
  // an unknown one is a feature (MLP, attention, extra norm) we would silently drop.
  HParams& hp = cfg.hp;
  std::map<std::string, const SourceTensor*> by_name;
  for (const SourceTensor& src : sources) {
    std::optional<std::string> ours = MapHfTensorName(hp.arch, src.hf_name);
    if (!ours)
      return Status(StatusCode::kUnsupported, "checkpoint tensor '" + src.hf_name + "' is not part of the " +
                                                  ArchName(hp.arch) + " architecture we support");
    auto [it, inserted] = by_name.emplace(*ours, &src);
    if (!inserted)
      return Status(StatusCode::kDuplicateTensor, "checkpoint tensors '" + it->second->hf_name + "' and '" +
                                                      src.hf_name + "' both map to '" + *ours + "'");
  }

  // Tied when the config says so (transformers then ignores lm_head) or when lm_head is absent.
  hp.tied_embeddings = cfg.config_says_tied || !by_name.count("output.weight");
  if (hp.tied_embeddings) by_name.erase("output.weight");

  // vocab_size = the embedding's rows (mamba_ssm pads it to pad_vocab_size_multiple).
  auto embd = by_name.find("token_embd.weight");
  if (embd == by_name.end())
    return Status(StatusCode::kNotFound, dir_str + ": the checkpoint has no token embedding (backbone.embeddings.weight)");
  const std::vector<int64_t>& embd_shape = embd->second->tensor->shape;
  if (embd_shape.size() != 2)
    return Status(StatusCode::kBadConfig, "tensor 'token_embd.weight' ('" + embd->second->hf_name + "') has shape " +
                                              ShapeString(embd_shape) + ", expected [vocab_size, d_model]");
  hp.vocab_size = embd_shape[0];
  if (cfg.config_vocab_size > 0) {
    const bool contradicts = cfg.kind == CheckpointKind::kTransformers ? cfg.config_vocab_size != hp.vocab_size
                                                                       : cfg.config_vocab_size > hp.vocab_size;
    if (contradicts)
      return Status(StatusCode::kBadConfig, "tensor 'token_embd.weight' ('" + embd->second->hf_name + "') has shape " +
                                                ShapeString(embd_shape) + " but config.json says vocab_size " +
                                                std::to_string(cfg.config_vocab_size));
  }
  if (hp.arch == Arch::kMamba2) {
    const NormGrouping grouping = opts.mamba2_norm.value_or(
        cfg.kind == CheckpointKind::kStateSpaces ? NormGrouping::kGrouped : NormGrouping::kFull);
    hp.norm_group_size = grouping == NormGrouping::kFull || hp.n_groups <= 0 ? hp.d_inner : hp.d_inner / hp.n_groups;
  }
  SSMQ_RETURN_IF_ERROR(hp.Validate().WithContext(dir_str + "/config.json"));

  // Layers past n_layer are a contradiction, not something to drop.
  for (const auto& [ours, src] : by_name) {
    if (!ours.starts_with("blk.")) continue;
    const int64_t layer = std::stoll(ours.substr(4));
    if (layer >= hp.n_layer)
      return Status(StatusCode::kBadConfig, "tensor '" + src->hf_name + "' belongs to layer " + std::to_string(layer) +
                                                " but config.json says there are " + std::to_string(hp.n_layer) + " layers");
  }

  Model model;
  model.hp = hp;
  const std::vector<TensorSpec> specs = ExpectedTensors(hp);
  std::set<std::string> used;
  uint64_t done = 0;
  for (const TensorSpec& spec : specs) {
    auto it = by_name.find(spec.name);
    if (it == by_name.end()) {
      if (!spec.required) continue;
      return Status(StatusCode::kNotFound, "the checkpoint has no tensor for '" + spec.name + "' (expected shape " +
                                               ShapeString(spec.shape) + ")");
    }
    const SourceTensor& src = *it->second;
    used.insert(spec.name);
    std::optional<TensorType> type = FloatDtype(src.tensor->dtype);
    if (!type)
      return Status(StatusCode::kUnsupported, "tensor '" + src.hf_name + "' has dtype " + src.tensor->dtype +
                                                  "; only F32, F16 and BF16 weights are read");
    const std::vector<int64_t> shape = OurShape(spec.role, src.tensor->shape);
    if (shape != spec.shape) return ShapeMismatch(hp, spec, src, src.tensor->shape);

    ModelTensor t;
    t.name = spec.name;
    t.type = *type;
    t.shape = shape;
    const size_t elem = TraitsOf(*type).block_bytes;
    if (reinterpret_cast<uintptr_t>(src.tensor->data.data()) % elem == 0) {
      t.data = src.tensor->data;
      t.keepalive = src.file;
    } else {  // a writer that did not pad its header: copy so typed views stay aligned
      t.owned.assign(src.tensor->data.begin(), src.tensor->data.end());
      t.data = std::span<const uint8_t>(t.owned.data(), t.owned.size());
    }
    model.SetTensor(std::move(t));
    if (opts.progress) opts.progress(++done, specs.size());
  }
  for (const auto& [ours, src] : by_name) {
    if (!used.count(ours))
      return Status(StatusCode::kBadConfig, "tensor '" + src->hf_name + "' is present but config.json says the model has no '" +
                                                ours + "' (check use_bias / use_conv_bias)");
  }

  Result<std::string> tokenizer = ReadText(dir / "tokenizer.json");
  if (tokenizer.ok()) {
    model.tokenizer_json = std::move(tokenizer).value();
  } else if (tokenizer.status().code() != StatusCode::kNotFound) {
    return tokenizer.status();
  }
  model.extra.Set(keys::kName, MetaValue::String(DirectoryName(dir)));
  model.extra.Set(keys::kSource, MetaValue::String(cfg.kind == CheckpointKind::kTransformers
                                                       ? "huggingface transformers safetensors"
                                                       : "state-spaces mamba_ssm safetensors"));
  AddTokenIds(cfg, dir, model.tokenizer_json, model.extra);
  SSMQ_RETURN_IF_ERROR(model.Validate());
  return model;
}

}  // namespace ssmq
