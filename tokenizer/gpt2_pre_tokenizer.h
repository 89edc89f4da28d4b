// The GPT-2 pre-tokenizer regex, hand-written:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with leftmost-first alternation and greedy repetition, as the Oniguruma
// engine of HF `tokenizers` runs it (ByteLevel pre-tokenizer, use_regex).
#pragma once

#include <string_view>
#include <vector>

namespace ssmq {

// Appends the regex matches of `text` to `pieces`, in order. Every character
// falls into some alternative, so the pieces are contiguous and concatenate
// back to `text` exactly (bytes of malformed UTF-8 count as "other" characters).
void SplitGpt2Pieces(std::string_view text, std::vector<std::string_view>* pieces);

}  // namespace ssmq
