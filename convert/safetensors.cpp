// safetensors reader/writer. Layout: u64 little-endian header length N, N
// bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, optional
// "__metadata__": {string: string}}, then the data buffer. Validation follows
// the reference implementation: N <= 100,000,000 and 8 + N <= file length;
// the header is UTF-8 JSON starting with '{'; sorted by offsets the tensors
// tile the buffer from 0 with no hole or overlap, each nbytes == numel *
// dtype size (overflow-checked); the last end + 8 + N == file length.
#include "convert/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

namespace ssmq {

namespace {

constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Element sizes of the byte-sized dtypes the reference knows.
struct DtypeRow {
  std::string_view name;
  uint64_t size;
};
constexpr DtypeRow kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},     {"C64", 8},
};

std::optional<uint64_t> DtypeSize(std::string_view dtype) {
  for (const DtypeRow& row : kDtypes)
    if (row.name == dtype) return row.size;
  return std::nullopt;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += len;
  }
  return true;
}

// The bytes of an opened file: a read-only mapping or an owned buffer.
class Bytes {
 public:
  Bytes() = default;
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;
  ~Bytes() {
    if (map_) munmap(map_, map_size_);
  }
  void Own(std::vector<uint8_t> v) { owned_ = std::move(v); }
  void Map(void* p, size_t n) {
    map_ = p;
    map_size_ = n;
  }
  std::span<const uint8_t> span() const {
    if (map_) return {static_cast<const uint8_t*>(map_), map_size_};
    return {owned_.data(), owned_.size()};
  }

 private:
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<uint8_t> owned_;
};

struct ParsedEntry {
  SafetensorsTensor tensor;
  uint64_t begin = 0, end = 0;
};

Status HeaderError(StatusCode code, const std::string& label, const std::string& what) {
  return Status(code, label + ": " + what, 8);
}

}  // namespace

struct SafetensorsFile::Impl {
  std::string path;
  Bytes bytes;
  std::vector<SafetensorsTensor> tensors;  // in data-offset order
  std::map<std::string, size_t> index;
  std::map<std::string, std::string> metadata;

  Status Parse();
};

