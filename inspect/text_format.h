// Small text helpers shared by the inspect renderers: an aligned table,
// number/shape/byte formatting. Deterministic output (goldens depend on it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ssmq::inspect {

// A plain-text table: columns padded to their widest cell, two spaces apart.
// Numeric columns are right-aligned, text columns left-aligned.
class TextTable {
 public:
  enum class Align { kLeft, kRight };
  void AddColumn(std::string header, Align align = Align::kLeft);
  void AddRow(std::vector<std::string> cells);  // one cell per column
  std::string Render() const;                   // header, dashes, rows; each line ends in '\n'
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> headers_;
  std::vector<Align> aligns_;
  std::vector<std::vector<std::string>> rows_;
};

// "[384, 768]" ("[]" for a scalar).
std::string FormatShape(const std::vector<int64_t>& shape);
// "0x0123456789abcdef"
std::string FormatHex64(uint64_t v);
// "1,234,567"
std::string FormatCount(uint64_t v);
// "12.3 MiB" (binary units, 3 significant digits; "512 B" below 1 KiB).
std::string FormatBytes(uint64_t bytes);
// printf "%.*g" with `digits` significant digits; "inf", "-inf", "nan" spelled out.
std::string FormatDouble(double v, int digits = 6);
// Control characters escaped ("\n", "\t", "\x01") so one value stays on
// one line; cut to max_len characters with "..." appended when longer.
std::string Printable(std::string_view s, size_t max_len = 80);

// A key/value block: "  key:    value" with keys padded to the widest.
std::string FormatKeyValues(const std::vector<std::pair<std::string, std::string>>& rows,
                            int indent = 2);

// A double for JSON: rounded to 7 significant digits so goldens do not
// depend on the last bits of a summation; non-finite values become null.
nlohmann::ordered_json JsonNumber(double v);

}  // namespace ssmq::inspect
