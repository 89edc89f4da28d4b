// Hugging Face (and original state-spaces) checkpoint directory -> Model.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "model/model.h"

namespace ssmq {

struct HfImportOptions {
  // Mamba2 gated-norm grouping; default for transformers checkpoints is kFull.
  std::optional<NormGrouping> mamba2_norm;
  // progress(tensors_done, tensors_total)
  std::function<void(uint64_t, uint64_t)> progress;
};

// dir holds config.json, model.safetensors or model-XXXXX-of-YYYYY.safetensors
// + model.safetensors.index.json, tokenizer.json (+ tokenizer_config.json).
// Tensors keep their source dtype (F32/F16/BF16), mapped to our names and
// shapes (conv1d squeezed to [C, K]).
Result<Model> ImportHfDirectory(const std::string& dir, const HfImportOptions& opts = {});

// Converts every float tensor of the model to `type` (F32/F16/BF16).
Status CastFloatTensors(Model& model, TensorType type);

}  // namespace ssmq
