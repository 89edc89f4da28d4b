// The broken-file matrix: every damaged or hostile file is rejected with its
// specific StatusCode (never a crash, never an allocation sized by an
// unchecked length). Structural patches are re-sealed (checksums recomputed)
// so that the check under test, not the checksum, catches them.
#include <gtest/gtest.h>

#include "format/ssmq_file.h"
#include "format/ssmq_layout.h"
#include "tests/format_test_files.h"

namespace ssmq {
namespace {

using testing::Peek;
using testing::Poke;
using testing::Reseal;

const std::vector<uint8_t>& Good() {
  static const std::vector<uint8_t> bytes = *testing::MakeGoldenBasicWriter().WriteBuffer();
  return bytes;
}
StatusCode OpenCode(const std::vector<uint8_t>& b, OpenOptions o = {}) {
  auto r = SsmqFile::OpenBuffer(b, o);
  return r.ok() ? StatusCode::kOk : r.status().code();
}
std::unique_ptr<SsmqFile> OpenGood() { return std::move(SsmqFile::OpenBuffer(Good()).value()); }

// Field offsets inside a directory entry.
struct EntryFields {
  uint64_t name, type, rank, shape, flags, group_size, offset, stored_size, size, checksum;
};
EntryFields Fields(const TensorInfo& t) {
  const uint64_t e = t.entry_offset, n = t.name.size(), r = t.shape.size();
  return {e + 4, e + 4 + n, e + 8 + n, e + 12 + n, e + 12 + n + 8 * r, e + 16 + n + 8 * r,
          e + 20 + n + 8 * r, e + 28 + n + 8 * r, e + 36 + n + 8 * r, e + 44 + n + 8 * r};
}
// Offset of the key_len field of a metadata entry.
uint64_t MetaEntry(const std::vector<uint8_t>& b, const std::string& key) {
  std::vector<uint8_t> needle(4 + key.size());
  const uint32_t len = static_cast<uint32_t>(key.size());
  std::memcpy(needle.data(), &len, 4);
  std::memcpy(needle.data() + 4, key.data(), key.size());
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  EXPECT_NE(it, b.end()) << key;
  return static_cast<uint64_t>(it - b.begin());
}

TEST(FormatCorrupt, TruncatedAtEveryByte) {
  const auto& good = Good();
  ASSERT_EQ(OpenCode(good), StatusCode::kOk);
  for (uint64_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<int64_t>(n));
    ASSERT_EQ(OpenCode(cut), StatusCode::kTruncated) << "cut at " << n;
  }
}

TEST(FormatCorrupt, HeaderBitFlips) {
  const auto& good = Good();
  for (uint64_t at = 0; at < layout::kHeaderSize; ++at) {
    for (uint8_t bit : {uint8_t{0x01}, uint8_t{0x80}}) {
      auto b = good;
      b[at] ^= bit;
      StatusCode want = StatusCode::kChecksumMismatch;  // everything the header checksum covers
      if (at < 4) want = StatusCode::kBadMagic;
      else if (at < 6) want = StatusCode::kUnsupportedVersion;
      else if (at >= 8 && at < 12) want = StatusCode::kBadByteOrder;
      else if (at >= 12 && at < 16) {
        const uint32_t hs = Peek<uint32_t>(b, 12);
        want = (hs % 8 || hs < 128 || hs > 4096) ? StatusCode::kBadHeader : StatusCode::kChecksumMismatch;
      }
      ASSERT_EQ(OpenCode(b), want) << "byte " << at << " bit " << int(bit);
    }
  }
}

TEST(FormatCorrupt, MetadataAndDirectoryBitFlipsFailIndexChecksum) {
  const auto& good = Good();
  auto f = OpenGood();
  const uint64_t begin = f->header().metadata_offset;
  const uint64_t end = f->header().directory_offset + f->header().directory_size;
  for (uint64_t at = begin; at < end; ++at) {
    auto b = good;
    b[at] ^= 0x10;
    ASSERT_EQ(OpenCode(b), StatusCode::kChecksumMismatch) << "byte " << at;
  }
}

TEST(FormatCorrupt, DataBitFlipFoundByChecksumNamingTheTensor) {
  auto f = OpenGood();
  for (const auto& t : f->tensors()) {
    if (t.stored_size == 0) continue;
    auto b = Good();
    b[t.offset + t.stored_size / 2] ^= 0x04;
    auto g = SsmqFile::OpenBuffer(b);
    ASSERT_TRUE(g.ok()) << "open does not read tensor bytes";
    auto r = (*g)->TensorData(*(*g)->FindTensor(t.name), /*verify=*/true);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kChecksumMismatch);
    EXPECT_NE(r.status().message().find("'" + t.name + "'"), std::string::npos) << r.status().ToString();
    EXPECT_EQ(r.status().offset(), t.offset);
    const auto problems = (*g)->ValidateAll();
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_EQ(problems[0].code(), StatusCode::kChecksumMismatch);
    EXPECT_EQ(OpenCode(b, OpenOptions{.verify_tensor_checksums = true}), StatusCode::kChecksumMismatch);
  }
}

