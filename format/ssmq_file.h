// Reading and writing .ssmq files (spec/format.md). This is the only code
// that knows the bytes. It knows nothing about Mamba.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/metadata.h"
#include "format/quant.h"
#include "format/status.h"
#include "format/tensor_types.h"

namespace ssmq {

inline constexpr uint16_t kFormatVersionMajor = 1;
inline constexpr uint16_t kFormatVersionMinor = 0;
inline constexpr uint32_t kDefaultAlignment = 64;
inline constexpr uint32_t kMaxRank = 8;

enum class Compression : uint8_t { kNone = 0, kZstd = 1 };

// One directory entry, as read from (or to be written to) a file.
struct TensorInfo {
  std::string name;
  TensorType type = TensorType::kF32;
  std::vector<int64_t> shape;        // PyTorch order (outermost first)
  QuantInfo quant;                   // granularity/group size for Q8/Q4
  Compression compression = Compression::kNone;
  uint64_t offset = 0;               // of the stored bytes, absolute in the file
  uint64_t stored_size = 0;          // bytes in the file (compressed size if compressed)
  uint64_t size = 0;                 // logical (uncompressed) bytes = TensorBytes(type, numel)
  uint64_t checksum = 0;             // XXH3-64 of the logical (uncompressed) bytes
  uint64_t entry_offset = 0;         // where this entry sits in the file (for error messages)

  uint64_t numel() const;            // product of shape (1 for rank 0)
};

struct FileHeader {
  uint16_t version_major = 0;
  uint16_t version_minor = 0;
  uint32_t alignment = 0;
  uint64_t file_size = 0;
  // Absolute offsets / sizes of the sections (for inspect).
  uint64_t metadata_offset = 0, metadata_size = 0;
  uint64_t directory_offset = 0, directory_size = 0;
  uint64_t data_offset = 0, data_size = 0;
  uint64_t header_checksum = 0;
  // (added by format owner) the remaining v1 header fields, for inspect.
  uint32_t header_size = 0;
  uint32_t required_flags = 0, optional_flags = 0;
  uint64_t index_checksum = 0;  // XXH3-64 of metadata ++ directory ++ extension table
  uint64_t extension_table_offset = 0;
  uint32_t extension_count = 0;
};

// (added by format owner) One entry of the extension-section table that newer
// minor versions may add; v1.0 readers skip unknown optional ones.
struct ExtensionSection {
  uint32_t kind = 0;
  uint32_t flags = 0;  // bit 0: required
  uint64_t offset = 0, size = 0;  // absolute
};

struct OpenOptions {
  bool verify_tensor_checksums = false;  // header/directory checksum is always verified
  bool allow_newer_minor = true;
};

// A validated, opened file. Everything is checked in Open*(): after a
// successful open every TensorInfo range is inside the file, aligned and
// non-overlapping, names and keys are unique, types known.
class SsmqFile {
 public:
  static Result<std::unique_ptr<SsmqFile>> OpenMmap(const std::string& path,
                                                    const OpenOptions& opts = {});
  // The buffer must outlive the SsmqFile (zero-copy views point into it).
  static Result<std::unique_ptr<SsmqFile>> OpenBuffer(std::span<const uint8_t> bytes,
                                                       const OpenOptions& opts = {});
  ~SsmqFile();

  const FileHeader& header() const;
  const Metadata& metadata() const;
  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* FindTensor(std::string_view name) const;

  // Logical bytes of a tensor: a zero-copy view into the mapping when
  // uncompressed; decompressed once (and cached) when zstd-compressed.
  // Verifies the checksum when opts.verify_tensor_checksums or verify is set.
  Result<std::span<const uint8_t>> TensorData(const TensorInfo& t, bool verify = false) const;

  // Dequantizes/converts any tensor to f32 (uses "<name>.scale"/".zero" for Q8/Q4).
  Result<std::vector<float>> ReadAsF32(const TensorInfo& t) const;

  // Every problem found (checksums of all tensors, structure); empty = intact.
  std::vector<Status> ValidateAll() const;

  std::span<const uint8_t> raw_bytes() const;  // the whole file
  // (added by format owner) extension sections found (all skipped in v1.0).
  const std::vector<ExtensionSection>& extensions() const;

  struct Impl;
 private:
  explicit SsmqFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes a file. Deterministic: the same calls in the same order give a
// byte-identical file. Tensors appear in the file in the order added.
class SsmqWriter {
 public:
  explicit SsmqWriter(uint32_t alignment = kDefaultAlignment);
  ~SsmqWriter();
  SsmqWriter(SsmqWriter&&) noexcept;             // (added by format owner)
  SsmqWriter& operator=(SsmqWriter&&) noexcept;

  Metadata& metadata();

  // Copies nothing: `data` must stay valid until Finish(). Checks name
  // uniqueness, rank, that data.size() == TensorBytes(type, numel).
  Status AddTensor(TensorInfo info, std::span<const uint8_t> data);
  // Same, but the writer keeps its own copy.
  Status AddTensorCopy(TensorInfo info, std::vector<uint8_t> data);

  // Atomic: writes "<path>.tmp.<pid>", fsyncs, renames onto path. On any
  // failure the temp file is removed and `path` is untouched.
  // progress(bytes_done, bytes_total) is called now and then (may be empty).
  Status WriteFile(const std::string& path,
                   const std::function<void(uint64_t, uint64_t)>& progress = {}) const;
  // The same bytes, in memory (tests, C API).
  Result<std::vector<uint8_t>> WriteBuffer() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ssmq
