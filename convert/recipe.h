// Quantization schemes and the driver that turns a float Model into a
// quantized one: weight-only (w8a16, w4a16), weight + activation (w8a8,
// w4a8: the A8 recipes of convert/act_recipe.h, which need calibration
// text), and per-layer mixes of them.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>
#include <string>
#include <vector>

#include "convert/act_recipe.h"
#include "convert/quantize_weights.h"
#include "format/status.h"
#include "model/model.h"

namespace ssmq {

// True for w8a16 / w4a16 / w8a8 / w4a8 (the names `ssmq convert --scheme` takes
// besides the float types).
bool IsQuantScheme(const std::string& scheme);

struct QuantRecipeOptions {
  std::string scheme = "w8a16";   // w8a16 | w4a16 | w8a8 | w4a8
  uint32_t group_size = 128;      // int4 group along the input dim (falls back to a divisor)
  bool keep_lm_head = false;      // LM head (or tied embedding) stays f32
  std::string layer_schemes;      // "0-2:w4a16,3-5:w8a16"; layers not named use `scheme`
  int head_bits = 0;              // embedding + LM head: 8 or 4; 0 = the scheme's weight bits
  uint32_t head_group_size = 0;   // int4 group of embedding + LM head; 0 = group_size
  bool small_tensors_f16 = true;  // norms, conv, A_log, D, dt bias stored f16 (false: f32)
  bool rtn = false;               // int4: plain absmax RTN instead of the least-squares scale search
  // A8 layers (w8a8 / w4a8): convert/act_recipe.h.
  std::string recipe = "ssmq";    // ssmq | quamba | naive
  std::vector<std::pair<std::string, bool>> switches;  // component overrides, in order
  CalibOptions calib;
  std::string_view calib_text;    // required when any layer is a8
  std::function<void(const std::string& stage, int64_t done, int64_t total)> progress;
  // Per-layer schemes picked by sensitivity to fit a size (convert/auto_mix.h):
  // "0.35x" of the f16 file, "4MB", ...; candidates w4a8/w8a8 (a8 scheme) or
  // w4a16/w8a16. Excludes layer_schemes.
  std::string auto_mix;
  // GPTQ (convert/gptq.h) instead of round-to-nearest for the layer matmul
  // weights and an untied LM head; Hessians from `calib` windows of calib_text.
  bool gptq = false;
};

bool IsA8Scheme(const std::string& scheme);

// Parses "a-b:scheme,c:scheme" into one scheme name per layer (default for
// unnamed layers). kInvalidArgument names the bad piece.
Result<std::vector<std::string>> ParseLayerSchemes(const std::string& spec, int64_t n_layer,
                                                   const std::string& default_scheme);

// Casts every float tensor to f32 (small tensors: norms, conv, A_log, D stay
// f32), quantizes the weights as the scheme says and records quant.scheme,
// quant.recipe, quant.group_size and quant.rounding in model.extra.
Status ApplyQuantRecipe(Model& model, const QuantRecipeOptions& opts);

}  // namespace ssmq