TEST(FormatCorrupt, HeaderFields) {
  auto patch = [](uint64_t at, auto v, bool reseal = true) {
    auto b = Good();
    Poke(b, at, v);
    if (reseal) Reseal(b);
    return b;
  };
  std::vector<uint8_t> magic = Good();
  std::memcpy(magic.data(), "GGUF", 4);
  EXPECT_EQ(OpenCode(magic), StatusCode::kBadMagic);
  EXPECT_EQ(OpenCode(patch(layout::kOffByteOrder, uint32_t{0x0D0C0B0A})), StatusCode::kBadByteOrder);
  EXPECT_EQ(OpenCode(patch(layout::kOffVersionMajor, uint16_t{2})), StatusCode::kUnsupportedVersion);
  EXPECT_EQ(OpenCode(patch(layout::kOffVersionMajor, uint16_t{0})), StatusCode::kUnsupportedVersion);
  EXPECT_EQ(OpenCode(patch(layout::kOffVersionMinor, uint16_t{3})), StatusCode::kOk);
  EXPECT_EQ(OpenCode(patch(layout::kOffVersionMinor, uint16_t{3}), OpenOptions{.allow_newer_minor = false}),
            StatusCode::kUnsupportedVersion);
  EXPECT_EQ(OpenCode(patch(layout::kOffRequiredFlags, uint32_t{1u << 5})), StatusCode::kBadHeader);
  EXPECT_EQ(OpenCode(patch(layout::kOffOptionalFlags, uint32_t{1u << 5})), StatusCode::kOk);
  EXPECT_EQ(OpenCode(patch(layout::kOffReserved0, uint32_t{1})), StatusCode::kBadHeader);
  EXPECT_EQ(OpenCode(patch(layout::kOffReserved1, uint32_t{1})), StatusCode::kBadHeader);
  EXPECT_EQ(OpenCode(patch(layout::kOffReserved2, uint64_t{1})), StatusCode::kBadHeader);
  EXPECT_EQ(OpenCode(patch(layout::kOffAlignment, uint32_t{48})), StatusCode::kBadHeader);
  EXPECT_EQ(OpenCode(patch(layout::kOffAlignment, uint32_t{16})), StatusCode::kBadHeader);
  EXPECT_EQ(OpenCode(patch(layout::kOffHeaderSize, uint32_t{120})), StatusCode::kBadHeader);
  const uint64_t size = Good().size();
  EXPECT_EQ(OpenCode(patch(layout::kOffFileSize, size + 1)), StatusCode::kTruncated);
  EXPECT_EQ(OpenCode(patch(layout::kOffFileSize, size - 1)), StatusCode::kBadHeader);
  EXPECT_EQ(OpenCode(patch(layout::kOffFileSize, uint64_t{1} << 62)), StatusCode::kTruncated);
  EXPECT_EQ(OpenCode(patch(layout::kOffMetadataOffset, size)), StatusCode::kOutOfBounds);
  EXPECT_EQ(OpenCode(patch(layout::kOffMetadataOffset, uint64_t{64})), StatusCode::kOutOfBounds);  // inside header
  EXPECT_EQ(OpenCode(patch(layout::kOffMetadataSize, UINT64_MAX - 8)), StatusCode::kOutOfBounds);  // end overflows
  EXPECT_EQ(OpenCode(patch(layout::kOffDirectorySize, size)), StatusCode::kOutOfBounds);
  auto f = OpenGood();
  EXPECT_EQ(OpenCode(patch(layout::kOffDataOffset, f->header().data_offset + 32)), StatusCode::kMisaligned);
  EXPECT_EQ(OpenCode(patch(layout::kOffDataSize, f->header().data_size + 1)), StatusCode::kOutOfBounds);
  EXPECT_EQ(OpenCode(patch(layout::kOffDirectoryOffset, f->header().metadata_offset)), StatusCode::kOverlap);
  EXPECT_EQ(OpenCode(patch(layout::kOffExtCount, uint32_t{1} << 30)), StatusCode::kLimitExceeded);
  EXPECT_EQ(OpenCode(patch(layout::kOffExtTableOffset, uint64_t{256})), StatusCode::kBadHeader);
  // Trailing garbage after file_size.
  auto longer = Good();
  longer.push_back(0);
  EXPECT_EQ(OpenCode(longer), StatusCode::kBadHeader);
  // Header checksum damaged on its own.
  EXPECT_EQ(OpenCode(patch(layout::kOffHeaderChecksum, uint64_t{0}, false)), StatusCode::kChecksumMismatch);
  EXPECT_EQ(OpenCode(patch(layout::kOffIndexChecksum, uint64_t{0}, false)), StatusCode::kChecksumMismatch);
}

