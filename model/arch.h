// One table per architecture: our metadata keys and tensor names, the
// expected shape of each tensor from the hyper-parameters, and the Hugging
// Face / state-spaces / GGUF names each maps from. The converter, the loader
// and the inspector all read these tables.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "format/metadata.h"
#include "format/status.h"
#include "model/model.h"

namespace ssmq {

// Metadata keys (spec/format.md "Key registry"). {arch} is "mamba" or "mamba2".
namespace keys {
inline constexpr const char* kArchitecture = "general.architecture";  // string
inline constexpr const char* kName = "general.name";                  // string
inline constexpr const char* kSource = "general.source";              // string (where converted from)
inline constexpr const char* kTokenizerJson = "tokenizer.huggingface.json";  // string
inline constexpr const char* kBosId = "tokenizer.bos_id";             // i64
inline constexpr const char* kEosId = "tokenizer.eos_id";             // i64
inline constexpr const char* kPadId = "tokenizer.pad_id";             // i64
// Per-architecture hyper-parameter key suffixes: "{arch}.<suffix>".
inline constexpr const char* kDModel = "d_model";
inline constexpr const char* kNLayer = "n_layer";
inline constexpr const char* kVocabSize = "vocab_size";
inline constexpr const char* kDInner = "d_inner";
inline constexpr const char* kDState = "d_state";
inline constexpr const char* kDConv = "d_conv";
inline constexpr const char* kDtRank = "dt_rank";
inline constexpr const char* kNGroups = "n_groups";
inline constexpr const char* kHeadDim = "head_dim";
inline constexpr const char* kNHeads = "n_heads";
inline constexpr const char* kChunkSize = "chunk_size";
inline constexpr const char* kNormEps = "norm_eps";
inline constexpr const char* kNormGroupSize = "norm_group_size";
inline constexpr const char* kResidualInFp32 = "residual_in_fp32";
inline constexpr const char* kTiedEmbeddings = "tied_embeddings";
inline constexpr const char* kConvBias = "conv_bias";
inline constexpr const char* kProjBias = "proj_bias";
inline constexpr const char* kDtLimitMin = "dt_limit_min";
inline constexpr const char* kDtLimitMax = "dt_limit_max";
}  // namespace keys

// Writes hp into md under "{arch}.*" keys (+ general.architecture); reads back.
void HParamsToMetadata(const HParams& hp, Metadata& md);
Result<HParams> HParamsFromMetadata(const Metadata& md);

// Role of a tensor in a layer (or global).
enum class TensorRole {
  kTokenEmbd, kOutputNorm, kOutput,
  kNorm, kInProj, kInProjBias, kConvW, kConvB, kXProj, kDtProjW, kDtProjB /* mamba2: dt_bias */,
  kALog, kD, kSsmNorm, kOutProj, kOutProjBias,
};

struct TensorSpec {
  TensorRole role;
  std::string name;              // ours, e.g. "blk.3.ssm_in.weight"
  std::vector<int64_t> shape;    // expected, PyTorch order
  bool required = true;
  int layer = -1;                // -1 for global tensors
  bool is_matmul_weight = false; // candidates for weight quantization
};

// Every tensor the architecture has for these hyper-parameters, in a fixed
// order (the order a converter writes them).
std::vector<TensorSpec> ExpectedTensors(const HParams& hp);

// Our names:
//   token_embd.weight [vocab, d_model]         output_norm.weight [d_model]
//   output.weight [vocab, d_model] (absent when tied)
//   blk.{i}.norm.weight [d_model]
//   blk.{i}.ssm_in.weight [in_proj_dim, d_model]   (.bias when proj_bias)
//   blk.{i}.ssm_conv1d.weight [conv_dim, d_conv]   blk.{i}.ssm_conv1d.bias [conv_dim]
//   mamba1: blk.{i}.ssm_x.weight [dt_rank + 2*d_state, d_inner]
//           blk.{i}.ssm_dt.weight [d_inner, dt_rank]  blk.{i}.ssm_dt.bias [d_inner]
//           blk.{i}.ssm_a_log [d_inner, d_state]      blk.{i}.ssm_d [d_inner]
//   mamba2: blk.{i}.ssm_dt.bias [n_heads]  blk.{i}.ssm_a_log [n_heads]  blk.{i}.ssm_d [n_heads]
//           blk.{i}.ssm_norm.weight [d_inner]
//   blk.{i}.ssm_out.weight [d_model, d_inner]      (.bias when proj_bias)
std::string LayerTensorName(int layer, const char* suffix);

// Maps a Hugging Face / state-spaces checkpoint name to ours
// ("backbone.layers.3.mixer.in_proj.weight" -> "blk.3.ssm_in.weight";
//  "backbone.embedding.weight" and "backbone.embeddings.weight" -> "token_embd.weight";
//  a leading "model." is stripped). nullopt when unknown.
std::optional<std::string> MapHfTensorName(Arch arch, const std::string& hf_name);

}  // namespace ssmq
