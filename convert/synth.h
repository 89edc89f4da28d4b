// Synthetic checkpoints at the published Mamba1 / Mamba2 shapes: a Hugging
// Face transformers directory (config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json) with random weights drawn at the scales mamba_ssm
// initialises them with, so benchmarks run at real shapes without downloads.
//
// Everything is deterministic for a seed: the generator is splitmix64-seeded
// xoshiro256** with our own uniform/normal transforms (no <random>
// distributions, whose output is implementation-defined), one stream per
// tensor derived from (seed, tensor name).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/status.h"
#include "format/tensor_types.h"
#include "model/model.h"

namespace ssmq {

// One published model shape. Shapes are data: everything else follows from
// these fields (d_inner = expand * d_model, dt_rank = ceil(d_model / 16),
// n_heads = d_inner / head_dim).
struct SynthPreset {
  const char* name;      // "mamba-130m", "mamba2-1.3b", ...
  Arch arch;
  int64_t d_model;
  int64_t n_layer;
  int64_t vocab_size;    // embedding rows as published (padded)
  int64_t d_state;
  int64_t d_conv;
  int64_t expand;
  int64_t head_dim;      // mamba2 (0 for mamba1)
  int64_t n_groups;      // mamba2 (1 for mamba1, unused)
  int64_t chunk_size;    // mamba2 (0 for mamba1)
};

// The table, in order: mamba-130m/370m/790m/1.4b, mamba2-130m/370m/780m/1.3b.
std::span<const SynthPreset> SynthPresets();

// "mamba" / "mamba2" (the HF model_type). kInvalidArgument otherwise.
Result<Arch> ParseSynthArch(std::string_view name);

// A preset by full name ("mamba2-370m") or, when `arch` is given, also by its
// size alone ("370m"). kNotFound (listing the presets) for an unknown name,
// kInvalidArgument when the name is of the other architecture.
Result<SynthPreset> FindSynthPreset(std::string_view name, std::optional<Arch> arch = std::nullopt);

// The hyper-parameters of a preset, as our importer derives them from the
// config.json WriteSynthCheckpoint writes (norm_group_size = d_inner: the
// transformers "full" default, identical to grouped for n_groups = 1).
HParams SynthHParams(const SynthPreset& p);

// How a tensor's values are drawn.
enum class SynthInit {
  kNormal,        // N(0, scale)
  kUniform,       // U(-scale, scale)
  kOnes,          // 1
  kDtBias,        // softplus^-1(dt), dt = exp(U(log 1e-3, log 1e-1)) (clamped at 1e-4)
  kALogMamba1,    // A_log[d, n] = log(n + 1)
  kALogMamba2,    // A_log[h] = log(U(1, 16))
};

struct SynthTensor {
  std::string hf_name;         // "backbone.layers.3.mixer.in_proj.weight"
  std::vector<int64_t> shape;  // as stored in the checkpoint (conv1d weight [C, 1, K])
  SynthInit init = SynthInit::kOnes;
  double scale = 0.0;          // std for kNormal, bound for kUniform
  uint64_t numel() const;
};

// Every checkpoint tensor of hp (tied embeddings: no lm_head), in writing order.
std::vector<SynthTensor> SynthTensorPlan(const HParams& hp);

// A valid byte-level BPE tokenizer.json with exactly vocab_size entries:
// id 0 "<|endoftext|>" (special), ids 1..256 the byte tokens, then
// vocab_size - 257 two-byte tokens, each with its merge, in a fixed order
// (common characters first). vocab_size must be in [257, 65793].
Result<std::string> SynthTokenizerJson(int64_t vocab_size);

struct SynthOptions {
  uint64_t seed = 0;
  TensorType dtype = TensorType::kF16;  // F16, BF16 or F32 for the weights
  bool force = false;                   // replace an existing output directory
  std::optional<int64_t> n_layer;       // fewer (or more) layers than the preset (tests)
  // progress(bytes_done, bytes_total) of model.safetensors's tensor data.
  std::function<void(uint64_t, uint64_t)> progress;
};

struct SynthSummary {
  HParams hp;
  uint64_t n_params = 0;
  uint64_t weight_bytes = 0;  // tensor data in model.safetensors
};

// Writes the checkpoint into out_dir atomically: everything goes to a
// sibling temporary directory that is renamed onto out_dir at the end; a
// failure leaves nothing under out_dir. An existing out_dir is an error
// (kInvalidArgument) unless opts.force.
Result<SynthSummary> WriteSynthCheckpoint(const SynthPreset& preset, const std::string& out_dir,
                                          const SynthOptions& opts = {});

// The random stream of the synthesizer, exposed for tests.
class SynthRng {
 public:
  SynthRng(uint64_t seed, std::string_view stream);
  uint64_t Next();
  double Uniform01();       // [0, 1) with 53 bits
  double Normal();          // N(0, 1): Marsaglia's polar method (libm log, IEEE sqrt)

 private:
  uint64_t s_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace ssmq
