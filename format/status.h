// Status and Result: errors are values. Every failure carries a code, the byte
// offset in the file where it was found (kNoOffset when none applies) and a
// message that names the field or tensor. Nothing in the libraries throws
// across its boundary or calls exit().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace ssmq {

// Stable numeric codes (also exported through the C API). Never renumber.
enum class StatusCode : uint16_t {
  kOk = 0,
  kIoError = 1,             // open/read/write/rename/mmap failed (errno text in message)
  kTruncated = 2,           // a structure runs past the end of the file/buffer
  kBadMagic = 3,            // not an .ssmq file
  kUnsupportedVersion = 4,  // newer major version (or version 0)
  kBadByteOrder = 5,        // byte-order marker is not little-endian
  kBadHeader = 6,           // header field out of range, reserved field non-zero, unknown required flag
  kChecksumMismatch = 7,    // XXH3-64 of header/directory or of a tensor does not match
  kBadMetadata = 8,         // malformed metadata entry (bad type id, bad string, bad array)
  kDuplicateKey = 9,        // metadata key appears twice
  kDuplicateTensor = 10,    // tensor name appears twice
  kBadTensorInfo = 11,      // directory entry inconsistent (rank, shape, size vs type)
  kOutOfBounds = 12,        // a range points outside the file / its section
  kOverlap = 13,            // two tensor ranges overlap
  kMisaligned = 14,         // tensor offset not aligned as the header says
  kUnknownType = 15,        // unknown tensor type id or metadata value type id
  kLimitExceeded = 16,      // a count or length exceeds a hard limit (hostile input)
  kBadShape = 17,           // a shape does not fit what the caller/architecture expects
  kInvalidArgument = 18,    // API misuse by the caller
  kNotFound = 19,           // key, tensor or file not found
  kTypeMismatch = 20,       // value has a different type than requested
  kCompression = 21,        // zstd failure or decompressed size mismatch
  kUnsupported = 22,        // valid input we do not support (config, dtype, feature)
  kBadValue = 23,           // NaN/Inf or out-of-range numeric input
  kBadConfig = 24,          // model config contradicts itself or the tensors
  kParseError = 25,         // JSON / text parse error in an input file
  kCancelled = 26,
};

// Human name of a code, e.g. "truncated".
const char* StatusCodeName(StatusCode code);

class Status {
 public:
  static constexpr uint64_t kNoOffset = UINT64_MAX;

  Status() = default;  // ok
  Status(StatusCode code, std::string message, uint64_t offset = kNoOffset)
      : code_(code), offset_(offset), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  uint64_t offset() const { return offset_; }
  bool has_offset() const { return offset_ != kNoOffset; }
  const std::string& message() const { return message_; }

  // "truncated at offset 1234: tensor 'blk.0.ssm_in.weight' data ends past end of file"
  std::string ToString() const;

  // Returns a copy with "context: " prepended to the message.
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  uint64_t offset_ = kNoOffset;
  std::string message_;
};

// A value or an error. Minimal std::expected stand-in (gcc 12 / C++20).
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}           // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}   // NOLINT: must not be ok
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace ssmq

// Early-return helpers.
#define SSMQ_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::ssmq::Status _st = (expr);            \
    if (!_st.ok()) return _st;              \
  } while (0)

#define SSMQ_CONCAT_INNER(a, b) a##b
#define SSMQ_CONCAT(a, b) SSMQ_CONCAT_INNER(a, b)
#define SSMQ_ASSIGN_OR_RETURN(lhs, expr) \
  SSMQ_ASSIGN_OR_RETURN_IMPL(SSMQ_CONCAT(_res_, __LINE__), lhs, expr)
#define SSMQ_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
