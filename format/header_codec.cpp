#include "format/header_codec.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <xxhash.h>

#include "format/byte_io.h"
#include "format/ssmq_layout.h"

namespace ssmq {

uint64_t ComputeHeaderChecksum(std::span<const uint8_t> header_bytes) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  const uint8_t zeros[8] = {};
  const size_t n = header_bytes.size();
  const size_t cut = std::min<size_t>(n, layout::kOffHeaderChecksum);
  XXH3_64bits_update(st, header_bytes.data(), cut);
  if (n > cut) {
    XXH3_64bits_update(st, zeros, std::min<size_t>(8, n - cut));
    if (n > cut + 8) XXH3_64bits_update(st, header_bytes.data() + cut + 8, n - cut - 8);
  }
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

namespace {

struct Range {
  uint64_t begin, size;
  const char* what;
};

// XXH3-64 of the concatenation of the given (already bounds-checked) ranges.
uint64_t HashRanges(const uint8_t* file, std::initializer_list<Range> ranges) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  for (const Range& r : ranges) XXH3_64bits_update(st, file + r.begin, r.size);
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

uint64_t ExtTableBytes(const FileHeader& h) {
  return uint64_t{h.extension_count} * layout::kExtEntrySize;
}

uint64_t IndexChecksum(const uint8_t* file, const FileHeader& h) {
  return HashRanges(file, {{h.metadata_offset, h.metadata_size, ""},
                           {h.directory_offset, h.directory_size, ""},
                           {h.extension_table_offset, ExtTableBytes(h), ""}});
}

// [begin, begin+size) inside [lo, hi)?
bool Inside(uint64_t begin, uint64_t size, uint64_t lo, uint64_t hi) {
  uint64_t end;
  return !__builtin_add_overflow(begin, size, &end) && begin >= lo && end <= hi;
}

Status CheckNoOverlap(std::vector<Range> ranges) {
  ranges.erase(std::remove_if(ranges.begin(), ranges.end(), [](const Range& r) { return r.size == 0; }),
               ranges.end());
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].begin + ranges[i - 1].size)
      return Status(StatusCode::kOverlap,
                    std::string(ranges[i].what) + " overlaps " + ranges[i - 1].what,
                    ranges[i].begin);
  return Status::Ok();
}

