#include "format/status.h"

namespace ssmq {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kIoError: return "io error";
    case StatusCode::kTruncated: return "truncated";
    case StatusCode::kBadMagic: return "bad magic";
    case StatusCode::kUnsupportedVersion: return "unsupported version";
    case StatusCode::kBadByteOrder: return "bad byte order";
    case StatusCode::kBadHeader: return "bad header";
    case StatusCode::kChecksumMismatch: return "checksum mismatch";
    case StatusCode::kBadMetadata: return "bad metadata";
    case StatusCode::kDuplicateKey: return "duplicate key";
    case StatusCode::kDuplicateTensor: return "duplicate tensor";
    case StatusCode::kBadTensorInfo: return "bad tensor info";
    case StatusCode::kOutOfBounds: return "out of bounds";
    case StatusCode::kOverlap: return "overlap";
    case StatusCode::kMisaligned: return "misaligned";
    case StatusCode::kUnknownType: return "unknown type";
    case StatusCode::kLimitExceeded: return "limit exceeded";
    case StatusCode::kBadShape: return "bad shape";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kTypeMismatch: return "type mismatch";
    case StatusCode::kCompression: return "compression";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kBadValue: return "bad value";
    case StatusCode::kBadConfig: return "bad config";
    case StatusCode::kParseError: return "parse error";
    case StatusCode::kCancelled: return "cancelled";
  }
  return "unknown status";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s = StatusCodeName(code_);
  if (has_offset()) s += " at offset " + std::to_string(offset_);
  s += ": ";
  s += message_;
  return s;
}

Status Status::WithContext(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_, offset_);
}

}  // namespace ssmq
