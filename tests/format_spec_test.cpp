// spec/format.md's machine-checked tables agree with the code: the tensor
// type table with GetTensorTypeTraits, the metadata type table with MetaType,
// the header byte table with format/ssmq_layout.h.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "format/metadata.h"
#include "format/ssmq_layout.h"
#include "format/tensor_types.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Rows of the markdown table between the begin/end markers, header and
// separator rows dropped; each row split into trimmed cells.
std::vector<std::vector<std::string>> ReadTable(const std::string& marker) {
  const std::string text = testing::ReadFileText(testing::TestDir() + "/../spec/format.md");
  const std::string begin = "<!-- ssmq:" + marker + ":begin -->";
  const std::string end = "<!-- ssmq:" + marker + ":end -->";
  const size_t b = text.find(begin);
  const size_t e = text.find(end);
  EXPECT_NE(b, std::string::npos) << "missing " << begin;
  EXPECT_NE(e, std::string::npos) << "missing " << end;
  std::vector<std::vector<std::string>> rows;
  if (b == std::string::npos || e == std::string::npos) return rows;
  std::istringstream in(text.substr(b + begin.size(), e - b - begin.size()));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    line = Trim(line);
    if (line.empty()) continue;
    if (n++ < 2) continue;  // header + separator
    EXPECT_EQ(line.front(), '|');
    std::vector<std::string> cells;
    std::string cell;
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '|') {
        cells.push_back(Trim(cell));
        cell.clear();
      } else {
        cell += line[i];
      }
    }
    rows.push_back(cells);
  }
  return rows;
}

TEST(FormatSpec, TensorTypeTableMatchesCode) {
  const auto rows = ReadTable("type-table");
  ASSERT_EQ(rows.size(), static_cast<size_t>(TensorType::kCount));
  for (const auto& r : rows) {
    ASSERT_GE(r.size(), 6u);
    const uint32_t id = static_cast<uint32_t>(std::stoul(r[0]));
    const auto traits = GetTensorTypeTraits(id);
    ASSERT_TRUE(traits.has_value()) << "spec lists unknown id " << id;
    EXPECT_EQ(r[1], traits->name) << "id " << id;
    EXPECT_EQ(std::stoul(r[2]), traits->block_elems) << r[1];
    EXPECT_EQ(std::stoul(r[3]), traits->block_bytes) << r[1];
    EXPECT_EQ(r[4] == "yes", traits->is_float) << r[1];
    EXPECT_EQ(r[5] == "yes", traits->is_quantized) << r[1];
    EXPECT_TRUE(r[4] == "yes" || r[4] == "no");
    EXPECT_TRUE(r[5] == "yes" || r[5] == "no");
    EXPECT_EQ(TensorTypeFromName(r[1]), traits->type);
  }
  EXPECT_FALSE(GetTensorTypeTraits(static_cast<uint32_t>(TensorType::kCount)).has_value());
}

TEST(FormatSpec, MetadataTypeTableMatchesCode) {
  const auto rows = ReadTable("meta-type-table");
  ASSERT_EQ(rows.size(), static_cast<size_t>(MetaType::kCount));
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(std::stoul(rows[i][0]), i);
    EXPECT_EQ(rows[i][1], MetaTypeName(static_cast<MetaType>(i)));
  }
}

