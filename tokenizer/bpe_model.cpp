#include "tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"

namespace ssmq {
namespace {

using nlohmann::json;

// Hard limit on ids: keeps a hostile file from making us allocate gigabytes.
constexpr int64_t kMaxTokenId = (int64_t{1} << 21) - 1;  // real vocabularies stay below 300k

// Splits one merges entry, "a b" or ["a", "b"], into its two tokens.
Result<std::pair<std::string, std::string>> ParseMerge(const json& entry, size_t index) {
  if (entry.is_string()) {
    const std::string& text = entry.get_ref<const std::string&>();
    const size_t space = text.find(' ');
    if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
      return Status(StatusCode::kParseError, "model.merges[" + std::to_string(index) +
                                                 "]: expected \"left right\", got \"" + text + "\"");
    }
    return std::make_pair(text.substr(0, space), text.substr(space + 1));
  }
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
    return std::make_pair(entry[0].get<std::string>(), entry[1].get<std::string>());
  }
  return Status(StatusCode::kParseError, "model.merges[" + std::to_string(index) +
                                             "]: expected a \"left right\" string or a pair");
}

bool IsNullOrAbsent(const json& object, const char* key) {
  return !object.contains(key) || object[key].is_null();
}

Result<bool> OptionalBool(const json& object, const char* key) {
  if (IsNullOrAbsent(object, key)) return false;
  if (!object[key].is_boolean()) {
    return Status(StatusCode::kParseError, std::string("model.") + key + ": expected a boolean");
  }
  return object[key].get<bool>();
}

}  // namespace

Result<BpeModel> BpeModel::FromJson(const json& model) {
  BpeModel bpe;
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return Status(StatusCode::kParseError, "model.vocab: missing or not an object");
  }
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return Status(StatusCode::kParseError, "model.merges: missing or not an array");
  }
  if (model.contains("dropout") && model["dropout"].is_number() &&
      model["dropout"].get<double>() > 0.0) {
    return Status(StatusCode::kUnsupported, "model.dropout: BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!IsNullOrAbsent(model, key) &&
        !(model[key].is_string() && model[key].get_ref<const std::string&>().empty())) {
      return Status(StatusCode::kUnsupported, std::string("model.") + key + " is not supported");
    }
  }
  SSMQ_ASSIGN_OR_RETURN(bpe.fuse_unk_, OptionalBool(model, "fuse_unk"));
  SSMQ_ASSIGN_OR_RETURN(bpe.byte_fallback_, OptionalBool(model, "byte_fallback"));
  SSMQ_ASSIGN_OR_RETURN(bpe.ignore_merges_, OptionalBool(model, "ignore_merges"));

  int64_t max_id = -1;
  for (const auto& [token, id_value] : model["vocab"].items()) {
    if (!id_value.is_number_integer()) {
      return Status(StatusCode::kParseError, "model.vocab[\"" + token + "\"]: id is not an integer");
    }
    const int64_t id = id_value.get<int64_t>();
    if (id < 0 || id > kMaxTokenId) {
      return Status(StatusCode::kLimitExceeded,
                    "model.vocab[\"" + token + "\"]: id " + std::to_string(id) + " out of range");
    }
    bpe.vocab_.emplace(token, static_cast<int32_t>(id));
    max_id = std::max(max_id, id);
  }
  bpe.id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  std::vector<bool> id_seen(bpe.id_to_token_.size(), false);
  for (const auto& [token, id] : bpe.vocab_) {
    if (id_seen[id]) {
      return Status(StatusCode::kBadConfig,
                    "model.vocab: id " + std::to_string(id) + " is given to two tokens");
    }
    id_seen[id] = true;
    bpe.id_to_token_[id] = token;
  }

  const json& merges = model["merges"];
  bpe.merges_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    SSMQ_ASSIGN_OR_RETURN(auto pair, ParseMerge(merges[i], i));
    const auto left = bpe.TokenId(pair.first);
    const auto right = bpe.TokenId(pair.second);
    const auto merged = bpe.TokenId(pair.first + pair.second);
    if (!left || !right || !merged) {
      const std::string& missing = !left ? pair.first : !right ? pair.second : pair.first + pair.second;
      return Status(StatusCode::kBadConfig, "model.merges[" + std::to_string(i) + "]: token \"" +
                                                missing + "\" is not in the vocabulary");
    }
    // A repeated pair keeps its last rank, like `tokenizers`' map.
    bpe.merges_[PairKey(*left, *right)] = MergeResult{static_cast<int32_t>(i), *merged};
  }

  if (!IsNullOrAbsent(model, "unk_token")) {
    if (!model["unk_token"].is_string()) {
      return Status(StatusCode::kParseError, "model.unk_token: expected a string");
    }
    const std::string& unk = model["unk_token"].get_ref<const std::string&>();
    bpe.unk_id_ = bpe.TokenId(unk);
    if (!bpe.unk_id_) {
      return Status(StatusCode::kBadConfig,
                    "model.unk_token \"" + unk + "\" is not in the vocabulary");
    }
  }
  SSMQ_RETURN_IF_ERROR(bpe.BuildByteSymbols());
  return bpe;
}

