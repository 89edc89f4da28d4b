// Byte-level BPE as Hugging Face `tokenizers` does it for GPT-2/GPT-NeoX
// style tokenizer.json files: added tokens split out first, the GPT-2
// pre-tokenizer regex, byte-to-unicode mapping, BPE merges by rank, byte
// fallback; decode is the exact inverse.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/status.h"

namespace ssmq {

class Tokenizer {
 public:
  // Parses the tokenizer.json text. kParseError / kUnsupported (names the
  // unsupported model type / pre-tokenizer) on bad input.
  static Result<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json);
  ~Tokenizer();

  std::vector<int32_t> Encode(std::string_view text) const;
  // Ids outside the vocabulary decode to "" (callers must not sample them).
  std::string Decode(std::span<const int32_t> ids) const;
  // Text of one token as it appears in output (may be a partial UTF-8 sequence).
  std::string DecodeToken(int32_t id) const;

  int32_t vocab_size() const;  // number of ids the tokenizer can decode (max id + 1)
  int32_t bos_id() const;      // -1 if none
  int32_t eos_id() const;

  struct Impl;
 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ssmq
