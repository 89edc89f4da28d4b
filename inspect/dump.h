// `ssmq inspect FILE --dump NAME -o OUT.safetensors|OUT.npy [--raw]`: one
// tensor written for other tools. Default: f32 values (dequantized); --raw:
// the stored bytes with the matching dtype (q8 -> I8, q4 -> U8 packed pairs,
// bf16 in .npy -> '<u2' since NumPy has no bfloat16).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "format/ssmq_file.h"

namespace ssmq::inspect {

struct DumpOptions {
  std::string tensor;
  std::string out_path;   // format chosen by the extension: .safetensors or .npy
  bool raw = false;
};

struct DumpResult {
  std::string dtype;              // safetensors dtype written ("F32", "U8", ...)
  std::vector<int64_t> shape;     // shape written
  uint64_t bytes = 0;             // data bytes written
};

Result<DumpResult> DumpTensor(const SsmqFile& file, const DumpOptions& opts);

// NPY format 1.0, C order, little-endian; descr e.g. "<f4", "|u1".
Status WriteNpy(const std::string& path, const std::string& descr,
                const std::vector<int64_t>& shape, std::span<const uint8_t> data);

// safetensors dtype / NumPy descr of a stored type, for --raw.
std::string SafetensorsDtypeOf(TensorType t);
std::string NpyDescrOf(const std::string& safetensors_dtype);

}  // namespace ssmq::inspect
