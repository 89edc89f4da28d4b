#include "runtime_cpu/observer.h"

namespace ssmq {

const char* ObsSiteName(ObsSite site) {
  switch (site) {
    case ObsSite::kInProjInput: return "in_proj_input";
    case ObsSite::kInProjOutput: return "in_proj_output";
    case ObsSite::kInProjZ: return "in_proj_z";
    case ObsSite::kInProjX: return "in_proj_x";
    case ObsSite::kInProjB: return "in_proj_B";
    case ObsSite::kInProjC: return "in_proj_C";
    case ObsSite::kInProjDt: return "in_proj_dt";
    case ObsSite::kConvOutX: return "conv_out_x";
    case ObsSite::kConvOutB: return "conv_out_B";
    case ObsSite::kConvOutC: return "conv_out_C";
    case ObsSite::kXProjOutput: return "x_proj_output";
    case ObsSite::kDtProjOutput: return "dt_proj_output";
    case ObsSite::kSsdOutput: return "ssd_output";
    case ObsSite::kSsmOutput: return "ssm_output";
    case ObsSite::kOutProjInput: return "out_proj_input";
    case ObsSite::kOutProjOutput: return "out_proj_output";
    case ObsSite::kSsmStateFinal: return "ssm_state_final";
    case ObsSite::kLmHeadInput: return "lm_head_input";
    case ObsSite::kCount: break;
  }
  return "unknown";
}

}  // namespace ssmq
