// Offline Hadamard rotations (Quamba): float-equivalent rewrites of a model
// that spread activation outliers before quantization. Both work on float
// models (f32/f16/bf16 tensors; the tensors they rewrite become f32) and
// fail with kUnsupported on quantized tensors or unsupported sizes.
#pragma once

#include "format/status.h"
#include "model/model.h"

namespace ssmq {

// Rotates the residual stream by H = H_{d_model}/sqrt(d_model) (runtime_cpu/hadamard.h):
//   1. folds every block RMSNorm weight g into the following in_proj
//      columns (W <- W diag(g)) and the final norm weight into the LM head;
//      the norm weights become 1, so RMSNorm(H h) = H RMSNorm(h);
//   2. token_embd rows e' = H e; in_proj W' = W H^T; out_proj W' = H W (and
//      its bias b' = H b); LM head W' = W H^T. A tied LM head is untied first:
//      output.weight is created from the (unrotated) embedding and
//      hp.tied_embeddings set to false.
// Logits are unchanged up to f32 rounding.
Status RotateResidual(Model& model);

// Rotates the out_proj input of every block by H = H_{d_inner}/sqrt(d_inner):
// out_proj W' = W H^T, and records the descriptor blk.{i}.hadamard.ssm_out.*
// (spec/format.md §6.4) so the runtime applies H online to the out_proj input
// (Mamba1: y·silu(z); Mamba2: the gated-norm output). kInvalidArgument when a
// block already has that descriptor. Run a Quamba2 reorder (convert/reorder.h)
// BEFORE this, as Quamba does: the reorder permutes out_proj's input columns.
Status RotateOutProjInput(Model& model);

}  // namespace ssmq
