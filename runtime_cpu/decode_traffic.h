// The memory traffic of one decode step (Runtime::Step: one new token for
// each of `batch` sequences), from the model's tensor directory: the
// numerator of the decode roofline. Decoding at small batch is bound by
// memory bandwidth: every weight the step uses is streamed from DRAM once
// per step, whatever the batch, and every sequence's recurrent state is read
// and written once.
//
//   weight_bytes = Σ_l Σ_{t in layer l's tensors the step reads} bytes(t)        [layer_matmul + layer_small]
//                    matmuls: ssm_in, ssm_x, ssm_dt, ssm_out weights (+ .scale/.zero)
//                    small:   norm, ssm_in/ssm_out bias, conv weight/bias, dt bias,
//                             A_log, D, ssm_norm (+ .scale/.zero), static activation scales
//                + bytes(output_norm)
//                + bytes(lm head)       output.weight (+ .scale/.zero); token_embd.* when tied
//                + batch × bytes(token_embd.*) / vocab_size
//                                       one embedding row (with its scales) per sequence
//   state_bytes  = batch × Σ_l 2 × ( ssm_elems × (1 if layer l keeps an int8
//                                    state cache, else 4) + conv_dim × (d_conv-1) × 4 )
//                    read + written once per token; ssm_elems = d_inner·d_state
//                    (mamba2: n_heads·head_dim·d_state); the conv state is f32
//   roofline tokens/s = batch × bandwidth / (weight_bytes + state_bytes)
//
// bytes(t) is the tensor's logical size in the file: the matmul weights are
// read in their stored type (f32/f16/bf16/q8/q4, runtime_cpu/weight.h); the
// small per-channel vectors, which the runtime may hold as f32, are a
// negligible share. Tensors the step never touches (the rest of the
// embedding table when untied, channel permutations, group tables, ...) are
// counted in unread_bytes.
#pragma once

#include <cstdint>

#include "model/model.h"

namespace ssmq {

struct DecodeTraffic {
  int64_t batch = 1;
  uint64_t layer_matmul_bytes = 0;   // every layer's matmul weights + their scales/zeros
  uint64_t layer_small_bytes = 0;    // every layer's norms, biases, conv, A, D, dt, act scales
  uint64_t output_norm_bytes = 0;
  uint64_t lm_head_bytes = 0;
  uint64_t embedding_rows_bytes = 0; // batch embedding rows
  uint64_t weight_bytes = 0;         // the sum of the five above
  uint64_t ssm_state_bytes = 0;      // read + write, all layers, all sequences
  uint64_t conv_state_bytes = 0;     // read + write, all layers, all sequences
  uint64_t state_bytes = 0;          // ssm + conv
  uint64_t unread_bytes = 0;         // file tensors the step does not read
  int int8_state_layers = 0;

  uint64_t total_bytes() const { return weight_bytes + state_bytes; }
  // batch × bandwidth / total_bytes (0 when bandwidth <= 0).
  double RooflineTokensPerSecond(double bandwidth_bytes_per_s) const;
};

// f16_state: the float-state layers keep it in f16 (RuntimeOptions::f16_state).
DecodeTraffic ComputeDecodeTraffic(const Model& model, int64_t batch = 1, bool f16_state = false);

}  // namespace ssmq
