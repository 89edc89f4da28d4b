// The A8 recipes (w8a8 / w4a8): the float-equivalent rewrites (residual
// rotation, Quamba2 reorder, online Hadamard), calibration in our runtime, and
// the static activation scales every quantized site gets (model/act_sites.h).
//
// Three named recipes; each component can be switched on or off on top of
// the recipe's defaults (the ablation switches of `ssmq convert`):
//
// component        | naive | quamba (faithful)          | ssmq (default)
// -----------------+-------+----------------------------+------------------------------
// rotate_residual  | off   | on                         | off (it unties the LM head)
// hadamard         | off   | on (online, out_proj input)| off (hurts int4 out_proj)
// percentile       | off   | SSM input x (mamba1), state| same
// reorder (mamba2) | off   | sort + cluster heads/dims  | same
// x_groups (m2)    | off   | x scale per (group, head group, dim group) | same
// group_bc (m2)    | off   | B, C scale per SSD group   | same
// segment_scales   | off   | in_proj output per segment (mamba2 only)   | both archs
// out_proj_dynamic | off   | off (static per tensor)    | on: per-token scale, computed online
// small_int8       | off   | conv1d weight, A_log, D, (m1) dt bias int8 | off (kept f16)
// state_int8       | on    | on                         | on
//
// Every other site is static per tensor (min-max).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "convert/calibrate.h"
#include "format/status.h"
#include "model/model.h"

namespace ssmq {

struct ActComponents {
  bool rotate_residual = false;
  bool hadamard = false;
  bool percentile = true;
  bool reorder = true;
  bool x_groups = true;
  bool group_bc = true;
  bool segment_scales = true;
  bool out_proj_dynamic = true;
  bool small_int8 = false;
  bool state_int8 = true;
};

// The components of "naive" | "quamba" | "ssmq"; kInvalidArgument otherwise.
Result<ActComponents> RecipeComponents(const std::string& recipe);

// One switch by name ("rotate-residual", "hadamard", "percentile", "reorder",
// "x-groups", "group-bc", "segment-scales", "out-proj-dynamic", "small-int8",
// "state-int8") set to `on`. kInvalidArgument names an unknown switch.
Status SetComponent(ActComponents& c, const std::string& name, bool on);
// "rotate-residual=on, hadamard=on, ..." for quant.recipe.
std::string ComponentsText(const ActComponents& c);

struct ActRecipeOptions {
  std::string recipe = "ssmq";
  ActComponents components;  // as resolved by the caller (RecipeComponents + switches)
  CalibOptions calib;        // windows, seed, percentile
  std::string_view calib_text;
  std::vector<bool> layer_a8;  // per layer: quantize activations (false: an a16 layer)
  std::function<void(const std::string& stage, int64_t done, int64_t total)> progress;
};

// Runs the rewrites and the calibration on a float (f32) model and adds, for
// every layer with layer_a8, the site metadata and scale tensors. Weights are
// left float (the caller quantizes them afterwards); small_int8 tensors are
// quantized here. Records quant.calib.* and returns the calibration used.
Result<CalibResult> ApplyActRecipe(Model& model, const ActRecipeOptions& opts);

}  // namespace ssmq
