// Added tokens (tokenizer.json "added_tokens", e.g. <|endoftext|>): found in
// the raw text and split out before pre-tokenization, as HF `tokenizers`'
// AddedVocabulary does: leftmost-longest non-overlapping matches, with the
// single_word / lstrip / rstrip rules applied to each match.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ssmq {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;  // only match with no word character on either side
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = false;   // matched in normalized text (second pass) rather than raw text
  bool special = false;
};

// A stretch of text: either an added token (id >= 0) or plain text (id -1)
// that still needs pre-tokenization and BPE.
struct TextSegment {
  std::string_view text;
  int32_t added_token_id = -1;
};

// Splits `text` around matches of `tokens` (all of one pass), appending the
// segments in order. Plain segments are never empty.
void SplitOnAddedTokens(std::string_view text, const std::vector<const AddedToken*>& tokens,
                        std::vector<TextSegment>* segments);

}  // namespace ssmq
