// The character classes of the GPT-2 pre-tokenizer regex: \p{L}, \p{N} and
// \s (as the Oniguruma engine inside HF `tokenizers` defines them), plus a
// tolerant UTF-8 reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ssmq {

// What the regex distinguishes about one character.
enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

bool IsUnicodeLetter(char32_t cp);      // general category L*
bool IsUnicodeNumber(char32_t cp);      // general category N*
bool IsUnicodeWhitespace(char32_t cp);  // Unicode White_Space property (regex \s)
CharClass ClassifyCodePoint(char32_t cp);

// One character read from UTF-8 text. Malformed or truncated sequences, overlong
// forms and surrogates are read as one byte each with code_point
// kInvalidCodePoint (a character of class kOther), so every byte of any input
// belongs to exactly one character.
struct Utf8Char {
  char32_t code_point;
  uint32_t length;  // bytes, 1..4
};
inline constexpr char32_t kInvalidCodePoint = 0xFFFFFFFF;
Utf8Char ReadUtf8Char(std::string_view text, size_t pos);

namespace unicode_tables {
struct CodePointRange {
  char32_t first;
  char32_t last;  // inclusive
};
extern const CodePointRange kLetterRanges[];
extern const size_t kLetterRangesCount;
extern const CodePointRange kNumberRanges[];
extern const size_t kNumberRangesCount;
}  // namespace unicode_tables

}  // namespace ssmq
