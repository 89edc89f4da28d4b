// The model in the middle: what every importer produces and every writer,
// recipe and the runtime consume. Architecture + validated hyper-parameters,
// the tokenizer (as the Hugging Face tokenizer.json text), extra metadata and
// named tensors in our naming scheme (model/arch.h), shapes in PyTorch order.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "format/metadata.h"
#include "format/quant.h"
#include "format/status.h"
#include "format/tensor_types.h"

namespace ssmq {

enum class Arch { kMamba1, kMamba2 };
const char* ArchName(Arch a);  // "mamba" / "mamba2" (the general.architecture value)

// How Mamba2's gated RMSNorm normalizes y*silu(z).
enum class NormGrouping { kFull, kGrouped };

struct HParams {
  Arch arch = Arch::kMamba1;
  int64_t d_model = 0;
  int64_t n_layer = 0;
  int64_t vocab_size = 0;      // rows of the embedding (may be padded past the tokenizer)
  int64_t d_inner = 0;
  int64_t d_state = 0;
  int64_t d_conv = 0;
  int64_t dt_rank = 0;         // mamba1
  int64_t n_groups = 1;        // mamba2 (B/C groups)
  int64_t head_dim = 0;        // mamba2
  int64_t n_heads = 0;         // mamba2 = d_inner / head_dim
  int64_t chunk_size = 256;    // mamba2 SSD chunk
  int64_t norm_group_size = 0; // mamba2 gated norm: d_inner (full) or d_inner/n_groups (grouped)
  double norm_eps = 1e-5;
  double dt_limit_min = 0.0;   // mamba2 time_step_limit (clamp of softplus(dt)); max=inf means none
  double dt_limit_max = INFINITY;
  bool residual_in_fp32 = true;
  bool tied_embeddings = false;
  bool conv_bias = true;
  bool proj_bias = false;      // in_proj/out_proj biases

  int64_t conv_dim() const {   // channels the conv runs over
    return arch == Arch::kMamba1 ? d_inner : d_inner + 2 * n_groups * d_state;
  }
  int64_t in_proj_dim() const {  // mamba1: [x, z]; mamba2: [z, x, B, C, dt]
    return arch == Arch::kMamba1 ? 2 * d_inner : 2 * d_inner + 2 * n_groups * d_state + n_heads;
  }
  // Checks internal consistency (positive dims, d_inner = n_heads*head_dim, ...).
  Status Validate() const;
};

// Most blocks a model may claim (spec §4: published Mamba models have <= 64;
// the bound keeps per-layer tables of a hostile n_layer small).
inline constexpr int64_t kMaxLayers = 4096;
// Longest SSD chunk a model may ask for (spec §4; published Mamba2 models
// use 256). The prefill scan's scratch grows with its square.
inline constexpr int64_t kMaxChunkSize = 2048;

// A tensor of the model: owns its bytes or views bytes owned elsewhere
// (an mmap'd file) kept alive by `keepalive`.
struct ModelTensor {
  std::string name;
  TensorType type = TensorType::kF32;
  std::vector<int64_t> shape;
  QuantInfo quant;
  std::span<const uint8_t> data;          // logical bytes
  std::vector<uint8_t> owned;             // when the tensor owns its bytes (data points here)
  std::shared_ptr<const void> keepalive;  // when data views foreign memory

  uint64_t numel() const;
  // View as f32 when type == kF32 (nullptr otherwise).
  const float* f32() const;
  static ModelTensor Owned(std::string name, TensorType type, std::vector<int64_t> shape,
                           std::vector<uint8_t> bytes);
  static ModelTensor FromF32(std::string name, std::vector<int64_t> shape,
                             const std::vector<float>& values);
  // Points `data` at `owned` again (a plain copy of a ModelTensor would leave
  // `data` viewing the source's buffer). No-op for tensors that view foreign memory.
  void BindOwned();
};

class Model {
 public:
  Model() = default;
  // Copies rebind every owned tensor's `data` to the copy's own bytes.
  Model(const Model& other);
  Model& operator=(const Model& other);
  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;

  HParams hp;
  std::string tokenizer_json;   // the Hugging Face tokenizer.json text ("" = none)
  Metadata extra;               // other metadata (general.name, quant.*, provenance)

  // Adds or replaces. Keeps insertion order for deterministic writing.
  void SetTensor(ModelTensor t);
  const ModelTensor* Find(const std::string& name) const;
  ModelTensor* FindMutable(const std::string& name);
  const std::vector<ModelTensor>& tensors() const { return tensors_; }
  std::vector<ModelTensor>& tensors_mutable() { return tensors_; }
  bool Erase(const std::string& name);

  // Every tensor the architecture requires is present with the expected
  // shape (from model/arch.h); names the first offending tensor.
  Status Validate() const;

  // f32 copy of any float/quantized tensor (dequantizing via "<name>.scale").
  Result<std::vector<float>> ReadAsF32(const std::string& name) const;

 private:
  std::vector<ModelTensor> tensors_;
  std::map<std::string, size_t> index_;
};

}  // namespace ssmq
