// GPT-2's byte <-> printable-character mapping ("bytes_to_unicode"): byte-level
// BPE vocabularies spell every byte as one visible Unicode character, e.g. the
// space 0x20 as U+0120 'Ġ', so token strings never contain raw control bytes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ssmq {

// The character that stands for `byte` in vocabulary strings.
char32_t ByteToUnicode(uint8_t byte);
// The byte a vocabulary character stands for, or nullopt if it stands for none.
std::optional<uint8_t> UnicodeToByte(char32_t cp);

// UTF-8 encoding of one code point (cp <= 0x10FFFF).
void AppendUtf8(char32_t cp, std::string* out);

// Maps raw bytes to their vocabulary spelling ("Hello world" -> "HelloĠworld").
std::string BytesToVocabSpelling(std::string_view bytes);
// The inverse: the bytes that a vocabulary string spells, or nullopt when it
// contains a character that is not a byte character (then callers use the
// string's own UTF-8 bytes, as `tokenizers`' ByteLevel decoder does).
std::optional<std::string> VocabSpellingToBytes(std::string_view spelling);

}  // namespace ssmq
