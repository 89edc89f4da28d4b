// config.json of a Hugging Face transformers Mamba/Mamba2 checkpoint or of an
// original state-spaces (mamba_ssm) checkpoint -> HParams. Internal to the
// importer (convert/hf_import.cpp); exposed for tests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "format/status.h"
#include "model/model.h"

namespace ssmq {

enum class CheckpointKind {
  kTransformers,  // MambaForCausalLM / Mamba2ForCausalLM (model_type mamba / mamba2)
  kStateSpaces,   // mamba_ssm MambaLMHeadModel: d_model / n_layer / ssm_cfg
};

struct HfConfig {
  CheckpointKind kind = CheckpointKind::kTransformers;
  // Everything but vocab_size (taken from the embedding's rows) and
  // norm_group_size (chosen from the import options) is filled in.
  HParams hp;
  int64_t config_vocab_size = 0;  // as written in config.json (0 = absent)
  bool config_says_tied = false;  // tie_word_embeddings / tie_embeddings
  std::optional<int64_t> bos_id, eos_id, pad_id;
};

// `label` names the file in error messages. Errors: kParseError (not JSON),
// kUnsupported (architecture / feature we do not run), kBadConfig (missing or
// ill-typed or contradictory fields).
Result<HfConfig> ParseHfConfig(const std::string& json_text, const std::string& label);

}  // namespace ssmq
