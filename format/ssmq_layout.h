// The byte layout of .ssmq v1 (spec/format.md "File layout"): offsets of the
// fixed header fields, fixed sizes and hard limits. Reader, writer and tests
// use these names; the spec's byte tables give the same numbers.
#pragma once

#include <cstdint>
#include <span>

#include "format/status.h"

namespace ssmq::layout {

inline constexpr uint8_t kMagic[4] = {'S', 'S', 'M', 'Q'};
inline constexpr uint32_t kByteOrderMark = 0x0A0B0C0Du;  // stored as 0D 0C 0B 0A
inline constexpr uint32_t kHeaderSize = 128;             // v1.0 writes exactly this
inline constexpr uint32_t kMaxHeaderSize = 4096;         // newer minors may grow it

// Fixed header field offsets (all little-endian).
inline constexpr uint64_t kOffMagic = 0;             // u8[4]
inline constexpr uint64_t kOffVersionMajor = 4;      // u16
inline constexpr uint64_t kOffVersionMinor = 6;      // u16
inline constexpr uint64_t kOffByteOrder = 8;         // u32
inline constexpr uint64_t kOffHeaderSize = 12;       // u32
inline constexpr uint64_t kOffRequiredFlags = 16;    // u32
inline constexpr uint64_t kOffOptionalFlags = 20;    // u32
inline constexpr uint64_t kOffAlignment = 24;        // u32
inline constexpr uint64_t kOffReserved0 = 28;        // u32, zero
inline constexpr uint64_t kOffFileSize = 32;         // u64
inline constexpr uint64_t kOffMetadataOffset = 40;   // u64
inline constexpr uint64_t kOffMetadataSize = 48;     // u64
inline constexpr uint64_t kOffDirectoryOffset = 56;  // u64
inline constexpr uint64_t kOffDirectorySize = 64;    // u64
inline constexpr uint64_t kOffDataOffset = 72;       // u64
inline constexpr uint64_t kOffDataSize = 80;         // u64
inline constexpr uint64_t kOffExtTableOffset = 88;   // u64
inline constexpr uint64_t kOffExtCount = 96;         // u32
inline constexpr uint64_t kOffReserved1 = 100;       // u32, zero
inline constexpr uint64_t kOffReserved2 = 104;       // u64, zero
inline constexpr uint64_t kOffIndexChecksum = 112;   // u64
inline constexpr uint64_t kOffHeaderChecksum = 120;  // u64

// Flags. v1.0 defines no required flag; every set bit is unknown -> reject.
inline constexpr uint32_t kKnownRequiredFlags = 0;
inline constexpr uint32_t kExtFlagRequired = 1u;  // extension-table entry flag bit 0

inline constexpr uint64_t kExtEntrySize = 24;  // u32 kind, u32 flags, u64 offset, u64 size

inline constexpr uint32_t kMinAlignment = 32;
inline constexpr uint32_t kMaxAlignment = 65536;

// Hard limits (hostile input must not drive allocations).
inline constexpr uint64_t kMaxMetadataCount = 1ull << 20;
inline constexpr uint64_t kMaxTensorCount = 1ull << 20;
inline constexpr uint64_t kMaxExtCount = 1024;
inline constexpr uint64_t kMaxKeyLength = 255;
inline constexpr uint64_t kMaxStringLength = 256ull << 20;  // 256 MiB
inline constexpr uint64_t kMaxArrayLength = 1ull << 32;
inline constexpr uint64_t kMaxTensorNameLength = 4096;

// Smallest encodings, used to reject counts before reserving memory.
inline constexpr uint64_t kMinMetaEntryBytes = 4 + 1 + 4 + 1;  // key_len, 1-byte key, type, u8
// name_len, 1-byte name, type, rank, 4 u8 fields, group_size, offset, stored, size, xxh3
inline constexpr uint64_t kMinDirEntryBytes = 4 + 1 + 4 + 4 + 4 + 4 + 8 * 4;

}  // namespace ssmq::layout

namespace ssmq {

// XXH3-64 of the header bytes [0, header_size) with both checksum fields read as zero.
uint64_t ComputeHeaderChecksum(std::span<const uint8_t> header_bytes);

// Recomputes index_checksum and header_checksum of a file in place from its
// header's section offsets (tools and tests that patch files on purpose).
// kTruncated / kOutOfBounds when the header's ranges do not fit the buffer.
Status ResealChecksums(std::span<uint8_t> file);

}  // namespace ssmq
