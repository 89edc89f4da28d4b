#include "tokenizer/unicode_classes.h"

#include <algorithm>

namespace ssmq {
namespace {

bool InRanges(const unicode_tables::CodePointRange* ranges, size_t count, char32_t cp) {
  // First range whose last >= cp; cp is inside if that range starts at or before it.
  const unicode_tables::CodePointRange* end = ranges + count;
  const auto* it = std::lower_bound(ranges, end, cp, [](const unicode_tables::CodePointRange& r,
                                                        char32_t value) { return r.last < value; });
  return it != end && it->first <= cp;
}

}  // namespace

bool IsUnicodeLetter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return InRanges(unicode_tables::kLetterRanges, unicode_tables::kLetterRangesCount, cp);
}

bool IsUnicodeNumber(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return InRanges(unicode_tables::kNumberRanges, unicode_tables::kNumberRangesCount, cp);
}

bool IsUnicodeWhitespace(char32_t cp) {
  // PropList.txt White_Space (stable since Unicode 6.3).
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

CharClass ClassifyCodePoint(char32_t cp) {
  if (cp == kInvalidCodePoint) return CharClass::kOther;
  if (IsUnicodeLetter(cp)) return CharClass::kLetter;
  if (IsUnicodeNumber(cp)) return CharClass::kNumber;
  if (IsUnicodeWhitespace(cp)) return CharClass::kSpace;
  return CharClass::kOther;
}

Utf8Char ReadUtf8Char(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(pos);
  if (lead < 0x80) return {lead, 1};
  uint32_t length;
  char32_t cp;
  char32_t min_value;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, cp = lead & 0x1F, min_value = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, cp = lead & 0x0F, min_value = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, cp = lead & 0x07, min_value = 0x10000;
  } else {
    return {kInvalidCodePoint, 1};
  }
  if (pos + length > text.size()) return {kInvalidCodePoint, 1};
  for (uint32_t i = 1; i < length; ++i) {
    const uint8_t cont = byte(pos + i);
    if ((cont & 0xC0) != 0x80) return {kInvalidCodePoint, 1};
    cp = (cp << 6) | (cont & 0x3F);
  }
  if (cp < min_value || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return {kInvalidCodePoint, 1};
  }
  return {cp, length};
}

}  // namespace ssmq