TEST(FormatCorrupt, NewerMinorWithExtensionSections) {
  const auto payload = testing::ExtensionPayload();
  const auto optional = testing::WithExtensionSection(Good(), 1, 0x7001, 0, payload);
  auto f = SsmqFile::OpenBuffer(optional);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->header().version_minor, 1);
  ASSERT_EQ((*f)->extensions().size(), 1u);
  EXPECT_EQ((*f)->extensions()[0].kind, 0x7001u);
  EXPECT_EQ((*f)->extensions()[0].size, payload.size());
  EXPECT_EQ((*f)->tensors().size(), OpenGood()->tensors().size());
  EXPECT_TRUE((*f)->ValidateAll().empty());
  const auto required = testing::WithExtensionSection(Good(), 1, 0x7001, layout::kExtFlagRequired, payload);
  EXPECT_EQ(OpenCode(required), StatusCode::kUnsupported);
  // An extension section pointing into the data section.
  auto overlapping = optional;
  const uint64_t table = Peek<uint64_t>(overlapping, layout::kOffExtTableOffset);
  Poke<uint64_t>(overlapping, table + 8, OpenGood()->header().data_offset);
  Reseal(overlapping);
  EXPECT_EQ(OpenCode(overlapping), StatusCode::kOverlap);
  auto outside = optional;
  Poke<uint64_t>(outside, table + 16, uint64_t{1} << 40);
  Reseal(outside);
  EXPECT_EQ(OpenCode(outside), StatusCode::kOutOfBounds);
  // Newer major: rejected whatever it contains.
  auto major = optional;
  Poke<uint16_t>(major, layout::kOffVersionMajor, 2);
  Reseal(major);
  EXPECT_EQ(OpenCode(major), StatusCode::kUnsupportedVersion);
}

