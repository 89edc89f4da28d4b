// Writes GGUF v3 files the way llama.cpp's writers lay them out: header,
// key/values in insertion order, tensor infos, zero padding to the alignment,
// then the tensors back to back in info order, each padded to the alignment
// (so offsets are exactly what ggml's strict reader expects).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convert/gguf_file.h"
#include "format/metadata.h"
#include "format/status.h"

namespace ssmq::gguf {

class GgufWriter {
 public:
  // Value types follow the MetaValue's type one to one (u32 -> GGUF UINT32, ...).
  void SetValue(std::string key, MetaValue value);
  void SetU32(const std::string& key, uint32_t v) { SetValue(key, MetaValue::U32(v)); }
  void SetF32(const std::string& key, float v) { SetValue(key, MetaValue::F32(v)); }
  void SetBool(const std::string& key, bool v) { SetValue(key, MetaValue::Bool(v)); }
  void SetString(const std::string& key, std::string v) { SetValue(key, MetaValue::String(std::move(v))); }

  // ne in GGUF order (ne[0] contiguous); data.size() must match type and ne.
  Status AddTensor(std::string name, std::vector<uint64_t> ne, GgmlType type, std::vector<uint8_t> data);

  Result<std::vector<uint8_t>> WriteBuffer() const;
  // Atomic: writes "<path>.tmp.<pid>" and renames it onto path.
  Status WriteFile(const std::string& path) const;

  const Metadata& metadata() const { return metadata_; }

 private:
  Metadata metadata_;
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    GgmlType type;
    std::vector<uint8_t> data;
  };
  std::vector<Tensor> tensors_;
  uint32_t alignment_ = kGgufDefaultAlignment;
};

}  // namespace ssmq::gguf
