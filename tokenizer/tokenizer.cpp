// Tokenizer: reads tokenizer.json and runs the pipeline of HF `tokenizers`
// for byte-level BPE: added tokens split out -> (normalizer: none supported)
// -> ByteLevel pre-tokenizer (prefix space, GPT-2 regex) -> BPE per piece,
// with a per-piece cache. Decode maps ids back to the exact bytes.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/gpt2_pre_tokenizer.h"

namespace ssmq {

using nlohmann::json;

namespace {

// Pieces longer than this are not cached (long whitespace or symbol runs are
// rare and would only bloat the cache); the cache stops growing at kMaxCacheEntries.
constexpr size_t kMaxCachedPieceBytes = 64;
constexpr size_t kMaxCacheEntries = 1 << 17;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

std::string TypeOf(const json& object) {
  if (object.is_object() && object.contains("type") && object["type"].is_string()) {
    return object["type"].get<std::string>();
  }
  return "<no type>";
}

Result<bool> BoolField(const json& object, const char* key, bool default_value,
                       const std::string& where) {
  if (!object.contains(key) || object[key].is_null()) return default_value;
  if (!object[key].is_boolean()) {
    return Status(StatusCode::kParseError, where + "." + key + ": expected a boolean");
  }
  return object[key].get<bool>();
}

Result<std::vector<AddedToken>> ParseAddedTokens(const json& root) {
  std::vector<AddedToken> tokens;
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return tokens;
  const json& list = root["added_tokens"];
  if (!list.is_array()) return Status(StatusCode::kParseError, "added_tokens: expected an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    const json& entry = list[i];
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() ||
        !entry.contains("content") || !entry["content"].is_string()) {
      return Status(StatusCode::kParseError, where + ": expected {\"id\": int, \"content\": string}");
    }
    AddedToken token;
    const int64_t id = entry["id"].get<int64_t>();
    if (id < 0 || id >= (int64_t{1} << 21)) {
      return Status(StatusCode::kLimitExceeded, where + ".id " + std::to_string(id) + " out of range");
    }
    token.id = static_cast<int32_t>(id);
    token.content = entry["content"].get<std::string>();
    SSMQ_ASSIGN_OR_RETURN(token.special, BoolField(entry, "special", false, where));
    SSMQ_ASSIGN_OR_RETURN(token.single_word, BoolField(entry, "single_word", false, where));
    SSMQ_ASSIGN_OR_RETURN(token.lstrip, BoolField(entry, "lstrip", false, where));
    SSMQ_ASSIGN_OR_RETURN(token.rstrip, BoolField(entry, "rstrip", false, where));
    // `tokenizers` defaults `normalized` to !special.
    SSMQ_ASSIGN_OR_RETURN(token.normalized, BoolField(entry, "normalized", !token.special, where));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// Accepts a null / absent component or one of the `allowed` types.
Status CheckComponent(const json& root, const char* key, std::initializer_list<const char*> allowed) {
  if (!root.contains(key) || root[key].is_null()) return Status::Ok();
  const std::string type = TypeOf(root[key]);
  for (const char* name : allowed) {
    if (type == name) return Status::Ok();
  }
  return Status(StatusCode::kUnsupported, std::string(key) + " type \"" + type + "\" is not supported");
}

int32_t FindSpecialId(const std::vector<AddedToken>& added, const BpeModel& bpe,
                      std::initializer_list<const char*> names) {
  for (const char* name : names) {
    for (const AddedToken& token : added) {
      if (token.content == name) return token.id;
    }
    if (const auto id = bpe.TokenId(name)) return *id;
  }
  return -1;
}

// "<0x4F>" -> 0x4F (byte_fallback tokens), or -1.
int ByteFallbackValue(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') value |= c - '0';
    else if (c >= 'A' && c <= 'F') value |= c - 'A' + 10;
    else return -1;
  }
  return value;
}

}  // namespace

struct Tokenizer::Impl {
  BpeModel bpe;
  std::vector<AddedToken> added_tokens;
  std::vector<const AddedToken*> raw_pass_tokens;         // normalized == false
  std::vector<const AddedToken*> normalized_pass_tokens;  // normalized == true
  bool add_prefix_space = false;
  bool use_regex = true;
  std::vector<std::string> id_to_bytes;  // what each id decodes to
  int32_t bos_id = -1;
  int32_t eos_id = -1;

  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;

