// SsmqFile: opens a .ssmq file (mmap or caller buffer), validates every
// structure before use, and hands out zero-copy tensor views.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <xxhash.h>
#include <zstd.h>

#include "format/directory_codec.h"
#include "format/header_codec.h"
#include "format/metadata_codec.h"
#include "format/ssmq_file.h"
#include "format/tensor_checks.h"

namespace ssmq {

struct SsmqFile::Impl {
  std::span<const uint8_t> bytes;
  void* mapping = nullptr;  // owned when opened by OpenMmap
  size_t mapping_size = 0;
  OpenOptions opts;
  FileHeader header;
  std::vector<ExtensionSection> extensions;
  Metadata metadata;
  std::vector<TensorInfo> tensors;
  std::unordered_map<std::string_view, size_t> by_name;  // views into tensors[i].name

  mutable std::mutex cache_mutex;
  // Decompressed zstd tensors, by name; node-based, so spans stay valid.
  mutable std::unordered_map<std::string, std::vector<uint8_t>> decompressed;

  ~Impl() {
    if (mapping) munmap(mapping, mapping_size);
  }
};

namespace {

Status ChecksumError(const TensorInfo& t, uint64_t computed) {
  char buf[96];
  std::snprintf(buf, sizeof buf, " (stored %016llx, computed %016llx)",
                static_cast<unsigned long long>(t.checksum),
                static_cast<unsigned long long>(computed));
  return Status(StatusCode::kChecksumMismatch,
                "tensor '" + t.name + "': data checksum mismatch" + buf, t.offset);
}

Result<std::vector<uint8_t>> Decompress(const TensorInfo& t, std::span<const uint8_t> stored) {
  // The frame must declare exactly the logical size before anything is allocated.
  const unsigned long long declared = ZSTD_getFrameContentSize(stored.data(), stored.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN)
    return Status(StatusCode::kCompression,
                  "tensor '" + t.name + "': not a zstd frame with a declared content size",
                  t.offset);
  if (declared != t.size)
    return Status(StatusCode::kCompression,
                  "tensor '" + t.name + "': zstd frame declares " + std::to_string(declared) +
                      " bytes, directory says " + std::to_string(t.size), t.offset);
  std::vector<uint8_t> out(t.size);
  const size_t got = ZSTD_decompress(out.data(), out.size(), stored.data(), stored.size());
  if (ZSTD_isError(got))
    return Status(StatusCode::kCompression,
                  "tensor '" + t.name + "': zstd: " + ZSTD_getErrorName(got), t.offset);
  if (got != t.size)
    return Status(StatusCode::kCompression,
                  "tensor '" + t.name + "': decompressed " + std::to_string(got) + " bytes, expected " +
                      std::to_string(t.size), t.offset);
  return out;
}

}  // namespace

SsmqFile::SsmqFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SsmqFile::~SsmqFile() = default;

namespace {

// Parses and validates `impl->bytes`; fills the rest of impl.
Status Load(SsmqFile::Impl& impl) {
  SSMQ_ASSIGN_OR_RETURN(detail::ParsedHeader ph, detail::ParseHeader(impl.bytes, impl.opts));
  impl.header = ph.h;
  impl.extensions = std::move(ph.extensions);
  const uint8_t* p = impl.bytes.data();
  SSMQ_ASSIGN_OR_RETURN(impl.metadata,
                        detail::DecodeMetadata(p, impl.header.metadata_offset, impl.header.metadata_size));
  detail::DataSection data{impl.header.data_offset, impl.header.data_size, impl.header.alignment};
  SSMQ_ASSIGN_OR_RETURN(impl.tensors, detail::DecodeDirectory(p, impl.header.directory_offset,
                                                              impl.header.directory_size, data));
  impl.by_name.reserve(impl.tensors.size());
  for (size_t i = 0; i < impl.tensors.size(); ++i) impl.by_name.emplace(impl.tensors[i].name, i);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<SsmqFile>> SsmqFile::OpenBuffer(std::span<const uint8_t> bytes,
                                                      const OpenOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->bytes = bytes;
  impl->opts = opts;
  SSMQ_RETURN_IF_ERROR(Load(*impl));
  std::unique_ptr<SsmqFile> f(new SsmqFile(std::move(impl)));
  if (opts.verify_tensor_checksums) {
    for (const auto& t : f->tensors()) {
      auto r = f->TensorData(t, /*verify=*/true);
      if (!r.ok()) return r.status();
    }
  }
  return f;
}

Result<std::unique_ptr<SsmqFile>> SsmqFile::OpenMmap(const std::string& path,
                                                    const OpenOptions& opts) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const StatusCode code = errno == ENOENT ? StatusCode::kNotFound : StatusCode::kIoError;
    return Status(code, "open '" + path + "': " + std::strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return Status(StatusCode::kIoError, "fstat '" + path + "': " + std::strerror(e));
  }
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  const size_t size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return Status(StatusCode::kIoError, "mmap '" + path + "': " + std::strerror(e));
    }
    impl->mapping = m;
    impl->mapping_size = size;
    impl->bytes = std::span<const uint8_t>(static_cast<const uint8_t*>(m), size);
  }
  ::close(fd);  // the mapping stays valid
  Status st_load = Load(*impl);
  if (!st_load.ok()) return st_load.WithContext(path);
  std::unique_ptr<SsmqFile> f(new SsmqFile(std::move(impl)));
  if (opts.verify_tensor_checksums) {
    for (const auto& t : f->tensors()) {
      auto r = f->TensorData(t, /*verify=*/true);
      if (!r.ok()) return r.status().WithContext(path);
    }
  }
  return f;
}

