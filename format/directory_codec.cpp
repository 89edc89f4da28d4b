#include "format/directory_codec.h"

#include <unordered_set>

#include "format/byte_io.h"
#include "format/ssmq_layout.h"
#include "format/tensor_checks.h"

namespace ssmq::detail {

uint64_t DirectoryEntrySize(const TensorInfo& t) {
  // name_len + name + type + rank + shape + 4 u8 + group_size + 4 u64
  return 4 + t.name.size() + 4 + 4 + 8 * t.shape.size() + 4 + 4 + 8 * 4;
}

void EncodeDirectory(const std::vector<TensorInfo>& tensors, uint64_t data_offset,
                     std::vector<uint8_t>& out) {
  ByteWriter w(out);
  w.Put<uint64_t>(tensors.size());
  for (const auto& t : tensors) {
    w.Put<uint32_t>(static_cast<uint32_t>(t.name.size()));
    w.PutBytes(t.name.data(), t.name.size());
    w.Put<uint32_t>(static_cast<uint32_t>(t.type));
    w.Put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) w.Put<int64_t>(d);
    w.Put<uint8_t>(static_cast<uint8_t>(t.quant.granularity));
    w.Put<uint8_t>(t.quant.has_zero_point ? 1 : 0);
    w.Put<uint8_t>(static_cast<uint8_t>(t.compression));
    w.Put<uint8_t>(0);  // reserved
    w.Put<uint32_t>(t.quant.group_size);
    w.Put<uint64_t>(t.offset - data_offset);
    w.Put<uint64_t>(t.stored_size);
    w.Put<uint64_t>(t.size);
    w.Put<uint64_t>(t.checksum);
  }
}

namespace {

Status DecodeEntry(ByteReader& r, const DataSection& data, TensorInfo* out) {
  TensorInfo& t = *out;
  t.entry_offset = r.pos();
  const uint64_t at = t.entry_offset;
  uint32_t name_len;
  SSMQ_RETURN_IF_ERROR(r.Get(&name_len, "tensor name length"));
  if (name_len > layout::kMaxTensorNameLength)
    return Status(StatusCode::kLimitExceeded,
                  "tensor name length " + std::to_string(name_len) + " exceeds 4096", at);
  const uint8_t* np;
  SSMQ_RETURN_IF_ERROR(r.GetBytes(name_len, &np, "tensor name"));
  t.name.assign(reinterpret_cast<const char*>(np), name_len);
  SSMQ_RETURN_IF_ERROR(CheckTensorName(t.name, at));
  const std::string who = "tensor '" + t.name + "'";

  const uint64_t type_at = r.pos();
  uint32_t type_id, rank;
  SSMQ_RETURN_IF_ERROR(r.Get(&type_id, who + " type"));
  if (!GetTensorTypeTraits(type_id))
    return Status(StatusCode::kUnknownType, who + ": unknown type id " + std::to_string(type_id),
                  type_at);
  t.type = static_cast<TensorType>(type_id);
  SSMQ_RETURN_IF_ERROR(r.Get(&rank, who + " rank"));
  if (rank > kMaxRank)
    return Status(StatusCode::kBadTensorInfo, who + ": rank " + std::to_string(rank) + " > 8",
                  type_at + 4);
  t.shape.resize(rank);
  for (auto& d : t.shape) SSMQ_RETURN_IF_ERROR(r.Get(&d, who + " shape"));

  const uint64_t flags_at = r.pos();
  uint8_t granularity, has_zero, compression, reserved;
  SSMQ_RETURN_IF_ERROR(r.Get(&granularity, who + " granularity"));
  SSMQ_RETURN_IF_ERROR(r.Get(&has_zero, who + " has_zero_point"));
  SSMQ_RETURN_IF_ERROR(r.Get(&compression, who + " compression"));
  SSMQ_RETURN_IF_ERROR(r.Get(&reserved, who + " reserved byte"));
  if (has_zero > 1 || reserved != 0)
    return Status(StatusCode::kBadTensorInfo,
                  who + ": has_zero_point must be 0/1 and the reserved byte 0", flags_at);
  t.quant.granularity = static_cast<ScaleGranularity>(granularity);
  t.quant.has_zero_point = has_zero != 0;
  t.compression = static_cast<Compression>(compression);
  SSMQ_RETURN_IF_ERROR(r.Get(&t.quant.group_size, who + " group_size"));
  const uint64_t offset_at = r.pos();
  uint64_t rel_offset;
  SSMQ_RETURN_IF_ERROR(r.Get(&rel_offset, who + " offset"));
  SSMQ_RETURN_IF_ERROR(r.Get(&t.stored_size, who + " stored_size"));
  SSMQ_RETURN_IF_ERROR(r.Get(&t.size, who + " size"));
  SSMQ_RETURN_IF_ERROR(r.Get(&t.checksum, who + " checksum"));

  SSMQ_RETURN_IF_ERROR(CheckTensorDescription(t, at));
  if (t.compression == Compression::kNone && t.stored_size != t.size)
    return Status(StatusCode::kBadTensorInfo,
                  who + ": uncompressed but stored_size " + std::to_string(t.stored_size) +
                      " != size " + std::to_string(t.size), offset_at + 8);
  if (t.compression == Compression::kZstd && t.stored_size == 0 && t.size != 0)
    return Status(StatusCode::kBadTensorInfo, who + ": empty zstd stream", offset_at + 8);
  if (rel_offset % data.alignment != 0)
    return Status(StatusCode::kMisaligned,
                  who + ": offset " + std::to_string(rel_offset) + " is not a multiple of " +
                      std::to_string(data.alignment), offset_at);
  uint64_t end;
  if (__builtin_add_overflow(rel_offset, t.stored_size, &end) || end > data.size)
    return Status(StatusCode::kOutOfBounds,
                  who + ": data range [" + std::to_string(rel_offset) + ", +" +
                      std::to_string(t.stored_size) + ") runs past the data section of " +
                      std::to_string(data.size) + " bytes", offset_at);
  t.offset = data.offset + rel_offset;
  return Status::Ok();
}

}  // namespace

Result<std::vector<TensorInfo>> DecodeDirectory(const uint8_t* file, uint64_t begin,
                                                uint64_t size, const DataSection& data) {
  ByteReader r(file, begin, begin + size, "tensor directory");
  uint64_t count;
  SSMQ_RETURN_IF_ERROR(r.Get(&count, "tensor count"));
  if (count > layout::kMaxTensorCount)
    return Status(StatusCode::kLimitExceeded,
                  "tensor count " + std::to_string(count) + " exceeds 2^20", begin);
  if (count > r.remaining() / layout::kMinDirEntryBytes)
    return Status(StatusCode::kTruncated,
                  "tensor count " + std::to_string(count) + " cannot fit in the directory", begin);
  std::vector<TensorInfo> tensors(count);
  std::unordered_set<std::string> names;
  names.reserve(count);
  for (auto& t : tensors) {
    SSMQ_RETURN_IF_ERROR(DecodeEntry(r, data, &t));
    if (!names.insert(t.name).second)
      return Status(StatusCode::kDuplicateTensor, "tensor '" + t.name + "' appears twice",
                    t.entry_offset);
  }
  if (r.remaining() != 0)
    return Status(StatusCode::kBadTensorInfo,
                  std::to_string(r.remaining()) + " unparsed bytes after the last directory entry",
                  r.pos());
  SSMQ_RETURN_IF_ERROR(CheckNoOverlap(tensors));
  SSMQ_RETURN_IF_ERROR(CheckCompanions(tensors));
  return tensors;
}

}  // namespace ssmq::detail
