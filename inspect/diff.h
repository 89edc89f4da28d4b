// `ssmq diff A.ssmq B.ssmq`: metadata and tensor differences. A is the
// reference: SQNR of a changed tensor is that of B's values against A's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/ssmq_file.h"
#include "inspect/values.h"

namespace ssmq::inspect {

struct MetadataChange {
  std::string key;
  std::string kind;      // "added" (only in B), "removed" (only in A), "changed"
  std::string a, b;      // display values ("" when absent)
};

struct TensorChange {
  std::string name;
  std::string kind;      // "added", "removed", "changed"
  std::string a_type, b_type;
  std::vector<int64_t> a_shape, b_shape;
  std::optional<ErrorVsReference> error;  // changed, same element count, numeric types
  std::string what;      // "type", "shape", "quant", "values", joined by ','
};

struct DiffReport {
  std::string a_label, b_label;
  std::vector<MetadataChange> metadata;
  std::vector<TensorChange> tensors;
  uint64_t same_metadata = 0;
  uint64_t same_tensors = 0;
  bool identical() const { return metadata.empty() && tensors.empty(); }
};

struct DiffOptions {
  bool compute_sqnr = true;  // reads both tensors of each changed pair
};

// Order: A's keys/tensors in file order (removed/changed), then B's additions.
Result<DiffReport> DiffFiles(const SsmqFile& a, const SsmqFile& b, const std::string& a_label,
                             const std::string& b_label, const DiffOptions& opts = {});

std::string RenderDiffText(const DiffReport& d);
nlohmann::ordered_json DiffToJson(const DiffReport& d);

}  // namespace ssmq::inspect
