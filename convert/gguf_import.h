// llama.cpp GGUF (architectures "mamba" and "mamba2") -> Model.
//
// Undoes llama.cpp's converter transformations: GGUF dims are reversed back
// to PyTorch order, blk.N.attn_norm -> blk.N.norm, blk.N.ssm_a (= -exp(A_log))
// -> blk.N.ssm_a_log = log(-A), Mamba2's A/D [n_head, 1] and gated-norm weight
// [n_group, d_inner/n_group] reshaped to [n_head] / [d_inner], a missing
// output.weight means tied embeddings; the vocabulary is the embedding's rows
// (llama.cpp pads it); the tokenizer.json is synthesized from tokenizer.ggml.*.
//
// Tensor types: F32/F16/BF16 are kept as they are. Q8_0 becomes our Q8
// per-group G=32 (int8 codes as stored, f16 scale -> f32: exact) and Q4_0 our
// Q4 symmetric per-group G=32 (nibbles repacked: exact) when keep_quantized;
// Q4_1 and Q4_K (and Q8_0/Q4_0 without keep_quantized, or tensors that need a
// transformation) are dequantized to f32.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "convert/gguf_file.h"
#include "model/model.h"

namespace ssmq {

struct GgufImportOptions {
  // Mamba2 gated-norm grouping. A GGUF does not say; llama.cpp normalizes per
  // group, so the default is kGrouped.
  std::optional<NormGrouping> mamba2_norm;
  bool keep_quantized = true;
  std::function<void(uint64_t, uint64_t)> progress;  // (tensors done, total)
};

Result<Model> ImportGguf(const std::string& path, const GgufImportOptions& opts = {});
// Tensors are copied out of the file: the Model does not reference `file`.
Result<Model> ImportGgufFile(const gguf::GgufFile& file, const GgufImportOptions& opts = {});

// Replaces every Q8/Q4 tensor by its f32 dequantization and drops the
// "<name>.scale" / "<name>.zero" tensors (for runtimes without integer kernels).
Status DequantizeModelTensors(Model& model);

}  // namespace ssmq
