#include "inspect/tensor_table.h"

#include "inspect/labels.h"
#include "inspect/text_format.h"

namespace ssmq::inspect {

const char* GranularityName(ScaleGranularity g) {
  switch (g) {
    case ScaleGranularity::kNone: return "none";
    case ScaleGranularity::kPerTensor: return "per_tensor";
    case ScaleGranularity::kPerChannel: return "per_channel";
    case ScaleGranularity::kPerGroup: return "per_group";
  }
  return "unknown";
}

const char* CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone: return "none";
    case Compression::kZstd: return "zstd";
  }
  return "unknown";
}

std::vector<TensorRow> BuildTensorTable(const SsmqFile& file) {
  TensorLabeler labeler(file.metadata());
  std::vector<TensorRow> rows;
  rows.reserve(file.tensors().size());
  for (const TensorInfo& t : file.tensors()) {
    TensorRow r;
    r.name = t.name;
    r.type = std::string(TensorTypeName(t.type));
    r.shape = t.shape;
    r.granularity = GranularityName(t.quant.granularity);
    r.group_size = t.quant.granularity == ScaleGranularity::kPerGroup ? t.quant.group_size : 0;
    r.has_zero_point = t.quant.has_zero_point;
    r.offset = t.offset;
    r.nbytes = t.size;
    r.stored_size = t.stored_size;
    r.checksum = t.checksum;
    r.compression = CompressionName(t.compression);
    const TensorLabel label = labeler.Label(t.name);
    r.role = label.role;
    r.layer = label.layer;
    rows.push_back(std::move(r));
  }
  return rows;
}

std::string RenderTensorTableText(const std::vector<TensorRow>& rows) {
  using A = TextTable::Align;
  TextTable t;
  t.AddColumn("name");
  t.AddColumn("type");
  t.AddColumn("shape");
  t.AddColumn("quant");
  t.AddColumn("group", A::kRight);
  t.AddColumn("bytes", A::kRight);
  t.AddColumn("stored", A::kRight);
  t.AddColumn("offset", A::kRight);
  t.AddColumn("checksum");
  t.AddColumn("comp");
  t.AddColumn("role");
  t.AddColumn("layer", A::kRight);
  for (const TensorRow& r : rows) {
    std::string quant = r.granularity == "none" ? "-" : r.granularity;
    if (r.has_zero_point) quant += "+zero";
    t.AddRow({r.name, r.type, FormatShape(r.shape), quant,
              r.group_size ? std::to_string(r.group_size) : "-", std::to_string(r.nbytes),
              std::to_string(r.stored_size), std::to_string(r.offset), FormatHex64(r.checksum),
              r.compression, r.role, r.layer < 0 ? "-" : std::to_string(r.layer)});
  }
  return t.Render();
}

nlohmann::ordered_json TensorTableToJson(const std::vector<TensorRow>& rows) {
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const TensorRow& r : rows) {
    nlohmann::ordered_json o;
    o["name"] = r.name;
    o["type"] = r.type;
    o["shape"] = r.shape;
    o["offset"] = r.offset;
    o["nbytes"] = r.nbytes;
    o["stored_size"] = r.stored_size;
    o["granularity"] = r.granularity;
    o["group_size"] = r.group_size;
    o["has_zero_point"] = r.has_zero_point;
    o["checksum"] = FormatHex64(r.checksum);
    o["compression"] = r.compression;
    o["role"] = r.role;
    o["layer"] = r.layer;
    arr.push_back(std::move(o));
  }
  return arr;
}

}  // namespace ssmq::inspect
