#include "tokenizer/gpt2_pre_tokenizer.h"

#include <cstdint>

#include "tokenizer/unicode_classes.h"

namespace ssmq {
namespace {

struct ClassifiedChar {
  char32_t code_point;
  CharClass char_class;
  size_t offset;  // byte offset of the character in the text
};

// Length in characters (0 = none) of a contraction 's 't 're 've 'm 'll 'd at i.
size_t ContractionLength(const std::vector<ClassifiedChar>& chars, size_t i) {
  if (chars[i].code_point != U'\'' || i + 1 >= chars.size()) return 0;
  const char32_t c1 = chars[i + 1].code_point;
  if (c1 == U's' || c1 == U't' || c1 == U'm' || c1 == U'd') return 2;
  if (i + 2 >= chars.size()) return 0;
  const char32_t c2 = chars[i + 2].code_point;
  if ((c1 == U'r' && c2 == U'e') || (c1 == U'v' && c2 == U'e') || (c1 == U'l' && c2 == U'l')) {
    return 3;
  }
  return 0;
}

// End (exclusive char index) of " ?X+" at i for X = `wanted`, or i when it does not match.
size_t OptionalSpaceThenRun(const std::vector<ClassifiedChar>& chars, size_t i, CharClass wanted) {
  size_t j = i;
  if (chars[j].code_point == U' ' && j + 1 < chars.size() && chars[j + 1].char_class == wanted) ++j;
  if (chars[j].char_class != wanted) return i;
  while (j < chars.size() && chars[j].char_class == wanted) ++j;
  return j;
}

// End of the match at i of the last two alternatives \s+(?!\S) | \s+ (chars[i] is a space).
size_t WhitespaceRunEnd(const std::vector<ClassifiedChar>& chars, size_t i) {
  size_t end = i;
  while (end < chars.size() && chars[end].char_class == CharClass::kSpace) ++end;
  // Greedy \s+ followed by non-space: backtrack one so the lookahead sees a
  // space; a run of one cannot give one back and falls to the plain \s+.
  if (end < chars.size() && end - i >= 2) return end - 1;
  return end;
}

}  // namespace

void SplitGpt2Pieces(std::string_view text, std::vector<std::string_view>* pieces) {
  std::vector<ClassifiedChar> chars;
  chars.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Char c = ReadUtf8Char(text, pos);
    chars.push_back({c.code_point, ClassifyCodePoint(c.code_point), pos});
    pos += c.length;
  }
  const auto offset_of = [&](size_t char_index) {
    return char_index < chars.size() ? chars[char_index].offset : text.size();
  };

  size_t i = 0;
  while (i < chars.size()) {
    size_t end = i + ContractionLength(chars, i);
    if (end == i) end = OptionalSpaceThenRun(chars, i, CharClass::kLetter);
    if (end == i) end = OptionalSpaceThenRun(chars, i, CharClass::kNumber);
    if (end == i) end = OptionalSpaceThenRun(chars, i, CharClass::kOther);
    if (end == i) end = WhitespaceRunEnd(chars, i);  // only spaces are left
    pieces->push_back(text.substr(offset_of(i), offset_of(end) - offset_of(i)));
    i = end;
  }
}

}  // namespace ssmq
