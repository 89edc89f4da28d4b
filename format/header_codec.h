// The fixed header and the extension-section table (spec/format.md
// "Header", "Extension sections"), and the order in which a reader checks
// them. Internal to format/.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "format/ssmq_file.h"

namespace ssmq::detail {

struct ParsedHeader {
  FileHeader h;
  std::vector<ExtensionSection> extensions;
};

// Checks everything up to and including the index checksum and the
// extension table (steps 1-11 of the spec's "Reader validation order");
// metadata and directory contents are parsed afterwards by their codecs.
Result<ParsedHeader> ParseHeader(std::span<const uint8_t> file, const OpenOptions& opts);

// The 128 bytes of a v1.0 header for these fields (checksums included:
// index_checksum is taken from h, header_checksum computed).
std::vector<uint8_t> EncodeHeader(const FileHeader& h);

}  // namespace ssmq::detail
