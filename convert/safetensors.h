// A safetensors reader that validates exactly as the reference implementation:
// header length (<= 100,000,000), JSON, dtypes, shapes, contiguous offsets
// from 0 with no holes/overlaps, buffer fully indexed. Memory-mapped.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "format/status.h"

namespace ssmq {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;             // "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  std::span<const uint8_t> data; // view into the mapping
};

class SafetensorsFile {
 public:
  static Result<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);
  static Result<std::shared_ptr<SafetensorsFile>> OpenBuffer(std::vector<uint8_t> bytes,
                                                             const std::string& label);
  ~SafetensorsFile();
  const std::vector<SafetensorsTensor>& tensors() const;
  const SafetensorsTensor* Find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const;  // "__metadata__"
  const std::string& path() const;

  struct Impl;
 private:
  explicit SafetensorsFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes a safetensors file atomically (tests, inspect --dump).
struct SafetensorsWriteTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::span<const uint8_t> data;
};
Status WriteSafetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

// The same file with each tensor's bytes produced on demand (for files larger
// than one wants to hold in memory): `produce(i, write)` is called once per
// tensor, in order, and must pass exactly that tensor's bytes to `write`, in
// as many pieces as it likes. `data` in `tensors` is ignored. Atomic as above.
using SafetensorsWriteFn = std::function<Status(std::span<const uint8_t>)>;
using SafetensorsProduceFn = std::function<Status(size_t index, const SafetensorsWriteFn& write)>;
Status WriteSafetensorsStreamed(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                                const SafetensorsProduceFn& produce,
                                const std::map<std::string, std::string>& metadata = {});

}  // namespace ssmq
