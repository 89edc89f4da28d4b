// `ssmq inspect FILE --validate`: every checksum and structural rule.
// Works on damaged files: when the file cannot even be opened (bad header,
// directory checksum, truncation) the open's error is the one problem.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/ssmq_file.h"

namespace ssmq::inspect {

struct Problem {
  std::string code;         // StatusCodeName, e.g. "checksum mismatch"
  uint64_t offset = Status::kNoOffset;  // byte offset in the file, when known
  std::string tensor;       // the tensor concerned ("" when none)
  std::string message;
};

struct ValidationReport {
  std::string file_label;
  bool opened = false;      // the header/metadata/directory passed the open checks
  uint64_t tensors_checked = 0;
  std::vector<Problem> problems;
  bool intact() const { return opened && problems.empty(); }
};

ValidationReport ValidateFile(const std::string& path, const std::string& file_label);
ValidationReport ValidateBuffer(std::span<const uint8_t> bytes, const std::string& file_label);
// The checks after a successful open (tensor checksums, zero padding,
// architecture tensor set and shapes, permutations).
void ValidateOpenedFile(const SsmqFile& file, ValidationReport& report);

std::string RenderValidationText(const ValidationReport& r);
nlohmann::ordered_json ValidationToJson(const ValidationReport& r);

}  // namespace ssmq::inspect