Status SafetensorsFile::Impl::Parse() {
  const std::span<const uint8_t> file = bytes.span();
  const std::string& label = path;
  if (file.size() < 8)
    return Status(StatusCode::kTruncated,
                  label + ": file of " + std::to_string(file.size()) + " bytes is too small for the 8-byte header length", 0);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[static_cast<size_t>(i)];
  if (n > kMaxHeaderSize)
    return Status(StatusCode::kLimitExceeded,
                  label + ": header length " + std::to_string(n) + " exceeds the limit of 100000000", 0);
  if (n > file.size() - 8)
    return Status(StatusCode::kTruncated,
                  label + ": header length " + std::to_string(n) + " runs past the end of the " +
                      std::to_string(file.size()) + "-byte file", 0);
  const std::string_view header(reinterpret_cast<const char*>(file.data()) + 8, n);
  if (!IsValidUtf8(header)) return HeaderError(StatusCode::kParseError, label, "header is not valid UTF-8");
  if (header.empty() || header[0] != '{')
    return HeaderError(StatusCode::kParseError, label, "header does not start with '{'");

  // Duplicate top-level names are silently merged by a JSON object parser:
  // catch them in the parse callback.
  std::string duplicate;
  std::set<std::string> seen;
  nlohmann::json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t event,
                                                   nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string()) {
      std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(header.begin(), header.end(), on_event);
  } catch (const nlohmann::json::exception& e) {
    return HeaderError(StatusCode::kParseError, label, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty())
    return HeaderError(StatusCode::kDuplicateTensor, label, "tensor '" + duplicate + "' appears twice in the header");
  if (!root.is_object()) return HeaderError(StatusCode::kParseError, label, "header is not a JSON object");

  std::vector<ParsedEntry> entries;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return HeaderError(StatusCode::kParseError, label, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return HeaderError(StatusCode::kParseError, label, "__metadata__ value '" + m.key() + "' is not a string");
        metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) return HeaderError(StatusCode::kParseError, label, where + " is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string())
      return HeaderError(StatusCode::kParseError, label, where + " has no string 'dtype'");
    if (sh == v.end() || !sh->is_array())
      return HeaderError(StatusCode::kParseError, label, where + " has no array 'shape'");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      return HeaderError(StatusCode::kParseError, label, where + " needs 'data_offsets' [begin, end] of unsigned integers");
    ParsedEntry e;
    e.tensor.name = name;
    e.tensor.dtype = dt->get<std::string>();
    if (!DtypeSize(e.tensor.dtype))
      return HeaderError(StatusCode::kUnknownType, label, where + " has unknown dtype '" + e.tensor.dtype + "'");
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        return HeaderError(StatusCode::kParseError, label, where + " shape has a dimension that is not a non-negative integer");
      e.tensor.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    }
    e.begin = (*off)[0].get<uint64_t>();
    e.end = (*off)[1].get<uint64_t>();
    entries.push_back(std::move(e));
  }

  std::sort(entries.begin(), entries.end(), [](const ParsedEntry& a, const ParsedEntry& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  const uint64_t data_start = 8 + n;
  const uint64_t buffer_size = file.size() - data_start;
  uint64_t expected_begin = 0;
  for (ParsedEntry& e : entries) {
    const std::string where = "tensor '" + e.tensor.name + "'";
    const uint64_t at = data_start + std::min(e.begin, buffer_size);
    if (e.begin > expected_begin)
      return Status(StatusCode::kBadTensorInfo,
                    label + ": " + where + " begins at " + std::to_string(e.begin) + ", leaving a hole after " +
                        std::to_string(expected_begin), at);
    if (e.begin < expected_begin)
      return Status(StatusCode::kOverlap,
                    label + ": " + where + " begins at " + std::to_string(e.begin) +
                        ", overlapping the previous tensor that ends at " + std::to_string(expected_begin), at);
    if (e.end < e.begin)
      return Status(StatusCode::kBadTensorInfo,
                    label + ": " + where + " ends (" + std::to_string(e.end) + ") before it begins (" +
                        std::to_string(e.begin) + ")", at);
    uint64_t numel = 1;
    for (int64_t d : e.tensor.shape) {
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        return Status(StatusCode::kBadTensorInfo, label + ": " + where + " element count overflows", at);
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, *DtypeSize(e.tensor.dtype), &nbytes))
      return Status(StatusCode::kBadTensorInfo, label + ": " + where + " byte size overflows", at);
    if (e.end - e.begin != nbytes)
      return Status(StatusCode::kBadTensorInfo,
                    label + ": " + where + " spans " + std::to_string(e.end - e.begin) + " bytes but " +
                        e.tensor.dtype + " of " + std::to_string(numel) + " elements needs " + std::to_string(nbytes),
                    at);
    expected_begin = e.end;
  }
  if (expected_begin > buffer_size)
    return Status(StatusCode::kTruncated,
                  label + ": tensor data ends at " + std::to_string(expected_begin) + ", past the " +
                      std::to_string(buffer_size) + "-byte data buffer", file.size());
  if (expected_begin < buffer_size)
    return Status(StatusCode::kBadTensorInfo,
                  label + ": the data buffer has " + std::to_string(buffer_size - expected_begin) +
                      " bytes after the last tensor that no tensor indexes",
                  data_start + expected_begin);

  for (ParsedEntry& e : entries) {
    e.tensor.data = file.subspan(data_start + e.begin, e.end - e.begin);
    index.emplace(e.tensor.name, tensors.size());
    tensors.push_back(std::move(e.tensor));
  }
  return Status::Ok();
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SafetensorsFile::~SafetensorsFile() = default;

Result<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Status(err == ENOENT ? StatusCode::kNotFound : StatusCode::kIoError,
                  path + ": cannot open: " + std::strerror(err));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status(StatusCode::kIoError, path + ": fstat failed: " + std::strerror(err));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status(StatusCode::kIoError, path + ": mmap failed: " + std::strerror(err));
    }
    impl->bytes.Map(p, size);
  }
  ::close(fd);
  SSMQ_RETURN_IF_ERROR(impl->Parse());
  return std::shared_ptr<SafetensorsFile>(new SafetensorsFile(std::move(impl)));
}

Result<std::shared_ptr<SafetensorsFile>> SafetensorsFile::OpenBuffer(std::vector<uint8_t> bytes,
                                                                     const std::string& label) {
  auto impl = std::make_unique<Impl>();
  impl->path = label;
  impl->bytes.Own(std::move(bytes));
  SSMQ_RETURN_IF_ERROR(impl->Parse());
  return std::shared_ptr<SafetensorsFile>(new SafetensorsFile(std::move(impl)));
}

const std::vector<SafetensorsTensor>& SafetensorsFile::tensors() const { return impl_->tensors; }