// Reads the fixed fields (the caller has checked that 128 bytes exist).
FileHeader ReadFields(const uint8_t* p) {
  using detail::LoadLE;
  FileHeader h;
  h.version_major = LoadLE<uint16_t>(p + layout::kOffVersionMajor);
  h.version_minor = LoadLE<uint16_t>(p + layout::kOffVersionMinor);
  h.header_size = LoadLE<uint32_t>(p + layout::kOffHeaderSize);
  h.required_flags = LoadLE<uint32_t>(p + layout::kOffRequiredFlags);
  h.optional_flags = LoadLE<uint32_t>(p + layout::kOffOptionalFlags);
  h.alignment = LoadLE<uint32_t>(p + layout::kOffAlignment);
  h.file_size = LoadLE<uint64_t>(p + layout::kOffFileSize);
  h.metadata_offset = LoadLE<uint64_t>(p + layout::kOffMetadataOffset);
  h.metadata_size = LoadLE<uint64_t>(p + layout::kOffMetadataSize);
  h.directory_offset = LoadLE<uint64_t>(p + layout::kOffDirectoryOffset);
  h.directory_size = LoadLE<uint64_t>(p + layout::kOffDirectorySize);
  h.data_offset = LoadLE<uint64_t>(p + layout::kOffDataOffset);
  h.data_size = LoadLE<uint64_t>(p + layout::kOffDataSize);
  h.extension_table_offset = LoadLE<uint64_t>(p + layout::kOffExtTableOffset);
  h.extension_count = LoadLE<uint32_t>(p + layout::kOffExtCount);
  h.index_checksum = LoadLE<uint64_t>(p + layout::kOffIndexChecksum);
  h.header_checksum = LoadLE<uint64_t>(p + layout::kOffHeaderChecksum);
  return h;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Status ResealChecksums(std::span<uint8_t> file) {
  if (file.size() < layout::kHeaderSize)
    return Status(StatusCode::kTruncated, "file shorter than the 128-byte header", file.size());
  FileHeader h = ReadFields(file.data());
  if (h.header_size < layout::kHeaderSize || h.header_size > file.size())
    return Status(StatusCode::kOutOfBounds, "header_size outside the file", layout::kOffHeaderSize);
  for (const Range& r : {Range{h.metadata_offset, h.metadata_size, "metadata section"},
                         Range{h.directory_offset, h.directory_size, "directory"},
                         Range{h.extension_table_offset, ExtTableBytes(h), "extension table"}})
    if (!Inside(r.begin, r.size, 0, file.size()))
      return Status(StatusCode::kOutOfBounds, std::string(r.what) + " outside the file", r.begin);
  detail::StoreLE<uint64_t>(file.data() + layout::kOffIndexChecksum, IndexChecksum(file.data(), h));
  detail::StoreLE<uint64_t>(file.data() + layout::kOffHeaderChecksum,
                            ComputeHeaderChecksum(file.subspan(0, h.header_size)));
  return Status::Ok();
}

namespace detail {

std::vector<uint8_t> EncodeHeader(const FileHeader& h) {
  std::vector<uint8_t> out(layout::kHeaderSize, 0);
  uint8_t* p = out.data();
  std::memcpy(p + layout::kOffMagic, layout::kMagic, 4);
  StoreLE<uint16_t>(p + layout::kOffVersionMajor, h.version_major);
  StoreLE<uint16_t>(p + layout::kOffVersionMinor, h.version_minor);
  StoreLE<uint32_t>(p + layout::kOffByteOrder, layout::kByteOrderMark);
  StoreLE<uint32_t>(p + layout::kOffHeaderSize, layout::kHeaderSize);
  StoreLE<uint32_t>(p + layout::kOffRequiredFlags, h.required_flags);
  StoreLE<uint32_t>(p + layout::kOffOptionalFlags, h.optional_flags);
  StoreLE<uint32_t>(p + layout::kOffAlignment, h.alignment);
  StoreLE<uint64_t>(p + layout::kOffFileSize, h.file_size);
  StoreLE<uint64_t>(p + layout::kOffMetadataOffset, h.metadata_offset);
  StoreLE<uint64_t>(p + layout::kOffMetadataSize, h.metadata_size);
  StoreLE<uint64_t>(p + layout::kOffDirectoryOffset, h.directory_offset);
  StoreLE<uint64_t>(p + layout::kOffDirectorySize, h.directory_size);
  StoreLE<uint64_t>(p + layout::kOffDataOffset, h.data_offset);
  StoreLE<uint64_t>(p + layout::kOffDataSize, h.data_size);
  StoreLE<uint64_t>(p + layout::kOffExtTableOffset, h.extension_table_offset);
  StoreLE<uint32_t>(p + layout::kOffExtCount, h.extension_count);
  StoreLE<uint64_t>(p + layout::kOffIndexChecksum, h.index_checksum);
  StoreLE<uint64_t>(p + layout::kOffHeaderChecksum, ComputeHeaderChecksum(out));
  return out;
}

Result<ParsedHeader> ParseHeader(std::span<const uint8_t> file, const OpenOptions& opts) {
  const uint8_t* p = file.data();
  const uint64_t n = file.size();
  // 1-2: magic, fixed header present.
  if (n < 4) return Status(StatusCode::kTruncated, "file shorter than the 4-byte magic", n);
  if (std::memcmp(p, layout::kMagic, 4) != 0)
    return Status(StatusCode::kBadMagic, "magic is not \"SSMQ\"", 0);
  if (n < layout::kHeaderSize)
    return Status(StatusCode::kTruncated,
                  "file of " + std::to_string(n) + " bytes is shorter than the 128-byte header", n);
  // 3-4: byte order, version.
  const uint32_t bom = LoadLE<uint32_t>(p + layout::kOffByteOrder);
  if (bom != layout::kByteOrderMark)
    return Status(StatusCode::kBadByteOrder,
                  "byte_order_mark is 0x" + Hex(bom).substr(8) + ", expected 0x0a0b0c0d (little-endian)",
                  layout::kOffByteOrder);
  ParsedHeader out;
  FileHeader& h = out.h;
  h = ReadFields(p);
  if (h.version_major == 0 || h.version_major > kFormatVersionMajor)
    return Status(StatusCode::kUnsupportedVersion,
                  "format version " + std::to_string(h.version_major) + "." +
                      std::to_string(h.version_minor) + " is not supported (this reader: 1.x)",
                  layout::kOffVersionMajor);
  if (h.version_minor > kFormatVersionMinor && !opts.allow_newer_minor)
    return Status(StatusCode::kUnsupportedVersion,
                  "newer minor version 1." + std::to_string(h.version_minor) +
                      " and allow_newer_minor is off", layout::kOffVersionMinor);
  // 5: header size.
  if (h.header_size < layout::kHeaderSize || h.header_size > layout::kMaxHeaderSize ||
      h.header_size % 8 != 0)
    return Status(StatusCode::kBadHeader,
                  "header_size " + std::to_string(h.header_size) +
                      " is not a multiple of 8 in [128, 4096]", layout::kOffHeaderSize);
  if (n < h.header_size)
    return Status(StatusCode::kTruncated, "file ends inside the header", n);
  // 6: header checksum (everything below is covered by it).
  const uint64_t want = ComputeHeaderChecksum(file.subspan(0, h.header_size));
  if (want != h.header_checksum)
    return Status(StatusCode::kChecksumMismatch,
                  "header checksum " + Hex(h.header_checksum) + " != computed " + Hex(want),
                  layout::kOffHeaderChecksum);
  // 7: flags, reserved fields, alignment.
  if ((h.required_flags & ~layout::kKnownRequiredFlags) != 0)
    return Status(StatusCode::kBadHeader,
                  "unknown required flag bits 0x" + Hex(h.required_flags & ~layout::kKnownRequiredFlags).substr(8),
                  layout::kOffRequiredFlags);
  if (LoadLE<uint32_t>(p + layout::kOffReserved0) != 0)
    return Status(StatusCode::kBadHeader, "reserved0 is not zero", layout::kOffReserved0);
  if (LoadLE<uint32_t>(p + layout::kOffReserved1) != 0)
    return Status(StatusCode::kBadHeader, "reserved1 is not zero", layout::kOffReserved1);
  if (LoadLE<uint64_t>(p + layout::kOffReserved2) != 0)
    return Status(StatusCode::kBadHeader, "reserved2 is not zero", layout::kOffReserved2);
  if (h.alignment < layout::kMinAlignment || h.alignment > layout::kMaxAlignment ||
      (h.alignment & (h.alignment - 1)) != 0)
    return Status(StatusCode::kBadHeader,
                  "alignment " + std::to_string(h.alignment) + " is not a power of two in [32, 65536]",
                  layout::kOffAlignment);
  // 8: file size.
  if (n < h.file_size)
    return Status(StatusCode::kTruncated,
                  "file has " + std::to_string(n) + " bytes, header says " + std::to_string(h.file_size), n);
  if (n > h.file_size)
    return Status(StatusCode::kBadHeader,
                  "file has " + std::to_string(n) + " bytes, more than file_size " + std::to_string(h.file_size),
                  layout::kOffFileSize);
  // 9: section ranges.
  if (!Inside(h.metadata_offset, h.metadata_size, h.header_size, n))
    return Status(StatusCode::kOutOfBounds, "metadata section outside the file", layout::kOffMetadataOffset);
  if (!Inside(h.directory_offset, h.directory_size, h.header_size, n))
    return Status(StatusCode::kOutOfBounds, "tensor directory outside the file", layout::kOffDirectoryOffset);
  if (h.data_offset % h.alignment != 0)
    return Status(StatusCode::kMisaligned,
                  "data_offset " + std::to_string(h.data_offset) + " is not aligned to " + std::to_string(h.alignment),
                  layout::kOffDataOffset);
  if (!Inside(h.data_offset, h.data_size, h.header_size, n))
    return Status(StatusCode::kOutOfBounds, "data section outside the file", layout::kOffDataOffset);
  if (h.extension_count > layout::kMaxExtCount)
    return Status(StatusCode::kLimitExceeded,
                  "extension_count " + std::to_string(h.extension_count) + " exceeds 1024", layout::kOffExtCount);
  if (h.extension_count == 0 && h.extension_table_offset != 0)
    return Status(StatusCode::kBadHeader, "extension_table_offset set with extension_count 0",
                  layout::kOffExtTableOffset);
  if (h.extension_count != 0 && !Inside(h.extension_table_offset, ExtTableBytes(h), h.header_size, n))
    return Status(StatusCode::kOutOfBounds, "extension table outside the file", layout::kOffExtTableOffset);
  std::vector<Range> ranges = {{h.metadata_offset, h.metadata_size, "metadata section"},
                               {h.directory_offset, h.directory_size, "tensor directory"},
                               {h.data_offset, h.data_size, "data section"},
                               {h.extension_table_offset, ExtTableBytes(h), "extension table"}};
  SSMQ_RETURN_IF_ERROR(CheckNoOverlap(ranges));
  // 10: index checksum.
  const uint64_t want_index = IndexChecksum(p, h);
  if (want_index != h.index_checksum)
    return Status(StatusCode::kChecksumMismatch,
                  "index checksum (metadata + directory) " + Hex(h.index_checksum) +
                      " != computed " + Hex(want_index), layout::kOffIndexChecksum);
  // 11: extension sections: in the file, disjoint; unknown required -> reject.
  for (uint32_t i = 0; i < h.extension_count; ++i) {
    const uint64_t at = h.extension_table_offset + i * layout::kExtEntrySize;
    ExtensionSection e;
    e.kind = LoadLE<uint32_t>(p + at);
    e.flags = LoadLE<uint32_t>(p + at + 4);
    e.offset = LoadLE<uint64_t>(p + at + 8);
    e.size = LoadLE<uint64_t>(p + at + 16);
    if (!Inside(e.offset, e.size, h.header_size, n))
      return Status(StatusCode::kOutOfBounds,
                    "extension section " + std::to_string(i) + " (kind " + std::to_string(e.kind) +
                        ") outside the file", at);
    if (e.flags & layout::kExtFlagRequired)
      return Status(StatusCode::kUnsupported,
                    "extension section " + std::to_string(i) + " of unknown kind " +
                        std::to_string(e.kind) + " is marked required", at);
    ranges.push_back({e.offset, e.size, "extension section"});
    out.extensions.push_back(e);
  }
  SSMQ_RETURN_IF_ERROR(CheckNoOverlap(ranges));
  return out;
}

}  // namespace detail
}  // namespace ssmq
