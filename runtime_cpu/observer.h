// Observers: a hook the runtime calls with the activations at fixed sites of
// every block, for calibration (convert/calibrate.h) and validation. When no
// observer is attached (Runtime::SetObserver(nullptr), the default) the
// runtime skips every call and copies nothing.
#pragma once

#include <cstdint>

namespace ssmq {

// Sites. Shapes are [rows][cols], rows = batch·seq_len tokens in the order
// b·seq_len + t (one row per sequence for kSsmStateFinal), data contiguous
// (row stride = cols).
enum class ObsSite : int {
  kInProjInput = 0,   // normed u                                   [T][d_model]
  kInProjOutput,      // the whole in_proj output row (mamba1 [x; z], mamba2 [z; x; B; C; dt]) [T][in_proj_dim]
  kInProjZ,           // in_proj segment z                           [T][d_inner]
  kInProjX,           // in_proj segment x (conv input)              [T][d_inner]
  kInProjB,           // mamba2 in_proj segment B (conv input)       [T][n_groups·d_state]
  kInProjC,           // mamba2 in_proj segment C                    [T][n_groups·d_state]
  kInProjDt,          // mamba2 in_proj segment dt (pre-bias)        [T][n_heads]
  kConvOutX,          // SSM input x = SiLU(conv) (mamba1: x_proj input) [T][d_inner]
  kConvOutB,          // mamba2 conv output B                        [T][n_groups·d_state]
  kConvOutC,          // mamba2 conv output C                        [T][n_groups·d_state]
  kXProjOutput,       // mamba1 x_proj output [dt_in; B; C]          [T][dt_rank + 2·d_state]
  kDtProjOutput,      // mamba1 dt_proj output incl. bias, pre-softplus [T][d_inner]
  kSsdOutput,         // mamba2 scan output y before the gated norm  [T][d_inner]
  kSsmOutput,         // mamba1 y·silu(z); mamba2 gated-norm output (before any online Hadamard) [T][d_inner]
  kOutProjInput,      // out_proj input (after the online Hadamard when the file has one) [T][d_inner]
  kOutProjOutput,     // mixer output                                [T][d_model]
  kSsmStateFinal,     // SSM state at the end of a Prefill, one row per sequence:
                      //   mamba1 [batch][d_inner·d_state]; mamba2 [batch][n_heads·head_dim·d_state]
  kLmHeadInput,       // final-normed hidden state (layer = -1)      [T][d_model]
  kCount
};

// Stable short names ("in_proj_input", ...), for reports and maps.
const char* ObsSiteName(ObsSite site);

class Observer {
 public:
  virtual ~Observer() = default;
  // Called from the thread that runs Prefill/Step, never concurrently.
  // layer = block index (-1 for kLmHeadInput). `data` is only valid during the call.
  virtual void Observe(ObsSite site, int layer, const float* data, int64_t rows,
                       int64_t cols) = 0;
};

}  // namespace ssmq