std::optional<int32_t> BpeModel::TokenId(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

Status BpeModel::BuildByteSymbols() {
  for (int b = 0; b < 256; ++b) {
    std::string spelling;
    AppendUtf8(ByteToUnicode(static_cast<uint8_t>(b)), &spelling);
    std::vector<int32_t>& symbols = byte_symbols_[b];
    if (const auto id = TokenId(spelling)) {
      symbols.push_back(*id);
      continue;
    }
    // As `tokenizers` does for a character missing from the vocabulary: its
    // UTF-8 bytes as <0xXX> tokens if byte_fallback has them all, else unk,
    // else nothing.
    if (byte_fallback_) {
      for (char c : spelling) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned>(static_cast<uint8_t>(c)));
        const auto id = TokenId(name);
        if (!id) {
          symbols.clear();
          break;
        }
        symbols.push_back(*id);
      }
      if (!symbols.empty()) continue;
    }
    if (unk_id_) {
      symbols.push_back(*unk_id_);
      byte_is_unk_[b] = true;
    }
  }
  return Status::Ok();
}

const BpeModel::MergeResult* BpeModel::FindMerge(int32_t left, int32_t right) const {
  const auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::MergeSymbols(std::vector<int32_t>* symbols) const {
  const size_t n = symbols->size();
  if (n < 2) return;
  std::vector<int32_t>& id = *symbols;
  // Doubly linked list over symbol slots; a merge keeps the left slot.
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  std::vector<bool> alive(n, true);

  struct Candidate {
    int32_t rank;
    int32_t pos;  // slot of the left symbol; slots keep text order
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  const auto push_pair = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    if (const MergeResult* m = FindMerge(id[pos], id[next[pos]])) queue.push({m->rank, pos});
  };
  for (size_t i = 0; i + 1 < n; ++i) push_pair(static_cast<int32_t>(i));

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    // Stale entries: a side was merged away or the pair changed since the push.
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const MergeResult* m = FindMerge(id[top.pos], id[next[top.pos]]);
    if (m == nullptr || m->rank != top.rank) continue;
    const int32_t right = next[top.pos];
    id[top.pos] = m->new_id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    push_pair(prev[top.pos]);
    push_pair(top.pos);
  }
  size_t out = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) id[out++] = id[i];
  symbols->resize(out);
}

void BpeModel::EncodePiece(std::string_view piece, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    if (const auto id = TokenId(BytesToVocabSpelling(piece))) {
      ids->push_back(*id);
      return;
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(piece.size());
  bool last_was_unk = false;
  for (char c : piece) {
    const uint8_t b = static_cast<uint8_t>(c);
    if (byte_is_unk_[b] && fuse_unk_ && last_was_unk) continue;
    symbols.insert(symbols.end(), byte_symbols_[b].begin(), byte_symbols_[b].end());
    if (!byte_symbols_[b].empty()) last_was_unk = byte_is_unk_[b];
  }
  MergeSymbols(&symbols);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
}

}  // namespace ssmq
