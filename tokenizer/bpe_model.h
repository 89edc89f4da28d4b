// The BPE model of a byte-level tokenizer.json ("model": {"type": "BPE", ...}):
// vocabulary, merges ranked by position, unk / byte_fallback handling. It turns
// one pre-tokenized piece (raw bytes) into ids, merging the adjacent pair of
// lowest rank first (leftmost on ties) exactly as HF `tokenizers` does.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "format/status.h"

namespace ssmq {

class BpeModel {
 public:
  // `model` is the "model" object of tokenizer.json. kParseError on a wrong
  // shape, kUnsupported on features we do not implement (dropout,
  // continuing_subword_prefix, end_of_word_suffix), kBadConfig when merges or
  // unk_token name tokens missing from the vocabulary.
  static Result<BpeModel> FromJson(const nlohmann::json& model);

  // Appends the ids of one piece of raw bytes (not yet in vocabulary spelling).
  void EncodePiece(std::string_view piece, std::vector<int32_t>* ids) const;

  // Vocabulary string of each id ("" for ids the vocabulary skips); size = max id + 1.
  const std::vector<std::string>& id_to_token() const { return id_to_token_; }
  std::optional<int32_t> TokenId(std::string_view token) const;
  bool byte_fallback() const { return byte_fallback_; }

 private:
  struct MergeResult {
    int32_t rank;    // position in the merges list: lower merges first
    int32_t new_id;  // id of the concatenated token
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  }
  const MergeResult* FindMerge(int32_t left, int32_t right) const;
  Status BuildByteSymbols();
  void MergeSymbols(std::vector<int32_t>* symbols) const;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, MergeResult> merges_;

  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;

  // The starting symbols of each byte: normally the one id of its byte
  // character; <0xXX> ids under byte_fallback, the unk id, or none (dropped)
  // when the vocabulary lacks that character.
  std::array<std::vector<int32_t>, 256> byte_symbols_;
  std::array<bool, 256> byte_is_unk_{};
};

}  // namespace ssmq
