#include "model/act_sites.h"

namespace ssmq {

namespace {

struct SiteRow {
  ActSite site;
  const char* name;
  bool matmul_input;
};

constexpr SiteRow kSites[] = {
    {ActSite::kInProjInput, "in_proj_input", true},
    {ActSite::kInProjOutput, "in_proj_output", false},
    {ActSite::kConvOutput, "conv_output", true},  // mamba1: x_proj input
    {ActSite::kXProjOutput, "x_proj_output", true},  // mamba1: dt_in is the dt_proj input
    {ActSite::kDtProjOutput, "dt_proj_output", false},
    {ActSite::kOutProjInput, "out_proj_input", true},
    {ActSite::kSsmState, "ssm_state", false},
};
static_assert(sizeof(kSites) / sizeof(kSites[0]) == kActSiteCount);

}  // namespace

const char* ActSiteName(ActSite site) { return kSites[static_cast<int>(site)].name; }

bool ActSiteIsMatmulInput(ActSite site) { return kSites[static_cast<int>(site)].matmul_input; }

const char* ActModeName(ActMode mode) {
  switch (mode) {
    case ActMode::kStatic: return "static";
    case ActMode::kDynamicPerToken: return "dynamic_per_token";
    default: return "float";
  }
}

std::optional<ActMode> ParseActMode(const std::string& text) {
  if (text == "static") return ActMode::kStatic;
  if (text == "dynamic_per_token") return ActMode::kDynamicPerToken;
  return std::nullopt;
}

int64_t ActSiteWidth(const HParams& hp, ActSite site) {
  const bool m1 = hp.arch == Arch::kMamba1;
  switch (site) {
    case ActSite::kInProjInput: return hp.d_model;
    case ActSite::kInProjOutput: return hp.in_proj_dim();
    case ActSite::kConvOutput: return hp.conv_dim();
    case ActSite::kXProjOutput: return m1 ? hp.dt_rank + 2 * hp.d_state : 0;
    case ActSite::kDtProjOutput: return m1 ? hp.d_inner : 0;
    case ActSite::kOutProjInput: return hp.d_inner;
    case ActSite::kSsmState: return hp.d_inner;
    default: return 0;
  }
}

std::string ActModeKey(int layer, ActSite site) {
  return "blk." + std::to_string(layer) + ".act." + ActSiteName(site);
}

std::string ActScaleTensor(int layer, ActSite site) { return ActModeKey(layer, site) + ".scale"; }

}  // namespace ssmq
