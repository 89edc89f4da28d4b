#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/unicode_classes.h"

namespace ssmq {
namespace {

// Rust's char::is_alphanumeric() || '_' (the word test of single_word). Our
// letter/number tables stand in for Alphabetic/Numeric; they differ only on
// combining marks, which this test rarely meets.
bool IsWordChar(char32_t cp) {
  return cp == U'_' || IsUnicodeLetter(cp) || IsUnicodeNumber(cp);
}

// The code point that ends just before byte `end` (kInvalidCodePoint if malformed).
char32_t CodePointBefore(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  const Utf8Char c = ReadUtf8Char(text, start);
  return start + c.length == end ? c.code_point : kInvalidCodePoint;
}

// Start of the whitespace run that ends at `end`.
size_t SkipWhitespaceBackward(std::string_view text, size_t end, size_t floor) {
  while (end > floor) {
    const char32_t cp = CodePointBefore(text, end);
    if (!IsUnicodeWhitespace(cp)) break;
    size_t len = 1;
    while ((static_cast<uint8_t>(text[end - len]) & 0xC0) == 0x80) ++len;
    end -= len;
  }
  return end;
}

size_t SkipWhitespaceForward(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    const Utf8Char c = ReadUtf8Char(text, pos);
    if (!IsUnicodeWhitespace(c.code_point)) break;
    pos += c.length;
  }
  return pos;
}

}  // namespace

void SplitOnAddedTokens(std::string_view text, const std::vector<const AddedToken*>& tokens,
                        std::vector<TextSegment>* segments) {
  // Next occurrence of each token at or after the scan position (npos = none left).
  std::vector<size_t> next_at(tokens.size(), 0);
  for (size_t t = 0; t < tokens.size(); ++t) next_at[t] = text.find(tokens[t]->content);

  size_t scan = 0;          // where the matcher continues
  size_t plain_start = 0;   // start of the plain text not yet emitted
  while (true) {
    // Leftmost match; among those starting there, the longest.
    size_t best = tokens.size();
    for (size_t t = 0; t < tokens.size(); ++t) {
      if (next_at[t] < scan) next_at[t] = text.find(tokens[t]->content, scan);
      if (next_at[t] == std::string_view::npos) continue;
      if (best == tokens.size() || next_at[t] < next_at[best] ||
          (next_at[t] == next_at[best] &&
           tokens[t]->content.size() > tokens[best]->content.size())) {
        best = t;
      }
    }
    if (best == tokens.size()) break;
    const AddedToken& token = *tokens[best];
    size_t start = next_at[best];
    size_t stop = start + token.content.size();
    scan = stop;  // matches never overlap, even rejected ones

    if (token.single_word) {
      const bool word_before = start > 0 && IsWordChar(CodePointBefore(text, start));
      const bool word_after = stop < text.size() && IsWordChar(ReadUtf8Char(text, stop).code_point);
      if (word_before || word_after) continue;
    }
    if (token.lstrip) start = SkipWhitespaceBackward(text, start, plain_start);
    if (token.rstrip) stop = SkipWhitespaceForward(text, stop);
    if (plain_start < start) segments->push_back({text.substr(plain_start, start - plain_start), -1});
    segments->push_back({text.substr(start, stop - start), token.id});
    plain_start = std::max(plain_start, stop);
    scan = std::max(scan, stop);
  }
  if (plain_start < text.size()) segments->push_back({text.substr(plain_start), -1});
}

}  // namespace ssmq
