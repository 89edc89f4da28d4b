// Mamba2 mixer: in_proj -> (z, xBC, dt) -> causal conv + SiLU on xBC ->
// softplus(dt + bias) (clamped to the time-step limit) -> SSD scan (chunked
// for prefill, one recurrent step for Step) -> gated RMSNorm -> out_proj.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "runtime_cpu/activations.h"
#include "runtime_cpu/runtime_impl.h"

namespace ssmq {

void Runtime::Impl::Mamba2Mixer(int l, int64_t batch, int64_t seq_len, float* conv_state,
                                const rt::SsmStateRef& ssm, bool recurrent) {
  const rt::LayerWeights& w = layers[l];
  rt::Scratch& s = scratch;
  const int64_t T = batch * seq_len, L = seq_len;
  const int64_t di = hp.d_inner, N = hp.d_state, K = hp.d_conv, H = hp.n_heads, P = hp.head_dim;
  const int64_t G = hp.n_groups, cd = hp.conv_dim(), ipd = hp.in_proj_dim();
  const rt::Mamba2Dims dims{H, P, G, N};
  const int nt = rt::ThreadCount(n_threads);

  // proj row: z [di], xBC [cd], dt [H]
  const rt::LayerActs& act = w.act;  // activation quantization (kNone: float)
  MatMulAct(w.in_proj, &w.in_proj_bias, act[ActSite::kInProjInput], s.normed.data(), hp.d_model,
            T, s.proj.data(), ipd);
  if (observer) {
    const int64_t gn = G * N;
    Observe(ObsSite::kInProjOutput, l, s.proj.data(), T, ipd, ipd);
    Observe(ObsSite::kInProjZ, l, s.proj.data(), T, di, ipd);
    Observe(ObsSite::kInProjX, l, s.proj.data() + di, T, di, ipd);
    Observe(ObsSite::kInProjB, l, s.proj.data() + 2 * di, T, gn, ipd);
    Observe(ObsSite::kInProjC, l, s.proj.data() + 2 * di + gn, T, gn, ipd);
    Observe(ObsSite::kInProjDt, l, s.proj.data() + 2 * di + 2 * gn, T, H, ipd);
  }
  rt::FakeQuantize(act[ActSite::kInProjOutput], s.proj.data(), ipd, T, ipd, n_threads);

  constexpr int64_t kChannelBlock = 64;
  const int64_t n_blocks = (cd + kChannelBlock - 1) / kChannelBlock;
  const float* conv_b = w.conv_b.present() ? w.conv_b.f32 : nullptr;
  rt::ForEachIndex(batch * n_blocks, nt, rt::WorthThreads(rt::kConvWorkPerTap * T * cd * K, nt),
                   [&](int64_t item) {
                     const int64_t b = item / n_blocks, blk = item % n_blocks;
                     const int64_t c0 = blk * kChannelBlock, c1 = std::min(cd, c0 + kChannelBlock);
                     rt::CausalConvSilu(s.proj.data() + b * L * ipd + di, ipd, L, c0, c1, K,
                                        w.conv_w.f32, conv_b, conv_state + b * cd * (K - 1),
                                        s.conv_out.data() + b * L * cd, cd);
                   });

  if (observer) {
    Observe(ObsSite::kConvOutX, l, s.conv_out.data(), T, di, cd);
    Observe(ObsSite::kConvOutB, l, s.conv_out.data() + di, T, G * N, cd);
    Observe(ObsSite::kConvOutC, l, s.conv_out.data() + di + G * N, T, G * N, cd);
  }
  // x, B, C on their grids
  rt::FakeQuantize(act[ActSite::kConvOutput], s.conv_out.data(), cd, T, cd, n_threads);

  const bool clamp = !(hp.dt_limit_min == 0.0 && std::isinf(hp.dt_limit_max) &&
                       hp.dt_limit_max > 0);
  const float dt_min = static_cast<float>(hp.dt_limit_min);
  const float dt_max = static_cast<float>(hp.dt_limit_max);
  for (int64_t t = 0; t < T; ++t) {
    const float* raw = s.proj.data() + t * ipd + di + cd;
    float* dt = s.dt.data() + t * H;
    for (int64_t h = 0; h < H; ++h) {
      float v = rt::Softplus(raw[h] + w.dt_bias.f32[h]);
      if (clamp) v = std::min(std::max(v, dt_min), dt_max);
      dt[h] = v;
    }
  }

  const int64_t state_per_seq = H * P * N;
  if (recurrent) {
    // seq_len == 1: rows are sequences.
    // Heads shared with rt::TeamBlocks (each thread its half in order, then
    // the other's leftovers): a static split left ~10% of this region idle.
    rt::ForEachIndex(batch * H, nt, rt::WorthThreads(4 * batch * H * P * N, nt), [&](int64_t bh) {
      const int64_t b = bh / H, h = bh % H;
      const int64_t g = h / dims.heads_per_group();
      const float* row = s.conv_out.data() + b * cd;
      const float *x = row + h * P, *B = row + di + g * N, *C = row + di + G * N + g * N;
      if (ssm.codes) {  // int8 cache: stepped in place (state rows are (head, p) pairs)
        rt::Mamba2StepHeadInt8(*ssm.sq, b * H * P + h * P, P, x, B, C, s.dt[b * H + h], w.a[h],
                               w.d.f32[h], ssm.codes, s.y.data() + b * di + h * P);
      } else if (ssm.half) {  // f16 state: likewise
        rt::Mamba2StepHeadHalf(b * H * P + h * P, P, N, x, B, C, s.dt[b * H + h], w.a[h],
                               w.d.f32[h], ssm.half, s.y.data() + b * di + h * P);
      } else {
        rt::Mamba2StepHead(P, N, x, B, C, s.dt[b * H + h], w.a[h], w.d.f32[h],
                           ssm.f32 + b * state_per_seq + h * P * N, s.y.data() + b * di + h * P);
      }
    });
  } else {
    const int64_t per_thread = rt::Mamba2ChunkScratchFloats(dims, hp.chunk_size);
    // Work items: (sequence, group, slice of the group's heads), at least two
    // per thread when the heads allow it.
    const int64_t hpg = dims.heads_per_group();
    int64_t slices = 1;
    while (batch * G * slices < 2 * nt && slices * 2 <= hpg) slices *= 2;
    const int64_t heads_per_slice = (hpg + slices - 1) / slices;
    const int64_t items = batch * G * slices;
#pragma omp parallel for num_threads(nt) schedule(dynamic) if (items > 1 && rt::WorthThreads(4 * T * H * P * N, nt))
    for (int64_t item = 0; item < items; ++item) {
      const int64_t b = item / (G * slices), g = item / slices % G, sl = item % slices;
      const int64_t h0 = g * hpg + sl * heads_per_slice;
      const int64_t h1 = std::min((g + 1) * hpg, h0 + heads_per_slice);
      float* scratch_slice = s.per_thread.data() + omp_get_thread_num() * per_thread;
      ssm.Load(b * H * P + h0 * P, (h1 - h0) * P);
      rt::Mamba2ChunkScanGroup(dims, g, h0, h1, L, hp.chunk_size, s.conv_out.data() + b * L * cd,
                               cd, s.dt.data() + b * L * H, H, w.a.data(), w.d.f32,
                               ssm.f32 + b * state_per_seq, s.y.data() + b * L * di, di,
                               scratch_slice);
      ssm.Store(b * H * P + h0 * P, (h1 - h0) * P);
    }
  }

  Observe(ObsSite::kSsdOutput, l, s.y.data(), T, di, di);
  rt::GatedRmsNormRows(s.y.data(), di, s.proj.data(), ipd, T, di, hp.norm_group_size,
                       w.ssm_norm.f32, hp.norm_eps, s.gated.data(), di, n_threads);
  OutProjInputTransform(l, s.gated.data(), T);  // online Hadamard (when the file says) + observers
  MatMulAct(w.out_proj, &w.out_proj_bias, act[ActSite::kOutProjInput], s.gated.data(), di, T,
            s.mixer_out.data(), hp.d_model);
}

}  // namespace ssmq
