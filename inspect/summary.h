// `ssmq inspect FILE`: the summary of a file. Reads only the header,
// metadata and directory (plus permutation tensors, which are small): a
// summary of a multi-GiB file touches a few pages of the mapping.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/ssmq_file.h"
#include "inspect/transforms.h"

namespace ssmq::inspect {

using KeyValues = std::vector<std::pair<std::string, std::string>>;

struct TypeBytes {
  std::string type;        // "f32", "q4", ...
  uint64_t tensors = 0;
  uint64_t elements = 0;
  uint64_t bytes = 0;      // logical bytes
  uint64_t stored_bytes = 0;
};

// Effective bits per weight of the matmul weights of one role (or "all"):
// 8 * (weight bytes + their .scale/.zero bytes) / weight elements.
struct BitsPerWeight {
  std::string role;
  uint64_t tensors = 0;
  uint64_t elements = 0;
  uint64_t bytes = 0;
  double bits = 0;
};

struct MetadataRow {
  std::string key;
  std::string type;        // "u32", "string", "array<i64>", ...
  std::string value;       // display form, truncated
};

struct FileSummary {
  std::string file_label;  // as the caller names the file (no absolute paths in goldens)
  uint64_t file_size = 0;
  std::string format_version;  // "1.0"
  uint32_t alignment = 0;
  KeyValues sections;      // "metadata" -> "offset 128, 4.2 KiB", ...

  std::string architecture;  // general.architecture ("" when absent)
  std::string name;          // general.name
  std::string source;        // general.source
  KeyValues hparams;         // "{arch}.*" keys in file order, without the prefix
  std::string hparams_error; // why the hyper-parameters could not be read ("" = fine)

  std::string scheme;        // quant.scheme ("" when absent)
  std::string recipe;        // quant.recipe
  KeyValues quantization;    // other quant.* keys + activation_sites (blk.*.act.* keys counted)
  KeyValues calibration;     // quant.calib.*

  bool has_tokenizer = false;
  uint64_t tokenizer_json_bytes = 0;
  std::string tokenizer_model;    // "BPE", ... from tokenizer.json ("" when unknown)
  int64_t tokenizer_vocab = -1;   // entries of model.vocab (+ added tokens); -1 when unknown
  KeyValues tokenizer_ids;        // bos_id / eos_id / pad_id

  uint64_t n_tensors = 0;
  uint64_t n_metadata = 0;
  uint64_t tensor_bytes = 0;      // logical bytes of all tensors
  uint64_t parameters = 0;        // elements of all non-auxiliary tensors
  std::vector<TypeBytes> bytes_by_type;  // in TensorType id order
  std::vector<BitsPerWeight> bits_per_weight;  // per role (first-seen order), then "all"

  std::vector<MetadataRow> metadata;
  TransformsReport transforms;
};

FileSummary BuildSummary(const SsmqFile& file, const std::string& file_label);

std::string RenderSummaryText(const FileSummary& s);
nlohmann::ordered_json SummaryToJson(const FileSummary& s);

// Type name of a metadata value for display ("u32", "array<string>").
std::string MetaTypeDisplay(const MetaValue& v);

}  // namespace ssmq::inspect