const FileHeader& SsmqFile::header() const { return impl_->header; }
const Metadata& SsmqFile::metadata() const { return impl_->metadata; }
const std::vector<TensorInfo>& SsmqFile::tensors() const { return impl_->tensors; }
std::span<const uint8_t> SsmqFile::raw_bytes() const { return impl_->bytes; }
const std::vector<ExtensionSection>& SsmqFile::extensions() const { return impl_->extensions; }

const TensorInfo* SsmqFile::FindTensor(std::string_view name) const {
  auto it = impl_->by_name.find(name);
  return it == impl_->by_name.end() ? nullptr : &impl_->tensors[it->second];
}

Result<std::span<const uint8_t>> SsmqFile::TensorData(const TensorInfo& t, bool verify) const {
  // Look the tensor up by name so a TensorInfo from elsewhere cannot point
  // outside the validated ranges.
  const TensorInfo* own = FindTensor(t.name);
  if (!own)
    return Status(StatusCode::kNotFound, "tensor '" + t.name + "' is not in this file");
  const std::span<const uint8_t> stored = impl_->bytes.subspan(own->offset, own->stored_size);
  if (own->compression == Compression::kNone) {
    if (verify || impl_->opts.verify_tensor_checksums) {
      const uint64_t h = XXH3_64bits(stored.data(), stored.size());
      if (h != own->checksum) return ChecksumError(*own, h);
    }
    return stored;
  }
  std::lock_guard<std::mutex> lock(impl_->cache_mutex);
  auto it = impl_->decompressed.find(own->name);
  if (it != impl_->decompressed.end()) return std::span<const uint8_t>(it->second);
  SSMQ_ASSIGN_OR_RETURN(std::vector<uint8_t> plain, Decompress(*own, stored));
  // Decompressed bytes are always checked: a damaged stream may still decode.
  const uint64_t h = XXH3_64bits(plain.data(), plain.size());
  if (h != own->checksum) return ChecksumError(*own, h);
  auto [pos, inserted] = impl_->decompressed.emplace(own->name, std::move(plain));
  (void)inserted;
  return std::span<const uint8_t>(pos->second);
}

Result<std::vector<float>> SsmqFile::ReadAsF32(const TensorInfo& t) const {
  const TensorInfo* own = FindTensor(t.name);
  if (!own) return Status(StatusCode::kNotFound, "tensor '" + t.name + "' is not in this file");
  SSMQ_ASSIGN_OR_RETURN(std::span<const uint8_t> bytes, TensorData(*own));
  const uint64_t n = own->numel();
  std::vector<float> out(n);
  auto load_all = [&](auto tag) {
    using T = decltype(tag);
    for (uint64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, bytes.data() + i * sizeof(T), sizeof(T));
      out[i] = static_cast<float>(v);
    }
  };
  switch (own->type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16:
      SSMQ_RETURN_IF_ERROR(FloatToF32(own->type, bytes, out));
      return out;
    case TensorType::kI8: load_all(int8_t{}); return out;
    case TensorType::kU8: load_all(uint8_t{}); return out;
    case TensorType::kI32: load_all(int32_t{}); return out;
    case TensorType::kI64: load_all(int64_t{}); return out;
    case TensorType::kQ8:
    case TensorType::kQ4: break;
    default:
      return Status(StatusCode::kUnknownType, "tensor '" + own->name + "': unknown type");
  }
  // Quantized: companions exist with the right type and count (checked at open).
  const TensorInfo* scale_info = FindTensor(own->name + ".scale");
  SSMQ_ASSIGN_OR_RETURN(std::span<const uint8_t> scale_bytes, TensorData(*scale_info));
  std::vector<float> scales(scale_info->numel());
  if (!scales.empty()) std::memcpy(scales.data(), scale_bytes.data(), scales.size() * 4);
  uint64_t rows, cols;
  detail::RowsCols(own->shape, &rows, &cols);
  Status st;
  if (own->type == TensorType::kQ8) {
    st = DequantizeQ8(bytes, scales, rows, cols, own->quant, out);
  } else {
    std::span<const uint8_t> zeros;
    if (own->quant.has_zero_point) {
      SSMQ_ASSIGN_OR_RETURN(zeros, TensorData(*FindTensor(own->name + ".zero")));
    }
    st = DequantizeQ4(bytes, scales, zeros, rows, cols, own->quant, out);
  }
  if (!st.ok()) return st.WithContext("tensor '" + own->name + "'");
  return out;
}

std::vector<Status> SsmqFile::ValidateAll() const {
  std::vector<Status> problems;
  for (const auto& t : impl_->tensors) {
    auto r = TensorData(t, /*verify=*/true);
    if (!r.ok()) problems.push_back(r.status());
  }
  return problems;
}

}  // namespace ssmq
