// Encoding of the metadata section (spec/format.md "Metadata section").
// Internal to format/.
#pragma once

#include <cstdint>
#include <vector>

#include "format/metadata.h"
#include "format/status.h"

namespace ssmq::detail {

// kInvalidArgument when a key breaks the naming rule or a value does not fit
// its declared type (e.g. U8 holding 300, string not UTF-8).
Status CheckMetadataForWrite(const Metadata& md);
// Appends the section bytes (u64 count, then the entries). Call Check first.
void EncodeMetadata(const Metadata& md, std::vector<uint8_t>& out);
// Parses the section [begin, begin+size) of `file`, consuming it exactly.
Result<Metadata> DecodeMetadata(const uint8_t* file, uint64_t begin, uint64_t size);

}  // namespace ssmq::detail
