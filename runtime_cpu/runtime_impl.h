// Runtime internals shared by runtime.cpp and the two mixers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "format/status.h"
#include "model/model.h"
#include "runtime_cpu/hadamard.h"
#include "runtime_cpu/kernels.h"
#include "runtime_cpu/observer.h"
#include "runtime_cpu/runtime.h"
#include "runtime_cpu/weight.h"

namespace ssmq {

namespace rt {

struct LayerWeights {
  Weight norm;           // [d_model]
  Weight in_proj;        // [in_proj_dim, d_model]
  Weight in_proj_bias;   // [in_proj_dim] (optional)
  Weight conv_w;         // [conv_dim, d_conv]
  Weight conv_b;         // [conv_dim] (optional)
  Weight x_proj;         // mamba1 [dt_rank + 2*d_state, d_inner]
  Weight dt_proj;        // mamba1 [d_inner, dt_rank]
  Weight dt_bias;        // mamba1 [d_inner]; mamba2 [n_heads]
  std::vector<float> a;  // -exp(A_log): mamba1 [d_inner][d_state]; mamba2 [n_heads]
  Weight d;              // mamba1 [d_inner]; mamba2 [n_heads]
  Weight ssm_norm;       // mamba2 [d_inner]
  Weight out_proj;       // [d_model, d_inner]
  Weight out_proj_bias;  // [d_model] (optional)
  // Online Hadamard on the out_proj input (file descriptor blk.{i}.hadamard.ssm_out.*):
  // out_proj is stored as W H^T, the runtime feeds it H y / sqrt(d_inner).
  bool has_out_proj_hadamard = false;
  HadamardKind out_proj_hadamard;
};

// Scratch buffers, grown on demand and never shrunk, so that Step does not
// allocate after its first call.
struct Scratch {
  std::vector<float> hidden;    // [tokens][d_model] residual stream
  std::vector<float> normed;    // [tokens][d_model]
  std::vector<float> mixer_out; // [tokens][d_model]
  std::vector<float> proj;      // [tokens][in_proj_dim]
  std::vector<float> conv_out;  // [tokens][conv_dim]
  std::vector<float> dbc;       // mamba1 [tokens][dt_rank + 2*d_state]
  std::vector<float> dt;        // mamba1 [tokens][d_inner]; mamba2 [tokens][n_heads]
  std::vector<float> y;         // [tokens][d_inner]
  std::vector<float> gated;     // mamba2 [tokens][d_inner]
  std::vector<float> per_thread;  // mamba2 chunk-scan scratch, one slice per thread
};

inline void Grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace rt

struct Runtime::Impl {
  const Model* model = nullptr;
  HParams hp;
  int n_threads = 0;  // <= 0: OpenMP default at call time
  rt::Weight token_embd;   // [vocab, d_model]
  rt::Weight output_norm;  // [d_model]
  rt::Weight output;       // [vocab, d_model] (absent when tied)
  std::vector<rt::LayerWeights> layers;
  rt::Scratch scratch;
  Observer* observer = nullptr;     // not owned; nullptr: no observation, zero cost
  std::vector<float> observe_copy;  // gathers strided sites for the observer

  // Calls the observer (if any) with rows x cols values of row stride `stride`.
  void Observe(ObsSite site, int l, const float* data, int64_t rows, int64_t cols,
               int64_t stride) {
    if (!observer) return;
    if (stride == cols) {
      observer->Observe(site, l, data, rows, cols);
      return;
    }
    rt::Grow(observe_copy, static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(data + r * stride, cols, observe_copy.data() + r * cols);
    }
    observer->Observe(site, l, observe_copy.data(), rows, cols);
  }
  // The online out_proj-input Hadamard of layer l on T rows of d_inner (stride d_inner),
  // then the kSsmOutput / kOutProjInput observations around it.
  void OutProjInputTransform(int l, float* y, int64_t T);

  const rt::Weight& lm_head() const { return hp.tied_embeddings ? token_embd : output; }
  size_t conv_floats_per_layer(int64_t batch) const {
    return static_cast<size_t>(batch * hp.conv_dim() * (hp.d_conv - 1));
  }
  size_t ssm_floats_per_layer(int64_t batch) const {
    return static_cast<size_t>(batch * (hp.arch == Arch::kMamba1 ? hp.d_inner * hp.d_state
                                                                  : hp.n_heads * hp.head_dim *
                                                                        hp.d_state));
  }

  // Runs the mixer of layer `l` on u [batch*seq_len][d_model] (rows b*seq_len + t),
  // writing mixer_out. recurrent: one token per sequence through the step
  // path (Mamba2), otherwise the chunked scan.
  void Mamba1Mixer(int l, int64_t batch, int64_t seq_len, float* conv_state, float* ssm_state);
  void Mamba2Mixer(int l, int64_t batch, int64_t seq_len, float* conv_state, float* ssm_state,
                   bool recurrent);
  Status Forward(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len,
                 RecurrentState& state, std::vector<float>& logits, bool recurrent);
};

}  // namespace ssmq
