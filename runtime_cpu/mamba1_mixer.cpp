// Mamba1 mixer: in_proj -> causal conv + SiLU -> x_proj (dt, B, C) ->
// dt_proj -> softplus + selective scan (gated by silu(z)) -> out_proj.
// Prefill and Step share this code: the scan is sequential in time either way
// (Step on AVX-512 takes the fused one-token kernel, mamba1_step.cpp).
#include <omp.h>

#include <algorithm>

#include "runtime_cpu/activations.h"
#include "runtime_cpu/runtime_impl.h"

namespace ssmq {

namespace {

// Channel blocks small enough to spread over threads, big enough to vectorize.
constexpr int64_t kChannelBlock = 64;

}  // namespace

void Runtime::Impl::Mamba1Mixer(int l, int64_t batch, int64_t seq_len, float* conv_state,
                                const rt::SsmStateRef& ssm, bool recurrent) {
  const rt::LayerWeights& w = layers[l];
  rt::Scratch& s = scratch;
  const int64_t T = batch * seq_len, L = seq_len;
  const int64_t di = hp.d_inner, N = hp.d_state, R = hp.dt_rank, K = hp.d_conv;
  const int64_t ipd = 2 * di;          // proj row: x [di], z [di]
  const int64_t dbc_dim = R + 2 * N;   // dbc row: dt_in [R], B [N], C [N]
  const int nt = rt::ThreadCount(n_threads);

  const rt::LayerActs& act = w.act;  // activation quantization (kNone: float)
  MatMulAct(w.in_proj, &w.in_proj_bias, act[ActSite::kInProjInput], s.normed.data(), hp.d_model,
            T, s.proj.data(), ipd);
  if (observer) {
    Observe(ObsSite::kInProjOutput, l, s.proj.data(), T, ipd, ipd);
    Observe(ObsSite::kInProjX, l, s.proj.data(), T, di, ipd);
    Observe(ObsSite::kInProjZ, l, s.proj.data() + di, T, di, ipd);
  }
  rt::FakeQuantize(act[ActSite::kInProjOutput], s.proj.data(), ipd, T, ipd, n_threads);

  const int64_t n_blocks = (di + kChannelBlock - 1) / kChannelBlock;
  const float* conv_b = w.conv_b.present() ? w.conv_b.f32 : nullptr;
#pragma omp parallel for num_threads(nt) schedule(static) collapse(2) if (rt::WorthThreads(rt::kConvWorkPerTap * T * di * K, nt))
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t c0 = blk * kChannelBlock, c1 = std::min(di, c0 + kChannelBlock);
      rt::CausalConvSilu(s.proj.data() + b * L * ipd, ipd, L, c0, c1, K, w.conv_w.f32, conv_b,
                         conv_state + b * di * (K - 1), s.conv_out.data() + b * L * di, di);
    }
  }

  Observe(ObsSite::kConvOutX, l, s.conv_out.data(), T, di, di);
  // The SSM input x on its int8 grid (the scan reads x̂); x_proj re-quantizes x̂ exactly.
  rt::FakeQuantize(act[ActSite::kConvOutput], s.conv_out.data(), di, T, di, n_threads);
  MatMulAct(w.x_proj, nullptr, act[ActSite::kConvOutput], s.conv_out.data(), di, T, s.dbc.data(),
            dbc_dim);
  Observe(ObsSite::kXProjOutput, l, s.dbc.data(), T, dbc_dim, dbc_dim);
  rt::FakeQuantize(act[ActSite::kXProjOutput], s.dbc.data(), dbc_dim, T, dbc_dim, n_threads);
  MatMulAct(w.dt_proj, &w.dt_bias, act.dt_proj_input, s.dbc.data(), dbc_dim, T, s.dt.data(), di);
  Observe(ObsSite::kDtProjOutput, l, s.dt.data(), T, di, di);
  rt::FakeQuantize(act[ActSite::kDtProjOutput], s.dt.data(), di, T, di, n_threads);
  // softplus(dt) happens inside the scan. Each state element costs an exp and
  // a handful of flops (~32 multiply-add equivalents): at decode a 2048 x 16
  // state is worth two threads. Decode (one token per sequence) with the
  // AVX-512 step steps an int8 / f16 state in place; otherwise the rows go
  // through the f32 scratch (state rows are channels).
  const bool fused_step = recurrent && L == 1 && rt::Mamba1FusedStepApplies(N);
#pragma omp parallel for num_threads(nt) schedule(static) collapse(2) if (rt::WorthThreads(32 * T * di * N, nt))
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t d0 = blk * kChannelBlock, d1 = std::min(di, d0 + kChannelBlock);
      if (fused_step) {
        rt::Mamba1StepChannelsFused(ssm, b * di, d0, d1, N, s.conv_out.data() + b * di,
                                  s.dt.data() + b * di, s.dbc.data() + b * dbc_dim + R,
                                  s.proj.data() + b * ipd + di, w.a.data(), w.d.f32,
                                  s.y.data() + b * di);
        continue;
      }
      ssm.Load(b * di + d0, d1 - d0);
      rt::Mamba1ScanChannels(L, d0, d1, N, s.conv_out.data() + b * L * di, di,
                             s.dt.data() + b * L * di, di, s.dbc.data() + b * L * dbc_dim + R,
                             dbc_dim, s.proj.data() + b * L * ipd + di, ipd, w.a.data(), w.d.f32,
                             ssm.f32 + b * di * N, s.y.data() + b * L * di, di);
      ssm.Store(b * di + d0, d1 - d0);
    }
  }

  OutProjInputTransform(l, s.y.data(), T);  // online Hadamard (when the file says) + observers
  MatMulAct(w.out_proj, &w.out_proj_bias, act[ActSite::kOutProjInput], s.y.data(), di, T,
            s.mixer_out.data(), hp.d_model);
}

}  // namespace ssmq
