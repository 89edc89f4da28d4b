// Quamba2 sort-and-cluster of the Mamba2 SSM input x (reorder_utils.py in
// Quamba, our own deterministic equivalent):
//   per layer and SSD group g (heads [g·hpg, (g+1)·hpg), hpg = n_heads/n_groups):
//   1. per head, sort its head_dim channels ascending by the calibration
//      statistic s[c] = max over samples of mean_t |x[t][c]| (stable: ties by index);
//   2. cluster the group's heads into n_head_groups clusters by Ward
//      agglomerative clustering of their L2-normalized sorted profiles
//      (exact: repeatedly merge the pair of clusters with the smallest Ward
//      cost |A||B|/(|A|+|B|)·||μA − μB||², ties to the lowest cluster indices);
//      clusters are ordered by the mean over their heads of max_c s[c]
//      (ascending; ties by smallest head index), heads inside a cluster by index;
//   3. per head group split the head_dim sorted positions into n_dim_groups
//      contiguous dim groups: the optimal 1-D k-means segmentation (dynamic
//      programming, minimum within-segment sum of squares) of the positions'
//      feature vectors (the group's normalized sorted profiles at that position)
//      — Quamba's KMeans asserts its labels are contiguous; we solve that
//      contiguous problem exactly.
// The permutation never leaves an SSD group, so it preserves the gated norm's
// groups (norm_group_size must be a multiple of d_inner/n_groups).
#pragma once

#include <cstdint>
#include <vector>

#include "convert/calibrate.h"
#include "format/status.h"
#include "model/model.h"

namespace ssmq {

struct ReorderOptions {
  int n_head_groups = 4;  // Quamba2's x_nhead_group
  int n_dim_groups = 4;   // Quamba2's x_ndim_group
};

// One layer's reorder. Permutation convention (spec/format.md §6.3): new
// position k holds old channel x_channels[k] / old head heads[k].
struct LayerReorder {
  std::vector<int32_t> x_channels;       // [d_inner]
  std::vector<int32_t> heads;            // [n_heads]
  std::vector<int32_t> head_group_ends;  // [n_groups][n_hg]: cumulative ends, group-local head index
  std::vector<int32_t> dim_group_ends;   // [n_groups][n_hg][n_dg]: cumulative ends of positions in a head
};

// Plans the reorder of every layer from calibration statistics of the float
// model (site kConvOutX, channel_mean_abs). kUnsupported for Mamba1 or a
// gated-norm grouping that the permutation would break; kNotFound when the
// statistics lack a layer.
Result<std::vector<LayerReorder>> PlanMamba2Reorder(const HParams& hp, const CalibResult& calib,
                                                    const ReorderOptions& opts = {});

// Bakes the reorder into the weights (float model; rewritten tensors become f32):
// in_proj rows of z and x by x_channels and the dt rows by heads (B, C untouched),
// conv1d weight/bias x channels, ssm_a_log / ssm_d / ssm_dt.bias by head,
// ssm_norm.weight, ssm_out input columns; stores the I32 tensors
// blk.{i}.perm.x_channels [d_inner], blk.{i}.perm.heads [n_heads],
// blk.{i}.x_head_groups [n_groups, n_hg], blk.{i}.x_dim_groups [n_groups, n_hg, n_dg].
// kInvalidArgument if a layer already has an out_proj-input Hadamard (reorder first)
// or a permutation tensor. Logits are unchanged up to f32 rounding.
Status ApplyMamba2Reorder(Model& model, const std::vector<LayerReorder>& plan);

// PlanMamba2Reorder + ApplyMamba2Reorder. Statistics gathered before the reorder
// are in the old channel order: calibrate again afterwards (as Quamba2 does).
Status ReorderMamba2(Model& model, const CalibResult& calib, const ReorderOptions& opts = {});

// Undoes ApplyMamba2Reorder using the stored permutation tensors (recovers the
// float model's channel order; removes the perm / group tensors).
Status UndoMamba2Reorder(Model& model);

}  // namespace ssmq
