// `ssmq inspect FILE --tensors`: one row per directory entry, in file order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/ssmq_file.h"

namespace ssmq::inspect {

struct TensorRow {
  std::string name;
  std::string type;            // "f32", "q4", ...
  std::vector<int64_t> shape;
  std::string granularity;     // "none", "per_tensor", "per_channel", "per_group"
  uint32_t group_size = 0;     // 0 unless per_group
  bool has_zero_point = false;
  uint64_t offset = 0;         // absolute file offset of the stored bytes
  uint64_t nbytes = 0;         // logical bytes
  uint64_t stored_size = 0;    // bytes in the file
  uint64_t checksum = 0;       // XXH3-64 of the logical bytes
  std::string compression;     // "none", "zstd"
  std::string role;            // from the architecture table (inspect/labels.h)
  int layer = -1;
};

const char* GranularityName(ScaleGranularity g);
const char* CompressionName(Compression c);

std::vector<TensorRow> BuildTensorTable(const SsmqFile& file);

std::string RenderTensorTableText(const std::vector<TensorRow>& rows);
// An array with one object per tensor (see spec/inspect-json.md).
nlohmann::ordered_json TensorTableToJson(const std::vector<TensorRow>& rows);

}  // namespace ssmq::inspect