TEST(FormatSpec, HeaderTableMatchesLayout) {
  const std::map<std::string, uint64_t> code = {
      {"magic", layout::kOffMagic}, {"version_major", layout::kOffVersionMajor},
      {"version_minor", layout::kOffVersionMinor}, {"byte_order_mark", layout::kOffByteOrder},
      {"header_size", layout::kOffHeaderSize}, {"required_flags", layout::kOffRequiredFlags},
      {"optional_flags", layout::kOffOptionalFlags}, {"alignment", layout::kOffAlignment},
      {"reserved0", layout::kOffReserved0}, {"file_size", layout::kOffFileSize},
      {"metadata_offset", layout::kOffMetadataOffset}, {"metadata_size", layout::kOffMetadataSize},
      {"directory_offset", layout::kOffDirectoryOffset}, {"directory_size", layout::kOffDirectorySize},
      {"data_offset", layout::kOffDataOffset}, {"data_size", layout::kOffDataSize},
      {"extension_table_offset", layout::kOffExtTableOffset}, {"extension_count", layout::kOffExtCount},
      {"reserved1", layout::kOffReserved1}, {"reserved2", layout::kOffReserved2},
      {"index_checksum", layout::kOffIndexChecksum}, {"header_checksum", layout::kOffHeaderChecksum},
  };
  const auto rows = ReadTable("header-table");
  ASSERT_EQ(rows.size(), code.size());
  uint64_t expected_offset = 0;
  for (const auto& r : rows) {
    const uint64_t off = std::stoull(r[0]), size = std::stoull(r[1]);
    EXPECT_EQ(off, expected_offset) << r[3] << ": fields must be contiguous";
    ASSERT_TRUE(code.count(r[3])) << "unknown field " << r[3];
    EXPECT_EQ(code.at(r[3]), off) << r[3];
    expected_offset = off + size;
  }
  EXPECT_EQ(expected_offset, layout::kHeaderSize);
}

TEST(FormatSpec, TensorBytesRoundsUpToBlocksAndDetectsOverflow) {
  EXPECT_EQ(TensorBytes(TensorType::kF32, 10), 40u);
  EXPECT_EQ(TensorBytes(TensorType::kQ4, 10), 5u);
  EXPECT_EQ(TensorBytes(TensorType::kQ4, 11), 6u);
  EXPECT_EQ(TensorBytes(TensorType::kI64, 0), 0u);
  EXPECT_FALSE(TensorBytes(TensorType::kF32, uint64_t{1} << 62).has_value());
  EXPECT_FALSE(TensorBytes(TensorType::kI64, UINT64_MAX).has_value());
  EXPECT_EQ(TensorBytes(TensorType::kU8, UINT64_MAX), UINT64_MAX);
}

TEST(FormatSpec, StatusToString) {
  Status a(StatusCode::kTruncated, "tensor 'x' data ends past end of file", 1234);
  EXPECT_EQ(a.ToString(), "truncated at offset 1234: tensor 'x' data ends past end of file");
  Status b(StatusCode::kNotFound, "no such key");
  EXPECT_EQ(b.ToString(), "not found: no such key");
  EXPECT_EQ(b.WithContext("file.ssmq").message(), "file.ssmq: no such key");
  EXPECT_EQ(Status::Ok().ToString(), "ok");
  for (int c = 0; c <= static_cast<int>(StatusCode::kCancelled); ++c)
    EXPECT_STRNE(StatusCodeName(static_cast<StatusCode>(c)), "unknown status") << c;
}

TEST(FormatSpec, MetadataKeyRule) {
  EXPECT_TRUE(IsValidMetadataKey("general.architecture"));
  EXPECT_TRUE(IsValidMetadataKey("blk.12.hadamard.ssm_out.size"));
  EXPECT_TRUE(IsValidMetadataKey("x"));
  EXPECT_FALSE(IsValidMetadataKey(""));
  EXPECT_FALSE(IsValidMetadataKey(".a"));
  EXPECT_FALSE(IsValidMetadataKey("a."));
  EXPECT_FALSE(IsValidMetadataKey("a..b"));
  EXPECT_FALSE(IsValidMetadataKey("General.x"));
  EXPECT_FALSE(IsValidMetadataKey("a-b"));
  EXPECT_FALSE(IsValidMetadataKey("a b"));
  EXPECT_TRUE(IsValidMetadataKey(std::string(255, 'a')));
  EXPECT_FALSE(IsValidMetadataKey(std::string(256, 'a')));
}

}  // namespace
}  // namespace ssmq