TEST(FormatCorrupt, DirectoryEntries) {
  auto f = OpenGood();
  const TensorInfo& a = *f->FindTensor("plain.f32");
  const TensorInfo& b = *f->FindTensor("plain.i32");  // same name length as plain.f32
  const EntryFields fa = Fields(a), fb = Fields(b);
  const uint64_t rel_a = a.offset - f->header().data_offset;
  auto patched = [](uint64_t at, auto v) {
    auto bytes = Good();
    Poke(bytes, at, v);
    Reseal(bytes);
    return OpenCode(bytes);
  };
  EXPECT_EQ(patched(fb.offset, rel_a), StatusCode::kOverlap);
  EXPECT_EQ(patched(fa.offset, rel_a + 1), StatusCode::kMisaligned);
  EXPECT_EQ(patched(fa.offset, rel_a + 4096), StatusCode::kOutOfBounds);  // past the data section
  EXPECT_EQ(patched(fa.offset, UINT64_MAX - 63), StatusCode::kOutOfBounds);  // offset + size overflows
  EXPECT_EQ(patched(fa.type, uint32_t{99}), StatusCode::kUnknownType);
  EXPECT_EQ(patched(fa.type, uint32_t{static_cast<uint32_t>(TensorType::kI32)}), StatusCode::kOk);  // same size
  EXPECT_EQ(patched(fa.type, uint32_t{static_cast<uint32_t>(TensorType::kF16)}), StatusCode::kBadTensorInfo);
  EXPECT_EQ(patched(fa.rank, uint32_t{9}), StatusCode::kBadTensorInfo);
  EXPECT_EQ(patched(fa.rank, uint32_t{0xFFFFFFFF}), StatusCode::kBadTensorInfo);
  EXPECT_EQ(patched(fa.shape, int64_t{-2}), StatusCode::kBadTensorInfo);
  EXPECT_EQ(patched(fa.shape, int64_t{1} << 62), StatusCode::kBadTensorInfo);  // numel*4 overflows
  EXPECT_EQ(patched(fa.size, a.size + 1), StatusCode::kBadTensorInfo);
  EXPECT_EQ(patched(fa.stored_size, a.size - 4), StatusCode::kBadTensorInfo);  // uncompressed: stored == size
  EXPECT_EQ(patched(fa.flags, uint8_t{1}), StatusCode::kBadTensorInfo);        // granularity on f32
  EXPECT_EQ(patched(fa.flags + 1, uint8_t{2}), StatusCode::kBadTensorInfo);    // has_zero_point not 0/1
  EXPECT_EQ(patched(fa.flags + 2, uint8_t{7}), StatusCode::kBadTensorInfo);    // unknown compression
  EXPECT_EQ(patched(fa.flags + 3, uint8_t{1}), StatusCode::kBadTensorInfo);    // reserved
  EXPECT_EQ(patched(fa.group_size, uint32_t{4}), StatusCode::kBadTensorInfo);
  EXPECT_EQ(patched(fb.name + 6, uint8_t{'f'}), StatusCode::kDuplicateTensor);  // plain.i32 -> plain.f32
  EXPECT_EQ(patched(fa.name + 2, uint8_t{0x01}), StatusCode::kBadTensorInfo);   // control char
  EXPECT_EQ(patched(fa.name + 2, uint8_t{0xC3}), StatusCode::kBadTensorInfo);   // invalid UTF-8
  EXPECT_EQ(patched(fa.name - 4, uint32_t{0}), StatusCode::kBadTensorInfo);     // name shorter: bytes shift
  EXPECT_EQ(patched(fa.name - 4, uint32_t{1u << 31}), StatusCode::kLimitExceeded);
  EXPECT_EQ(patched(fa.name - 4, uint32_t{4000}), StatusCode::kTruncated);
  const uint64_t dir = f->header().directory_offset;
  EXPECT_EQ(patched(dir, uint64_t{1} << 60), StatusCode::kLimitExceeded);
  EXPECT_EQ(patched(dir, uint64_t{1} << 20), StatusCode::kTruncated);
  EXPECT_EQ(patched(dir, uint64_t{f->tensors().size() - 1}), StatusCode::kBadTensorInfo);  // trailing entry
  // Quantized tensor loses its scale companion / gets a wrong-typed one.
  const TensorInfo& scale = *f->FindTensor("q8.per_channel.scale");
  EXPECT_EQ(patched(Fields(scale).name + scale.name.size() - 1, uint8_t{'X'}), StatusCode::kBadTensorInfo);
  const TensorInfo& zero = *f->FindTensor("q4.zero_point.zero");
  EXPECT_EQ(patched(Fields(zero).type, uint32_t{static_cast<uint32_t>(TensorType::kI8)}), StatusCode::kBadTensorInfo);
  // A q4 tensor with an odd last dim (rank-1 [odd] keeps numel/2 rounding but breaks the rule).
  const TensorInfo& q4 = *f->FindTensor("q4.per_channel");
  EXPECT_EQ(patched(Fields(q4).shape + 16, int64_t{3}), StatusCode::kBadTensorInfo);
}

