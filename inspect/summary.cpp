#include "inspect/summary.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

#include "inspect/labels.h"
#include "inspect/text_format.h"
#include "model/arch.h"

namespace ssmq::inspect {

std::string MetaTypeDisplay(const MetaValue& v) {
  if (v.type == MetaType::kArray) return "array<" + std::string(MetaTypeName(v.elem_type)) + ">";
  return std::string(MetaTypeName(v.type));
}

namespace {

bool StartsWith(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string SectionDisplay(uint64_t offset, uint64_t size) {
  return "offset " + std::to_string(offset) + ", " + FormatCount(size) + " bytes";
}

// Heuristic used when the architecture table is not available.
bool LooksLikeMatmulWeight(const TensorInfo& t) {
  const std::string& n = t.name;
  return t.shape.size() == 2 && n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0 &&
         n.find("conv1d") == std::string::npos;
}

// A value for the key/value blocks: strings without quotes, all on one line.
std::string ValueText(const MetaValue& v) {
  if (const auto* str = std::get_if<std::string>(&v.v)) return Printable(*str, 80);
  return Printable(v.ToDisplayString(80), 80);
}

void ReadTokenizer(const Metadata& md, FileSummary& s) {
  const MetaValue* json_text = md.Find(keys::kTokenizerJson);
  s.has_tokenizer = json_text != nullptr;
  if (json_text) {
    if (const auto* text = std::get_if<std::string>(&json_text->v)) {
      s.tokenizer_json_bytes = text->size();
      nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded() && j.is_object()) {
        auto model = j.find("model");
        if (model != j.end() && model->is_object()) {
          if (auto type = model->find("type"); type != model->end() && type->is_string())
            s.tokenizer_model = type->get<std::string>();
          if (auto vocab = model->find("vocab"); vocab != model->end() && vocab->is_object())
            s.tokenizer_vocab = static_cast<int64_t>(vocab->size());
        }
      }
    }
  }
  for (const char* key : {keys::kBosId, keys::kEosId, keys::kPadId})
    if (const MetaValue* v = md.Find(key))
      s.tokenizer_ids.emplace_back(std::string(key).substr(std::strlen("tokenizer.")), ValueText(*v));
}

void ReadMetadata(const Metadata& md, FileSummary& s) {
  if (Result<std::string> a = md.GetString(keys::kArchitecture); a.ok()) s.architecture = *a;
  if (Result<std::string> n = md.GetString(keys::kName); n.ok()) s.name = *n;
  if (Result<std::string> src = md.GetString(keys::kSource); src.ok()) s.source = *src;
  if (Result<std::string> v = md.GetString("quant.scheme"); v.ok()) s.scheme = *v;
  if (Result<std::string> v = md.GetString("quant.recipe"); v.ok()) s.recipe = *v;

  const std::string arch_prefix = s.architecture.empty() ? "\x01" : s.architecture + ".";
  uint64_t act_static = 0, act_dynamic = 0;
  for (const auto& e : md.entries()) {
    s.metadata.push_back({e.key, MetaTypeDisplay(e.value), Printable(e.value.ToDisplayString(64), 64)});
    if (StartsWith(e.key, arch_prefix)) {
      s.hparams.emplace_back(e.key.substr(arch_prefix.size()), ValueText(e.value));
    } else if (StartsWith(e.key, "quant.calib.")) {
      s.calibration.emplace_back(e.key.substr(12), ValueText(e.value));
    } else if (StartsWith(e.key, "blk.") && e.key.find(".act.") != std::string::npos) {
      // activation-quantization sites (spec §6.5)
      Result<std::string> mode = e.value.AsString();
      ++(mode.ok() && *mode == "dynamic_per_token" ? act_dynamic : act_static);
    } else if (StartsWith(e.key, "quant.") && e.key != "quant.scheme" && e.key != "quant.recipe") {
      s.quantization.emplace_back(e.key.substr(6), ValueText(e.value));
    }
  }
  if (act_static + act_dynamic) {
    s.quantization.emplace_back("activation_sites", std::to_string(act_static) + " static, " +
                                                        std::to_string(act_dynamic) +
                                                        " dynamic per token (int8)");
  }
  ReadTokenizer(md, s);
}

void CountTensors(const SsmqFile& file, const TensorLabeler& labeler, FileSummary& s) {
  std::map<uint32_t, TypeBytes> by_type;
  std::vector<BitsPerWeight> by_role;
  BitsPerWeight all{"all"};
  for (const TensorInfo& t : file.tensors()) {
    TypeBytes& tb = by_type[static_cast<uint32_t>(t.type)];
    tb.type = std::string(TensorTypeName(t.type));
    ++tb.tensors;
    tb.elements += t.numel();
    tb.bytes += t.size;
    tb.stored_bytes += t.stored_size;
    s.tensor_bytes += t.size;

    const TensorLabel label = labeler.Label(t.name);
    if (label.base.empty()) s.parameters += t.numel();
    const bool quantized = TraitsOf(t.type).is_quantized;
    const bool matmul = labeler.hparams() ? (label.is_matmul_weight || quantized)
                                          : (LooksLikeMatmulWeight(t) || quantized);
    if (!matmul) continue;
    uint64_t bytes = t.size;
    for (const char* aux : {".scale", ".zero"})
      if (const TensorInfo* a = file.FindTensor(t.name + aux)) bytes += a->size;
    const std::string role = label.base.empty() && label.role != "other" ? label.role : "other";
    auto it = std::find_if(by_role.begin(), by_role.end(),
                           [&](const BitsPerWeight& b) { return b.role == role; });
    if (it == by_role.end()) it = by_role.insert(by_role.end(), BitsPerWeight{role});
    for (BitsPerWeight* b : {&*it, &all}) {
      ++b->tensors;
      b->elements += t.numel();
      b->bytes += bytes;
    }
  }
  for (auto& [id, tb] : by_type) s.bytes_by_type.push_back(tb);
  by_role.push_back(all);
  for (BitsPerWeight& b : by_role) {
    b.bits = b.elements ? 8.0 * static_cast<double>(b.bytes) / static_cast<double>(b.elements) : 0;
    if (b.tensors) s.bits_per_weight.push_back(b);
  }
}

}  // namespace

FileSummary BuildSummary(const SsmqFile& file, const std::string& file_label) {
  FileSummary s;
  const FileHeader& h = file.header();
  s.file_label = file_label;
  s.file_size = h.file_size;
  s.format_version = std::to_string(h.version_major) + "." + std::to_string(h.version_minor);
  s.alignment = h.alignment;
  s.sections = {{"metadata", SectionDisplay(h.metadata_offset, h.metadata_size)},
                {"directory", SectionDisplay(h.directory_offset, h.directory_size)},
                {"data", SectionDisplay(h.data_offset, h.data_size)}};
  s.n_tensors = file.tensors().size();
  s.n_metadata = file.metadata().size();
  ReadMetadata(file.metadata(), s);
  TensorLabeler labeler(file.metadata());
  s.hparams_error = labeler.hparams_error();
  CountTensors(file, labeler, s);
  s.transforms = BuildTransforms(file);
  return s;
}

std::string RenderSummaryText(const FileSummary& s) {
  auto or_dash = [](const std::string& v) { return v.empty() ? std::string("-") : v; };
  std::string out = "File: " + s.file_label + "\n";
  out += FormatKeyValues({
      {"size", FormatCount(s.file_size) + " bytes (" + FormatBytes(s.file_size) + ")"},
      {"format version", s.format_version},
      {"alignment", std::to_string(s.alignment)},
      {"tensors", std::to_string(s.n_tensors)},
      {"metadata keys", std::to_string(s.n_metadata)},
      {"parameters", FormatCount(s.parameters)},
  });
  out += "Sections:\n" + FormatKeyValues(s.sections);

  out += "Model:\n";
  KeyValues model = {{"architecture", or_dash(s.architecture)},
                     {"name", or_dash(s.name)},
                     {"source", or_dash(s.source)}};
  for (const auto& kv : s.hparams) model.push_back(kv);
  if (!s.hparams_error.empty()) model.emplace_back("hparams error", s.hparams_error);
  out += FormatKeyValues(model);

  out += "Quantization:\n";
  KeyValues quant = {{"scheme", or_dash(s.scheme)}, {"recipe", or_dash(s.recipe)}};
  for (const auto& kv : s.quantization) quant.push_back(kv);
  out += FormatKeyValues(quant);
  out += "Calibration:" + std::string(s.calibration.empty() ? " none\n" : "\n");
  out += FormatKeyValues(s.calibration);

  out += "Tokenizer:";
  if (!s.has_tokenizer) {
    out += " none\n";
  } else {
    out += "\n";
    KeyValues tok = {{"json", FormatCount(s.tokenizer_json_bytes) + " bytes"},
                     {"model", or_dash(s.tokenizer_model)},
                     {"vocab", s.tokenizer_vocab < 0 ? "-" : std::to_string(s.tokenizer_vocab)}};
    for (const auto& kv : s.tokenizer_ids) tok.push_back(kv);
    out += FormatKeyValues(tok);
  }

  out += "Bytes by tensor type:\n";
  TextTable types;
  types.AddColumn("type");
  types.AddColumn("tensors", TextTable::Align::kRight);
  types.AddColumn("elements", TextTable::Align::kRight);
  types.AddColumn("bytes", TextTable::Align::kRight);
  types.AddColumn("stored", TextTable::Align::kRight);
  types.AddColumn("share", TextTable::Align::kRight);
  for (const TypeBytes& tb : s.bytes_by_type) {
    const double share = s.tensor_bytes ? 100.0 * static_cast<double>(tb.bytes) /
                                              static_cast<double>(s.tensor_bytes)
                                        : 0.0;
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f%%", share);
    types.AddRow({tb.type, std::to_string(tb.tensors), FormatCount(tb.elements),
                  FormatCount(tb.bytes), FormatCount(tb.stored_bytes), pct});
  }
  out += types.Render();

  out += "Effective bits per weight (matmul weights incl. scales/zeros):\n";
  TextTable bpw;
  bpw.AddColumn("role");
  bpw.AddColumn("tensors", TextTable::Align::kRight);
  bpw.AddColumn("elements", TextTable::Align::kRight);
  bpw.AddColumn("bytes", TextTable::Align::kRight);
  bpw.AddColumn("bits/weight", TextTable::Align::kRight);
  for (const BitsPerWeight& b : s.bits_per_weight) {
    char bits[32];
    std::snprintf(bits, sizeof bits, "%.3f", b.bits);
    bpw.AddRow({b.role, std::to_string(b.tensors), FormatCount(b.elements), FormatCount(b.bytes),
                bits});
  }
  out += bpw.Render();
  out += RenderTransformsText(s.transforms);

  out += "Metadata:\n";
  TextTable md;
  md.AddColumn("key");
  md.AddColumn("type");
  md.AddColumn("value");
  for (const MetadataRow& r : s.metadata) md.AddRow({r.key, r.type, r.value});
  out += md.Render();
  return out;
}

nlohmann::ordered_json SummaryToJson(const FileSummary& s) {
  using nlohmann::ordered_json;
  auto kv_object = [](const KeyValues& kvs) {
    ordered_json o = ordered_json::object();
    for (const auto& [k, v] : kvs) o[k] = v;
    return o;
  };
  ordered_json j;
  j["file"] = s.file_label;
  j["file_size"] = s.file_size;
  j["format_version"] = s.format_version;
  j["alignment"] = s.alignment;
  j["n_tensors"] = s.n_tensors;
  j["n_metadata"] = s.n_metadata;
  j["parameters"] = s.parameters;
  j["sections"] = kv_object(s.sections);
  j["architecture"] = s.architecture;
  j["name"] = s.name;
  j["source"] = s.source;
  j["hparams"] = kv_object(s.hparams);
  j["hparams_error"] = s.hparams_error;
  j["quant"] = {{"scheme", s.scheme}, {"recipe", s.recipe}, {"other", kv_object(s.quantization)}};
  j["calibration"] = kv_object(s.calibration);
  ordered_json tok;
  tok["present"] = s.has_tokenizer;
  tok["json_bytes"] = s.tokenizer_json_bytes;
  tok["model"] = s.tokenizer_model;
  tok["vocab"] = s.tokenizer_vocab;
  tok["ids"] = kv_object(s.tokenizer_ids);
  j["tokenizer"] = tok;
  j["tensor_bytes"] = s.tensor_bytes;
  j["bytes_by_type"] = ordered_json::array();
  for (const TypeBytes& tb : s.bytes_by_type)
    j["bytes_by_type"].push_back({{"type", tb.type},
                                  {"tensors", tb.tensors},
                                  {"elements", tb.elements},
                                  {"bytes", tb.bytes},
                                  {"stored_bytes", tb.stored_bytes}});
  j["bits_per_weight"] = ordered_json::array();
  for (const BitsPerWeight& b : s.bits_per_weight)
    j["bits_per_weight"].push_back({{"role", b.role},
                                    {"tensors", b.tensors},
                                    {"elements", b.elements},
                                    {"bytes", b.bytes},
                                    {"bits", JsonNumber(b.bits)}});
  ordered_json tr = TransformsToJson(s.transforms);
  j["permutations"] = tr["permutations"];
  j["hadamard"] = tr["hadamard"];
  j["metadata"] = ordered_json::array();
  for (const MetadataRow& r : s.metadata)
    j["metadata"].push_back({{"key", r.key}, {"type", r.type}, {"value", r.value}});
  return j;
}

}  // namespace ssmq::inspect
