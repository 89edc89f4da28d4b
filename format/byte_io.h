// Little-endian loads/stores and a bounds-checked cursor (internal to format/).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "format/status.h"

namespace ssmq::detail {

template <class T>
inline T LoadLE(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the format and every supported host are little-endian
  return v;
}
template <class T>
inline void StoreLE(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// Appends little-endian values to a byte vector (writer side).
class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>& out) : out_(out) {}
  template <class T>
  void Put(T v) {
    size_t n = out_.size();
    out_.resize(n + sizeof(T));
    StoreLE(out_.data() + n, v);
  }
  void PutBytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }

 private:
  std::vector<uint8_t>& out_;
};

// Reads a section [begin, end) of a file; every read is checked against the
// section's remaining bytes first. Offsets in errors are absolute in the file.
class ByteReader {
 public:
  ByteReader(const uint8_t* file, uint64_t begin, uint64_t end, std::string section)
      : file_(file), pos_(begin), end_(end), section_(std::move(section)) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return end_ - pos_; }

  Status Need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      return Status(StatusCode::kTruncated,
                    section_ + ": " + what + " needs " + std::to_string(n) + " bytes, " +
                        std::to_string(remaining()) + " left in the section",
                    pos_);
    return Status::Ok();
  }
  template <class T>
  Status Get(T* v, const std::string& what) {
    *v = T{};
    SSMQ_RETURN_IF_ERROR(Need(sizeof(T), what));
    *v = LoadLE<T>(file_ + pos_);
    pos_ += sizeof(T);
    return Status::Ok();
  }
  // A view of n bytes (n already checked by the caller against limits).
  Status GetBytes(uint64_t n, const uint8_t** p, const std::string& what) {
    *p = nullptr;
    SSMQ_RETURN_IF_ERROR(Need(n, what));
    *p = file_ + pos_;
    pos_ += n;
    return Status::Ok();
  }

 private:
  const uint8_t* file_;
  uint64_t pos_, end_;
  std::string section_;
};

// Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(const uint8_t* p, uint64_t n);
// Valid UTF-8 without control characters (C0, DEL): tensor names.
bool IsPrintableUtf8(const uint8_t* p, uint64_t n);

}  // namespace ssmq::detail