TEST(FormatCorrupt, MetadataEntries) {
  const auto& good = Good();
  auto patched = [](uint64_t at, auto v) {
    auto bytes = Good();
    Poke(bytes, at, v);
    Reseal(bytes);
    return OpenCode(bytes);
  };
  const uint64_t u8 = MetaEntry(good, "test.u8");
  const uint64_t i8 = MetaEntry(good, "test.i8");
  EXPECT_EQ(patched(i8 + 9, uint8_t{'u'}), StatusCode::kDuplicateKey);     // test.i8 -> test.u8
  EXPECT_EQ(patched(u8 + 4, uint8_t{'T'}), StatusCode::kBadMetadata);      // key rule
  EXPECT_EQ(patched(u8, uint32_t{1u << 31}), StatusCode::kLimitExceeded);  // key length
  EXPECT_EQ(patched(u8 + 4 + 7, uint32_t{99}), StatusCode::kUnknownType);  // value type
  const uint64_t boolean = MetaEntry(good, "test.bool");
  EXPECT_EQ(patched(boolean + 4 + 9 + 4, uint8_t{2}), StatusCode::kBadMetadata);
  const uint64_t str = MetaEntry(good, "test.string");
  const uint64_t str_len = str + 4 + 11 + 4;
  EXPECT_EQ(patched(str_len, uint64_t{1} << 62), StatusCode::kLimitExceeded);
  EXPECT_EQ(patched(str_len, uint64_t{1} << 20), StatusCode::kTruncated);
  EXPECT_EQ(patched(str_len + 8, uint8_t{0xFF}), StatusCode::kBadMetadata);  // invalid UTF-8
  const uint64_t arr = MetaEntry(good, "test.array_i64");
  const uint64_t elem = arr + 4 + 14 + 4, count = elem + 4;
  EXPECT_EQ(patched(count, uint64_t{1} << 62), StatusCode::kLimitExceeded);
  EXPECT_EQ(patched(count, uint64_t{1} << 31), StatusCode::kTruncated);
  EXPECT_EQ(patched(elem, uint32_t{12}), StatusCode::kBadMetadata);  // nested array
  EXPECT_EQ(patched(elem, uint32_t{77}), StatusCode::kUnknownType);
  const uint64_t strs = MetaEntry(good, "test.array_string");
  EXPECT_EQ(patched(strs + 4 + 17 + 4 + 4, uint64_t{1} << 30), StatusCode::kTruncated);  // 2^30 strings
  auto f = OpenGood();
  const uint64_t md = f->header().metadata_offset;
  EXPECT_EQ(patched(md, uint64_t{1} << 60), StatusCode::kLimitExceeded);
  EXPECT_EQ(patched(md, uint64_t{1} << 20), StatusCode::kTruncated);
  EXPECT_EQ(patched(md, uint64_t{f->metadata().size() - 1}), StatusCode::kBadMetadata);  // trailing bytes
}

TEST(FormatCorrupt, StatusNamesFieldAndOffset) {
  auto bytes = Good();
  auto f = OpenGood();
  const TensorInfo& a = *f->FindTensor("plain.f32");
  Poke<uint64_t>(bytes, Fields(a).offset, a.offset - f->header().data_offset + 1);
  Reseal(bytes);
  auto r = SsmqFile::OpenBuffer(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().offset(), Fields(a).offset);
  EXPECT_NE(r.status().ToString().find("misaligned at offset"), std::string::npos);
  EXPECT_NE(r.status().message().find("plain.f32"), std::string::npos);
}

}  // namespace
}  // namespace ssmq
