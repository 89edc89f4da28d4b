#include "tokenizer/byte_level.h"

#include "tokenizer/unicode_classes.h"

namespace ssmq {
namespace {

// Printable Latin-1 bytes spell themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF.
bool SpellsItself(uint32_t b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct ByteTables {
  std::array<char32_t, 256> byte_to_cp{};
  // Inverse over U+0000..U+0143 (all characters the mapping uses); 0xFFFF = none.
  std::array<uint16_t, 0x144> cp_to_byte{};
  ByteTables() {
    cp_to_byte.fill(0xFFFF);
    // The other 68 bytes get U+0100, U+0101, ... in byte order.
    char32_t next_shifted = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
      byte_to_cp[b] = SpellsItself(b) ? char32_t{b} : next_shifted++;
      cp_to_byte[byte_to_cp[b]] = static_cast<uint16_t>(b);
    }
  }
};

const ByteTables& Tables() {
  static const ByteTables tables;
  return tables;
}

}  // namespace

char32_t ByteToUnicode(uint8_t byte) { return Tables().byte_to_cp[byte]; }

std::optional<uint8_t> UnicodeToByte(char32_t cp) {
  if (cp >= Tables().cp_to_byte.size()) return std::nullopt;
  const uint16_t b = Tables().cp_to_byte[cp];
  if (b == 0xFFFF) return std::nullopt;
  return static_cast<uint8_t>(b);
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string BytesToVocabSpelling(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(ByteToUnicode(static_cast<uint8_t>(c)), &out);
  return out;
}

std::optional<std::string> VocabSpellingToBytes(std::string_view spelling) {
  std::string out;
  out.reserve(spelling.size());
  for (size_t pos = 0; pos < spelling.size();) {
    const Utf8Char c = ReadUtf8Char(spelling, pos);
    const std::optional<uint8_t> b = UnicodeToByte(c.code_point);
    if (!b) return std::nullopt;
    out.push_back(static_cast<char>(*b));
    pos += c.length;
  }
  return out;
}

}  // namespace ssmq
