// Encoding of the tensor directory (spec/format.md "Tensor directory").
// Internal to format/.
#pragma once

#include <cstdint>
#include <vector>

#include "format/ssmq_file.h"

namespace ssmq::detail {

// Encoded size of one entry (depends only on the name and rank).
uint64_t DirectoryEntrySize(const TensorInfo& t);
// Appends the section: u64 count, then one entry per tensor. t.offset is
// absolute; the file stores it relative to data_offset.
void EncodeDirectory(const std::vector<TensorInfo>& tensors, uint64_t data_offset,
                     std::vector<uint8_t>& out);

struct DataSection {
  uint64_t offset = 0, size = 0;  // absolute
  uint32_t alignment = 0;
};
// Parses and validates every entry and the set (unique names, ranges in the
// data section, alignment, no overlap, scale/zero companions).
Result<std::vector<TensorInfo>> DecodeDirectory(const uint8_t* file, uint64_t begin,
                                                uint64_t size, const DataSection& data);

}  // namespace ssmq::detail