  void EncodePiece(std::string_view piece, std::vector<int32_t>* ids) const;
  void EncodePlainSegment(std::string_view segment, std::vector<int32_t>* ids) const;
};

void Tokenizer::Impl::EncodePiece(std::string_view piece, std::vector<int32_t>* ids) const {
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    std::shared_lock lock(cache_mutex);
    const auto it = cache.find(piece);
    if (it != cache.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  bpe.EncodePiece(piece, ids);
  if (cacheable) {
    std::unique_lock lock(cache_mutex);
    if (cache.size() < kMaxCacheEntries) {
      cache.emplace(std::string(piece), std::vector<int32_t>(ids->begin() + first, ids->end()));
    }
  }
}

void Tokenizer::Impl::EncodePlainSegment(std::string_view segment, std::vector<int32_t>* ids) const {
  // ByteLevel pre-tokenizer: optional prefix space, then the GPT-2 regex.
  std::string prefixed;
  if (add_prefix_space && segment.front() != ' ') {
    prefixed.reserve(segment.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(segment);
    segment = prefixed;
  }
  if (!use_regex) {
    EncodePiece(segment, ids);
    return;
  }
  std::vector<std::string_view> pieces;
  SplitGpt2Pieces(segment, &pieces);
  for (std::string_view piece : pieces) EncodePiece(piece, ids);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json) {
  json root;
  try {
    root = json::parse(tokenizer_json.begin(), tokenizer_json.end());
  } catch (const json::parse_error& e) {
    return Status(StatusCode::kParseError, std::string("tokenizer.json: ") + e.what(), e.byte);
  } catch (const json::exception& e) {
    return Status(StatusCode::kParseError, std::string("tokenizer.json: ") + e.what());
  }
  try {
    if (!root.is_object()) return Status(StatusCode::kParseError, "tokenizer.json: not an object");
    if (!root.contains("model") || !root["model"].is_object()) {
      return Status(StatusCode::kParseError, "tokenizer.json: missing \"model\" object");
    }
    const json& model = root["model"];
    // `tokenizers` writes "type"; very old files omit it for BPE.
    const std::string model_type = model.contains("type") ? TypeOf(model) : "BPE";
    if (model_type != "BPE") {
      return Status(StatusCode::kUnsupported, "model type \"" + model_type + "\" is not supported");
    }
    if (root.contains("normalizer") && !root["normalizer"].is_null()) {
      return Status(StatusCode::kUnsupported,
                    "normalizer \"" + TypeOf(root["normalizer"]) + "\" is not supported");
    }
    if (!root.contains("pre_tokenizer") || root["pre_tokenizer"].is_null()) {
      return Status(StatusCode::kUnsupported, "pre_tokenizer: none given; only ByteLevel is supported");
    }
    SSMQ_RETURN_IF_ERROR(CheckComponent(root, "pre_tokenizer", {"ByteLevel"}));
    SSMQ_RETURN_IF_ERROR(CheckComponent(root, "decoder", {"ByteLevel"}));
    // The ByteLevel post-processor only adjusts offsets; anything that adds ids is not ours.
    SSMQ_RETURN_IF_ERROR(CheckComponent(root, "post_processor", {"ByteLevel"}));
    if (root.contains("truncation") && !root["truncation"].is_null()) {
      return Status(StatusCode::kUnsupported, "truncation is not supported");
    }

    auto impl = std::make_unique<Impl>();
    SSMQ_ASSIGN_OR_RETURN(impl->bpe, BpeModel::FromJson(model));
    const json& pre = root["pre_tokenizer"];
    SSMQ_ASSIGN_OR_RETURN(impl->add_prefix_space,
                          BoolField(pre, "add_prefix_space", true, "pre_tokenizer"));
    SSMQ_ASSIGN_OR_RETURN(impl->use_regex, BoolField(pre, "use_regex", true, "pre_tokenizer"));
    SSMQ_ASSIGN_OR_RETURN(impl->added_tokens, ParseAddedTokens(root));
    for (const AddedToken& token : impl->added_tokens) {
      if (token.content.empty()) continue;  // `tokenizers` never matches empty tokens
      (token.normalized ? impl->normalized_pass_tokens : impl->raw_pass_tokens).push_back(&token);
    }

    // Decoding table: vocabulary tokens through the byte-level decoder,
    // added tokens as their content (the ids they share agree for <|endoftext|>).
    const std::vector<std::string>& vocab = impl->bpe.id_to_token();
    int32_t size = static_cast<int32_t>(vocab.size());
    for (const AddedToken& token : impl->added_tokens) size = std::max(size, token.id + 1);
    impl->id_to_bytes.assign(size, std::string());
    for (size_t id = 0; id < vocab.size(); ++id) {
      const int byte_value = impl->bpe.byte_fallback() ? ByteFallbackValue(vocab[id]) : -1;
      if (byte_value >= 0) {
        impl->id_to_bytes[id] = std::string(1, static_cast<char>(byte_value));
      } else if (auto bytes = VocabSpellingToBytes(vocab[id])) {
        impl->id_to_bytes[id] = std::move(*bytes);
      } else {
        impl->id_to_bytes[id] = vocab[id];  // as `tokenizers`: a non-byte character keeps its UTF-8
      }
    }
    for (const AddedToken& token : impl->added_tokens) {
      auto bytes = VocabSpellingToBytes(token.content);
      impl->id_to_bytes[token.id] = bytes ? std::move(*bytes) : token.content;
    }
    // tokenizer.json does not name bos/eos (tokenizer_config.json does); take
    // the conventional names, GPT-2/NeoX's <|endoftext|> first.
    impl->bos_id = FindSpecialId(impl->added_tokens, impl->bpe,
                                 {"<|endoftext|>", "<s>", "<|begin_of_text|>", "<bos>"});
    impl->eos_id = FindSpecialId(impl->added_tokens, impl->bpe,
                                 {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"});
    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  } catch (const json::exception& e) {
    return Status(StatusCode::kParseError, std::string("tokenizer.json: ") + e.what());
  }
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text) const {
  const Impl& impl = *impl_;
  std::vector<TextSegment> raw_segments;
  SplitOnAddedTokens(text, impl.raw_pass_tokens, &raw_segments);
  std::vector<TextSegment> segments;
  for (const TextSegment& segment : raw_segments) {
    if (segment.added_token_id >= 0) {
      segments.push_back(segment);
    } else {
      SplitOnAddedTokens(segment.text, impl.normalized_pass_tokens, &segments);
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 16);
  for (const TextSegment& segment : segments) {
    if (segment.added_token_id >= 0) {
      ids.push_back(segment.added_token_id);
    } else {
      impl.EncodePlainSegment(segment.text, &ids);
    }
  }
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids) const {
  std::string text;
  for (int32_t id : ids) {
    if (id >= 0 && id < vocab_size()) text += impl_->id_to_bytes[id];
  }
  return text;
}

std::string Tokenizer::DecodeToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return std::string();
  return impl_->id_to_bytes[id];
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_bytes.size()); }
int32_t Tokenizer::bos_id() const { return impl_->bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->eos_id; }

}  // namespace ssmq
