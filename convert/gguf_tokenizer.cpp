// tokenizer.ggml.* <-> tokenizer.json (see gguf_tokenizer.h).
#include "convert/gguf_tokenizer.h"

#include <map>
#include <nlohmann/json.hpp>
#include <vector>

namespace ssmq::gguf {
namespace {

using Json = nlohmann::ordered_json;

constexpr int64_t kTokenNormal = 1, kTokenControl = 3, kTokenUserDefined = 4, kTokenUnused = 5;

Json ByteLevelStep(const char* type, bool add_prefix_space) {
  return Json{{"type", type}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true}, {"use_regex", true}};
}

}  // namespace

Result<std::string> TokenizerJsonFromGguf(const Metadata& md) {
  Result<std::string> model = md.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status().WithContext("metadata 'tokenizer.ggml.model'");
  if (*model != "gpt2")
    return Status(StatusCode::kUnsupported,
                  "tokenizer.ggml.model '" + *model + "' is not supported (only byte-level BPE 'gpt2')");
  if (const MetaValue* pre = md.Find("tokenizer.ggml.pre")) {
    Result<std::string> p = pre->AsString();
    if (!p.ok() || (*p != "gpt-2" && *p != "default"))
      return Status(StatusCode::kUnsupported,
                    "tokenizer.ggml.pre '" + (p.ok() ? *p : std::string("?")) +
                        "' is not supported (only the GPT-2 pre-tokenizer regex: 'gpt-2' / 'default')");
  }
  const MetaValue* tokens_v = md.Find("tokenizer.ggml.tokens");
  if (!tokens_v || tokens_v->type != MetaType::kArray || tokens_v->elem_type != MetaType::kString)
    return Status(StatusCode::kBadMetadata, "tokenizer.ggml.tokens must be an array of strings");
  const auto& tokens = std::get<std::vector<std::string>>(tokens_v->v);
  std::vector<int64_t> types(tokens.size(), kTokenNormal);
  if (const MetaValue* tt = md.Find("tokenizer.ggml.token_type")) {
    if (tt->type != MetaType::kArray || !std::holds_alternative<std::vector<int64_t>>(tt->v))
      return Status(StatusCode::kBadMetadata, "tokenizer.ggml.token_type must be an array of signed integers");
    types = std::get<std::vector<int64_t>>(tt->v);
    if (types.size() != tokens.size())
      return Status(StatusCode::kBadMetadata, "tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                                                  " entries, tokenizer.ggml.tokens " + std::to_string(tokens.size()));
  }
  Json merges = Json::array();
  if (const MetaValue* mv = md.Find("tokenizer.ggml.merges")) {
    if (mv->type != MetaType::kArray || mv->elem_type != MetaType::kString)
      return Status(StatusCode::kBadMetadata, "tokenizer.ggml.merges must be an array of strings");
    for (const std::string& m : std::get<std::vector<std::string>>(mv->v)) {
      const size_t sp = m.find(' ', 1);  // a merge's left part is never empty
      if (sp == std::string::npos || sp + 1 >= m.size())
        return Status(StatusCode::kBadMetadata, "tokenizer.ggml.merges entry '" + m + "' is not 'left right'");
      merges.push_back(Json::array({m.substr(0, sp), m.substr(sp + 1)}));
    }
  }

  // The vocab object is built as a plain (key-sorted) json: ordered_json finds
  // keys by linear search, which made a 50k vocabulary cost seconds and a
  // hostile million-token one hang. Key order does not matter to a reader.
  nlohmann::json vocab = nlohmann::json::object();
  Json added = Json::array();
  std::map<std::string, size_t> seen;
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (types[id] == kTokenUnused) continue;  // llama.cpp's "[PAD<i>]" fillers
    if (!seen.emplace(tokens[id], id).second)
      return Status(StatusCode::kBadMetadata, "tokenizer.ggml.tokens has '" + tokens[id] + "' twice (ids " +
                                                  std::to_string(seen[tokens[id]]) + " and " + std::to_string(id) + ")");
    vocab[tokens[id]] = id;
    if (types[id] == kTokenControl || types[id] == kTokenUserDefined) {
      added.push_back(Json{{"id", id}, {"content", tokens[id]}, {"single_word", false}, {"lstrip", false},
                           {"rstrip", false}, {"normalized", types[id] != kTokenControl},
                           {"special", types[id] == kTokenControl}});
    }
  }

  Json j = Json::object();
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = ByteLevelStep("ByteLevel", false);
  j["post_processor"] = ByteLevelStep("ByteLevel", true);
  j["decoder"] = ByteLevelStep("ByteLevel", true);
  j["model"] = Json{{"type", "BPE"},        {"dropout", nullptr},       {"unk_token", nullptr},
                    {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                    {"fuse_unk", false},    {"byte_fallback", false},   {"ignore_merges", false},
                    {"vocab", Json(vocab)}, {"merges", merges}};
  try {
    return j.dump();
  } catch (const std::exception& e) {  // a token that is not valid UTF-8
    return Status(StatusCode::kBadMetadata, std::string("tokenizer.ggml.tokens: ") + e.what());
  }
}

Status WriteGgufTokenizer(const std::string& tokenizer_json, int64_t vocab_size, const Metadata& extra,
                          GgufWriter& w) {
  // Read into an unordered json: nlohmann's ordered_json finds keys by linear
  // search, which makes parsing a 50k-token vocabulary quadratic (seconds).
  // Nothing here depends on the vocab's key order (ids are sorted below).
  using InJson = nlohmann::json;
  InJson j;
  try {
    j = InJson::parse(tokenizer_json);
  } catch (const std::exception& e) {
    return Status(StatusCode::kParseError, std::string("tokenizer.json: ") + e.what());
  }
  try {
    const InJson& model = j.at("model");
    if (model.value("type", std::string()) != "BPE")
      return Status(StatusCode::kUnsupported, "GGUF export supports byte-level BPE tokenizers only (model.type '" +
                                                  model.value("type", std::string()) + "')");
    const InJson& pre = j.at("pre_tokenizer");
    if (!pre.is_object() || pre.value("type", std::string()) != "ByteLevel" || !pre.value("use_regex", true))
      return Status(StatusCode::kUnsupported,
                    "GGUF export supports the GPT-2 ByteLevel pre-tokenizer only (llama.cpp 'gpt-2')");
    // id -> token, and which ids are added tokens (special or not).
    std::map<int64_t, std::string> by_id;
    for (const auto& [tok, id] : model.at("vocab").items()) by_id[id.get<int64_t>()] = tok;
    std::map<int64_t, bool> added_special;
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const InJson& a : j["added_tokens"]) {
        const int64_t id = a.at("id").get<int64_t>();
        by_id[id] = a.at("content").get<std::string>();
        added_special[id] = a.value("special", false);
      }
    }
    int64_t n = vocab_size;
    if (!by_id.empty()) n = std::max(n, by_id.rbegin()->first + 1);
    if (!by_id.empty() && by_id.begin()->first < 0)
      return Status(StatusCode::kBadValue, "tokenizer.json has a negative token id");
    std::vector<std::string> tokens(static_cast<size_t>(n));
    std::vector<int64_t> types(static_cast<size_t>(n), kTokenNormal);
    for (int64_t id = 0; id < n; ++id) {
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        tokens[id] = "[PAD" + std::to_string(id) + "]";
        types[id] = kTokenUnused;
        continue;
      }
      tokens[id] = it->second;
      auto ad = added_special.find(id);
      if (ad != added_special.end()) types[id] = ad->second ? kTokenControl : kTokenUserDefined;
    }
    std::vector<std::string> merges;
    for (const InJson& m : model.at("merges")) {
      if (m.is_string()) merges.push_back(m.get<std::string>());
      else merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
    }
    w.SetString("tokenizer.ggml.model", "gpt2");
    w.SetString("tokenizer.ggml.pre", "gpt-2");
    w.SetValue("tokenizer.ggml.tokens", MetaValue::ArrayString(std::move(tokens)));
    w.SetValue("tokenizer.ggml.token_type", MetaValue::ArrayOf(MetaType::kI32, std::move(types)));
    w.SetValue("tokenizer.ggml.merges", MetaValue::ArrayString(std::move(merges)));

    auto id_of = [&](const char* key) -> int64_t {
      Result<int64_t> v = extra.GetInt(key);
      return v.ok() ? *v : -1;
    };
    const int64_t bos = id_of("tokenizer.bos_id"), eos = id_of("tokenizer.eos_id");
    int64_t unk = id_of("tokenizer.unk_id");
    if (unk < 0 && model.contains("unk_token") && model["unk_token"].is_string()) {
      const std::string u = model["unk_token"].get<std::string>();
      for (const auto& [id, tok] : by_id)
        if (tok == u) unk = id;
    }
    if (unk < 0) unk = eos;  // GPT-2 style tokenizers use <|endoftext|> as unk too
    const int64_t pad = id_of("tokenizer.pad_id");
    if (bos >= 0) w.SetU32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
    if (eos >= 0) w.SetU32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
    if (unk >= 0) w.SetU32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(unk));
    if (pad >= 0) w.SetU32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(pad));
  } catch (const std::exception& e) {
    return Status(StatusCode::kParseError, std::string("tokenizer.json: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace ssmq::gguf
