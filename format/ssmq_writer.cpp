// SsmqWriter: lays out header, metadata and directory from the tensor
// descriptions up front (their sizes do not depend on the data), then streams
// the tensors one at a time into the data section, and finally writes the
// head with the offsets, sizes and checksums learned while streaming.
#include <algorithm>
#include <unordered_set>
#include <xxhash.h>
#include <zstd.h>

#include "format/byte_sink.h"
#include "format/directory_codec.h"
#include "format/header_codec.h"
#include "format/metadata_codec.h"
#include "format/ssmq_file.h"
#include "format/ssmq_layout.h"
#include "format/tensor_checks.h"

namespace ssmq {

inline constexpr int kZstdLevel = 3;

struct SsmqWriter::Impl {
  struct Pending {
    TensorInfo info;  // offset/stored_size/checksum filled while writing
    std::span<const uint8_t> data;
    std::vector<uint8_t> owned;  // AddTensorCopy's bytes (data points here)
  };
  uint32_t alignment;
  Metadata metadata;
  std::vector<Pending> tensors;
  std::unordered_set<std::string> names;

  Status Write(detail::ByteSink& sink, const std::function<void(uint64_t, uint64_t)>& progress) const;
};

SsmqWriter::SsmqWriter(uint32_t alignment) : impl_(std::make_unique<Impl>()) {
  impl_->alignment = alignment;
}
SsmqWriter::~SsmqWriter() = default;
SsmqWriter::SsmqWriter(SsmqWriter&&) noexcept = default;
SsmqWriter& SsmqWriter::operator=(SsmqWriter&&) noexcept = default;

Metadata& SsmqWriter::metadata() { return impl_->metadata; }

namespace {

Status PrepareInfo(TensorInfo& info, uint64_t data_size, const std::unordered_set<std::string>& names) {
  SSMQ_RETURN_IF_ERROR(detail::CheckTensorName(info.name, Status::kNoOffset));
  if (names.count(info.name))
    return Status(StatusCode::kDuplicateTensor, "tensor '" + info.name + "' added twice");
  if (!GetTensorTypeTraits(static_cast<uint32_t>(info.type)))
    return Status(StatusCode::kUnknownType, "tensor '" + info.name + "': unknown type");
  const uint64_t numel = info.shape.size() <= kMaxRank ? info.numel() : 0;
  info.size = TensorBytes(info.type, numel).value_or(0);
  SSMQ_RETURN_IF_ERROR(detail::CheckTensorDescription(info, Status::kNoOffset));
  if (data_size != info.size)
    return Status(StatusCode::kInvalidArgument,
                  "tensor '" + info.name + "': got " + std::to_string(data_size) +
                      " bytes, its type and shape need " + std::to_string(info.size));
  info.offset = info.stored_size = info.checksum = info.entry_offset = 0;
  return Status::Ok();
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

Status SsmqWriter::AddTensor(TensorInfo info, std::span<const uint8_t> data) {
  SSMQ_RETURN_IF_ERROR(PrepareInfo(info, data.size(), impl_->names));
  impl_->names.insert(info.name);
  impl_->tensors.push_back(Impl::Pending{std::move(info), data, {}});
  return Status::Ok();
}

Status SsmqWriter::AddTensorCopy(TensorInfo info, std::vector<uint8_t> data) {
  SSMQ_RETURN_IF_ERROR(PrepareInfo(info, data.size(), impl_->names));
  impl_->names.insert(info.name);
  impl_->tensors.push_back(Impl::Pending{std::move(info), {}, std::move(data)});
  Impl::Pending& p = impl_->tensors.back();
  p.data = p.owned;  // vector storage does not move when the Pending moves
  return Status::Ok();
}

Status SsmqWriter::Impl::Write(detail::ByteSink& sink,
                               const std::function<void(uint64_t, uint64_t)>& progress) const {
  if (alignment < layout::kMinAlignment || alignment > layout::kMaxAlignment ||
      (alignment & (alignment - 1)) != 0)
    return Status(StatusCode::kInvalidArgument,
                  "alignment " + std::to_string(alignment) + " is not a power of two in [32, 65536]");
  if (tensors.size() > layout::kMaxTensorCount)
    return Status(StatusCode::kLimitExceeded, "more than 2^20 tensors");
  SSMQ_RETURN_IF_ERROR(detail::CheckMetadataForWrite(metadata));
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  for (const auto& p : tensors) infos.push_back(p.info);
  SSMQ_RETURN_IF_ERROR(detail::CheckCompanions(infos));

  // Layout of the head: header | metadata | directory | zero padding | data.
  std::vector<uint8_t> meta_bytes;
  detail::EncodeMetadata(metadata, meta_bytes);
  uint64_t dir_size = 8;
  for (const auto& t : infos) dir_size += detail::DirectoryEntrySize(t);
  FileHeader h;
  h.version_major = kFormatVersionMajor;
  h.version_minor = kFormatVersionMinor;
  h.alignment = alignment;
  h.metadata_offset = layout::kHeaderSize;
  h.metadata_size = meta_bytes.size();
  h.directory_offset = h.metadata_offset + h.metadata_size;
  h.directory_size = dir_size;
  h.data_offset = AlignUp(h.directory_offset + h.directory_size, alignment);

  uint64_t total = 0, done = 0;
  for (const auto& t : infos) total += t.size;
  if (progress) progress(0, total);

  // Stream the tensors: padding to alignment, then stored bytes.
  const std::vector<uint8_t> zeros(alignment, 0);
  std::vector<uint8_t> compressed;
  uint64_t cursor = h.data_offset;
  for (size_t i = 0; i < tensors.size(); ++i) {
    TensorInfo& t = infos[i];
    const std::span<const uint8_t> data = tensors[i].data;
    const uint64_t start = AlignUp(cursor, alignment);
    SSMQ_RETURN_IF_ERROR(sink.WriteAt(cursor, std::span(zeros).first(start - cursor)));
    t.checksum = XXH3_64bits(data.data(), data.size());
    std::span<const uint8_t> stored = data;
    if (t.compression == Compression::kZstd && !data.empty()) {
      compressed.resize(ZSTD_compressBound(data.size()));
      const size_t n = ZSTD_compress(compressed.data(), compressed.size(), data.data(),
                                     data.size(), kZstdLevel);
      if (ZSTD_isError(n))
        return Status(StatusCode::kCompression,
                      "tensor '" + t.name + "': zstd: " + ZSTD_getErrorName(n));
      if (n < data.size()) stored = std::span<const uint8_t>(compressed.data(), n);
    }
    // Only kept compressed when that saves space.
    if (stored.data() == data.data()) t.compression = Compression::kNone;
    t.offset = start;
    t.stored_size = stored.size();
    SSMQ_RETURN_IF_ERROR(sink.WriteAt(start, stored));
    cursor = start + stored.size();
    done += t.size;
    if (progress) progress(done, total);
  }
  h.data_size = cursor - h.data_offset;
  h.file_size = cursor;

  // The head: metadata, directory, index checksum, header.
  std::vector<uint8_t> head;
  head.reserve(h.data_offset);
  head.resize(layout::kHeaderSize, 0);
  head.insert(head.end(), meta_bytes.begin(), meta_bytes.end());
  detail::EncodeDirectory(infos, h.data_offset, head);
  if (head.size() != h.directory_offset + h.directory_size)
    return Status(StatusCode::kInvalidArgument, "internal: directory size mismatch");
  h.index_checksum = XXH3_64bits(head.data() + layout::kHeaderSize, head.size() - layout::kHeaderSize);
  head.resize(h.data_offset, 0);
  const std::vector<uint8_t> header = detail::EncodeHeader(h);
  std::copy(header.begin(), header.end(), head.begin());
  return sink.WriteAt(0, head);
}

Status SsmqWriter::WriteFile(const std::string& path,
                             const std::function<void(uint64_t, uint64_t)>& progress) const {
  detail::AtomicFileSink sink;
  SSMQ_RETURN_IF_ERROR(sink.Open(path));
  SSMQ_RETURN_IF_ERROR(impl_->Write(sink, progress));
  return sink.Commit();
}

Result<std::vector<uint8_t>> SsmqWriter::WriteBuffer() const {
  detail::VectorSink sink;
  SSMQ_RETURN_IF_ERROR(impl_->Write(sink, {}));
  return std::move(sink.bytes());
}

}  // namespace ssmq