const SafetensorsTensor* SafetensorsFile::Find(const std::string& name) const {
  auto it = impl_->index.find(name);
  return it == impl_->index.end() ? nullptr : &impl_->tensors[it->second];
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }
const std::string& SafetensorsFile::path() const { return impl_->path; }

// ---- writer ----

namespace {

// Header JSON for `tensors` (sizes from dtype and shape), padded so the data
// buffer starts 8-aligned; the byte size of each tensor in `sizes`.
Result<std::string> SafetensorsHeader(const std::vector<SafetensorsWriteTensor>& tensors,
                                      const std::map<std::string, std::string>& metadata,
                                      std::vector<uint64_t>& sizes) {
  // ordered_json keeps the given order, so the file is deterministic.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json md = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) md[k] = v;
    header["__metadata__"] = std::move(md);
  }
  uint64_t offset = 0;
  std::set<std::string> names;
  sizes.clear();
  for (const SafetensorsWriteTensor& t : tensors) {
    if (t.name == "__metadata__" || !names.insert(t.name).second)
      return Status(StatusCode::kDuplicateTensor, "tensor name '" + t.name + "' is reserved or repeated");
    std::optional<uint64_t> elem = DtypeSize(t.dtype);
    if (!elem) return Status(StatusCode::kUnknownType, "tensor '" + t.name + "' has unknown dtype '" + t.dtype + "'");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) return Status(StatusCode::kInvalidArgument, "tensor '" + t.name + "' has a negative dimension");
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        return Status(StatusCode::kInvalidArgument, "tensor '" + t.name + "' element count overflows");
    }
    const uint64_t bytes = numel * *elem;
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = t.dtype;
    e["shape"] = t.shape;
    e["data_offsets"] = {offset, offset + bytes};
    header[t.name] = std::move(e);
    offset += bytes;
    sizes.push_back(bytes);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data buffer starts 8-aligned
  return text;
}

}  // namespace

Status WriteSafetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  for (const SafetensorsWriteTensor& t : tensors) {
    std::optional<uint64_t> elem = DtypeSize(t.dtype);
    uint64_t numel = 1;
    bool overflow = false;
    for (int64_t d : t.shape) overflow |= d < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel);
    if (elem && !overflow && numel * *elem != t.data.size())
      return Status(StatusCode::kInvalidArgument, "tensor '" + t.name + "' has " + std::to_string(t.data.size()) +
                                                      " bytes, its dtype and shape need " +
                                                      std::to_string(numel * *elem));
  }
  return WriteSafetensorsStreamed(
      path, tensors, [&](size_t i, const SafetensorsWriteFn& write) { return write(tensors[i].data); }, metadata);
}

Status WriteSafetensorsStreamed(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                                const SafetensorsProduceFn& produce,
                                const std::map<std::string, std::string>& metadata) {
  std::vector<uint64_t> sizes;
  SSMQ_ASSIGN_OR_RETURN(std::string text, SafetensorsHeader(tensors, metadata, sizes));

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status(StatusCode::kIoError, tmp + ": cannot create: " + std::strerror(errno));
  int write_errno = 0;
  auto write_all = [fd, &write_errno](const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::write(fd, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        write_errno = errno;
        return false;
      }
      c += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  };
  auto fail = [&](Status st) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  };
  auto io_error = [&](int e) { return Status(StatusCode::kIoError, path + ": write failed: " + std::strerror(e)); };

  uint8_t len[8];
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  if (!write_all(len, 8) || !write_all(text.data(), text.size())) return fail(io_error(write_errno));
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t written = 0;
    const SafetensorsWriteFn write = [&](std::span<const uint8_t> bytes) -> Status {
      if (bytes.size() > sizes[i] - written)
        return Status(StatusCode::kInvalidArgument, "tensor '" + tensors[i].name + "': more than its " +
                                                        std::to_string(sizes[i]) + " bytes were written");
      if (!write_all(bytes.data(), bytes.size())) return io_error(write_errno);
      written += bytes.size();
      return Status::Ok();
    };
    Status st = produce(i, write);
    if (!st.ok()) return fail(st);
    if (written != sizes[i])
      return fail(Status(StatusCode::kInvalidArgument, "tensor '" + tensors[i].name + "' has " +
                                                           std::to_string(written) + " bytes, its dtype and shape need " +
                                                           std::to_string(sizes[i])));
  }
  if (::fsync(fd) != 0) return fail(io_error(errno));
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return io_error(e);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return io_error(e);
  }
  return Status::Ok();
}

}  // namespace ssmq
