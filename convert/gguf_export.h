// Model -> llama.cpp GGUF (architectures "mamba" / "mamba2"), laid out as
// llama.cpp's convert_hf_to_gguf.py writes it: the same metadata keys, tensor
// names, GGUF dims (reversed PyTorch order, A = -exp(A_log), Mamba2 A/D as
// {1, n_head} and the gated-norm weight as {d_inner/n_group, n_group}) and
// block layouts.
//
// Types: matmul weights (token_embd, output, ssm_in, ssm_x, ssm_dt, ssm_out)
// get the requested type; every other tensor (norms, conv1d, biases, A, D)
// stays F32 as llama.cpp keeps it. A weight whose ne[0] is not a multiple of
// 32 (Mamba1's ssm_dt.weight with dt_rank 24) falls back to F16, which
// llama.cpp's loader accepts. Our Q8 per-group-32 tensors become Q8_0 and
// our symmetric Q4 per-group-32 tensors Q4_0 with their codes unchanged
// (scales rounded to f16); other quantized tensors are dequantized and
// re-quantized with ggml's reference quantizers.
#pragma once

#include <string>

#include "convert/gguf_types.h"
#include "convert/gguf_writer.h"
#include "model/model.h"

namespace ssmq {

enum class GgufExportType { kF16, kQ8_0, kQ4_0 };

struct GgufExportOptions {
  GgufExportType type = GgufExportType::kF16;
  // Write the float model where the .ssmq holds what GGUF cannot express
  // (activation scales); without it export refuses.
  bool dequantize = false;
  // Export a Mamba2 model with n_groups > 1 and a full-width gated norm
  // although llama.cpp will normalize per group.
  bool force = false;
};

// kUnsupported (message says why and what flag would help) for models GGUF
// cannot represent.
Result<gguf::GgufWriter> ExportGguf(const Model& model, const GgufExportOptions& opts = {});
Status ExportGgufFile(const Model& model, const std::string& path, const GgufExportOptions& opts = {});

}  // namespace ssmq
