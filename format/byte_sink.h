// Where the writer puts bytes: a file (positioned writes) or a vector.
// Internal to format/.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "format/status.h"

namespace ssmq::detail {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status WriteAt(uint64_t offset, std::span<const uint8_t> bytes) = 0;
};

class VectorSink : public ByteSink {
 public:
  Status WriteAt(uint64_t offset, std::span<const uint8_t> bytes) override;
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Writes "<path>.tmp.<pid>"; Commit() fsyncs and renames it onto path.
// Destroying an uncommitted sink removes the temp file.
class AtomicFileSink : public ByteSink {
 public:
  ~AtomicFileSink() override;
  Status Open(const std::string& path);
  Status WriteAt(uint64_t offset, std::span<const uint8_t> bytes) override;
  Status Commit();

 private:
  std::string path_, tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace ssmq::detail
