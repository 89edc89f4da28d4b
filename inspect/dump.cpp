#include "inspect/dump.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "convert/safetensors.h"

namespace ssmq::inspect {

std::string SafetensorsDtypeOf(TensorType t) {
  switch (t) {
    case TensorType::kF32: return "F32";
    case TensorType::kF16: return "F16";
    case TensorType::kBF16: return "BF16";
    case TensorType::kI8: return "I8";
    case TensorType::kI32: return "I32";
    case TensorType::kQ8: return "I8";
    case TensorType::kQ4: return "U8";
    case TensorType::kU8: return "U8";
    case TensorType::kI64: return "I64";
    default: return "U8";
  }
}

std::string NpyDescrOf(const std::string& dtype) {
  static const std::map<std::string, std::string> kDescr = {
      {"F32", "<f4"}, {"F16", "<f2"}, {"BF16", "<u2"}, {"I8", "|i1"},
      {"U8", "|u1"},  {"I32", "<i4"}, {"I64", "<i8"}};
  auto it = kDescr.find(dtype);
  return it == kDescr.end() ? "|u1" : it->second;
}

Status WriteNpy(const std::string& path, const std::string& descr,
                const std::vector<int64_t>& shape, std::span<const uint8_t> data) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) dict += (i ? ", " : "") + std::to_string(shape[i]);
  dict += shape.size() == 1 ? ",), }" : "), }";  // a 1-tuple needs its comma
  // magic(6) + version(2) + header_len(2) + dict, padded with spaces and a
  // final '\n' so the data starts on a multiple of 64 bytes.
  const size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string header = "\x93NUMPY";
  header += '\x01';
  header += '\x00';
  header += static_cast<char>(dict.size() & 0xFF);
  header += static_cast<char>((dict.size() >> 8) & 0xFF);
  header += dict;

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status(StatusCode::kIoError, "cannot create '" + tmp + "': " + std::strerror(errno));
  bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
  ok = ok && (data.empty() || std::fwrite(data.data(), 1, data.size(), f) == data.size());
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status(StatusCode::kIoError, "cannot write '" + path + "': " + std::strerror(errno));
  }
  return Status::Ok();
}

namespace {
bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

Result<DumpResult> DumpTensor(const SsmqFile& file, const DumpOptions& opts) {
  const bool npy = EndsWith(opts.out_path, ".npy");
  if (!npy && !EndsWith(opts.out_path, ".safetensors"))
    return Status(StatusCode::kInvalidArgument,
                  "output '" + opts.out_path + "' must end in .safetensors or .npy");
  const TensorInfo* t = file.FindTensor(opts.tensor);
  if (!t) return Status(StatusCode::kNotFound, "no tensor named '" + opts.tensor + "'");

  DumpResult result;
  std::vector<float> values;
  std::span<const uint8_t> data;
  result.shape = t->shape;
  if (opts.raw) {
    SSMQ_ASSIGN_OR_RETURN(data, file.TensorData(*t, /*verify=*/true));
    result.dtype = SafetensorsDtypeOf(t->type);
    if (t->type == TensorType::kQ4) {
      // Two codes per byte along the last dimension when it is even, else flat.
      if (!result.shape.empty() && result.shape.back() % 2 == 0)
        result.shape.back() /= 2;
      else
        result.shape = {static_cast<int64_t>(data.size())};
    }
  } else {
    SSMQ_ASSIGN_OR_RETURN(values, file.ReadAsF32(*t));
    data = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()),
                                    values.size() * sizeof(float));
    result.dtype = "F32";
  }
  result.bytes = data.size();
  if (npy) {
    SSMQ_RETURN_IF_ERROR(WriteNpy(opts.out_path, NpyDescrOf(result.dtype), result.shape, data));
  } else {
    std::map<std::string, std::string> meta = {
        {"ssmq.source_type", std::string(TensorTypeName(t->type))},
        {"ssmq.raw", opts.raw ? "true" : "false"}};
    SSMQ_RETURN_IF_ERROR(
        WriteSafetensors(opts.out_path, {{t->name, result.dtype, result.shape, data}}, meta));
  }
  return result;
}

}  // namespace ssmq::inspect
