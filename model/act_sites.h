// The activation-quantization sites of a block (w8a8 / w4a8 files): one table
// naming each site, its row width and how the file records it. The recipe
// (convert/act_recipe.h), the runtime and the inspector all read it.
//
// File representation (spec/format.md §6.5), per layer i and site {name}:
//   metadata blk.{i}.act.{name}        string  "static" | "dynamic_per_token"
//   tensor   blk.{i}.act.{name}.scale  f32     static scales (absent for dynamic):
//       row sites:  [n], n divides the site width W; scale k covers the
//                   contiguous channels [k·W/n, (k+1)·W/n)
//       ssm_state:  [R, d_state], R divides d_inner; scale [r][s] covers state
//                   rows [r·d_inner/R, (r+1)·d_inner/R) at state index s
//                   (mamba1 rows = channels, mamba2 rows = head·head_dim + p)
// A site without the metadata key stays float.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "model/model.h"

namespace ssmq {

enum class ActSite : int {
  kInProjInput = 0,  // normed u, the in_proj input                       [d_model]
  kInProjOutput,     // the in_proj output row (conv input, z, mamba2 dt)  [in_proj_dim]
  kConvOutput,       // SiLU(conv) row = SSM input x (mamba2: x, B, C)    [conv_dim]
                     //   mamba1: also the x_proj input
  kXProjOutput,      // mamba1 x_proj output [dt_in; B; C]; dt_in is the dt_proj input
  kDtProjOutput,     // mamba1 dt_proj output incl. bias, before softplus  [d_inner]
  kOutProjInput,     // out_proj input (after the online Hadamard)         [d_inner]
  kSsmState,         // the recurrent SSM state kept between calls (int8 cache)
  kCount
};
inline constexpr int kActSiteCount = static_cast<int>(ActSite::kCount);

enum class ActMode : uint8_t { kFloat, kStatic, kDynamicPerToken };

// "in_proj_input", "in_proj_output", "conv_output", "x_proj_output",
// "dt_proj_output", "out_proj_input", "ssm_state".
const char* ActSiteName(ActSite site);
// "static" / "dynamic_per_token" / "float"; parse: nullopt for other strings.
const char* ActModeName(ActMode mode);
std::optional<ActMode> ParseActMode(const std::string& text);

// Row width of a site (ssm_state: d_inner, its row count); 0 when the site does
// not exist in the architecture (x_proj_output / dt_proj_output for mamba2).
int64_t ActSiteWidth(const HParams& hp, ActSite site);
// Whether the site is a matmul input (the ones that may be dynamic).
bool ActSiteIsMatmulInput(ActSite site);

std::string ActModeKey(int layer, ActSite site);      // "blk.{i}.act.{name}"
std::string ActScaleTensor(int layer, ActSite site);  // "blk.{i}.act.{name}.scale"

}  // namespace ssmq
