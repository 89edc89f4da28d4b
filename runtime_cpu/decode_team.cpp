// Decode (one token per sequence) of a whole Mamba1 model in one OpenMP team
// (RuntimeOptions::decode_team): every layer and the LM head, with the
// threads meeting at a SpinBarrier between stages instead of opening a
// region per stage.
//
// Per layer, for thread t of the team (rt::TeamBlocks: each thread its own
// share of the blocks in order, then what is left of the others'):
//   norm       the thread's own copy of RMSNorm(hidden) (d_model values: no
//              barrier needed for a shared one)
//   in_proj    x and z rows of a block of channels, then the block's causal
//   + conv     conv + SiLU (needs only its own channels)       -> barrier
//   x_proj     16-row chunks of dt_in, B, C                      -> barrier
//              (the last thread to arrive: x_proj's output site quantized)
//   dt_proj    dt rows of a block of channels, then the block's
//   + step     selective-scan step (its own channels)            -> barrier
//              (the last thread: the online Hadamard of y, when the file has one)
//   out_proj   16-row chunks, each added into the residual
//              stream as it is done                              -> barrier
// and then the final norm (again a copy per thread) and 64-row chunks of the
// LM head. Every value is computed by the same kernel on the same inputs as
// stage by stage (Mamba1Mixer + Forward): the logits are the same bits.
#include <omp.h>

#include <algorithm>

#include "runtime_cpu/runtime_impl.h"
#include "runtime_cpu/spin_barrier.h"
#include "runtime_cpu/team_blocks.h"

namespace ssmq {

namespace {

constexpr int64_t kChannelBlock = 32;  // channels per in_proj + conv / dt_proj + step block
constexpr int64_t kRowChunk = 16;      // x_proj and out_proj rows per block: one weight tile
constexpr int64_t kHeadChunk = 64;     // LM-head rows per block (~3000 blocks at 50K vocab)

int64_t Blocks(int64_t n, int64_t per_block) { return (n + per_block - 1) / per_block; }

}  // namespace

bool Runtime::Impl::DecodeTeamApplies(int64_t batch) const {
  if (decode_team == 0 || hp.arch != Arch::kMamba1) return false;
  for (int l = 0; l < hp.n_layer; ++l) {
    if (!Mamba1ChannelTeamApplies(l, batch)) return false;
  }
  return true;
}

bool Runtime::Impl::Mamba1ChannelTeamApplies(int l, int64_t batch) const {
  if (observer || simulate_act_quant) return false;
  const rt::LayerWeights& w = layers[l];
  const rt::LayerActs& act = w.act;
  const int nt = rt::ThreadCount(n_threads);
  const int64_t di = hp.d_inner;
  // Column ranges need static (or no) scales where a stage quantizes in place,
  // and matmuls on the integer or float path (not the simulated one).
  const auto whole_rows = [&](ActSite site) {
    return act[site].mode == rt::ActQuant::Mode::kDynamicPerToken;
  };
  if (whole_rows(ActSite::kInProjOutput) || whole_rows(ActSite::kConvOutput) ||
      whole_rows(ActSite::kDtProjOutput))
    return false;
  if ((act[ActSite::kInProjInput].enabled() && !w.in_proj.quantized()) ||
      (act.dt_proj_input.enabled() && !w.dt_proj.quantized()))
    return false;
  if (nt < 2 || di < 2 * kChannelBlock || !rt::Mamba1Step512Applies(hp.d_state)) return false;
  if (!rt::MatMulPlanApplies(batch) || !rt::Int8PlanApplies(batch)) return false;
  return decode_team == 1 || rt::WorthThreads(batch * 2 * di * hp.d_model, nt);
}

void Runtime::Impl::DecodeTeam(int64_t batch, RecurrentState& state, float* logits) {
  rt::Scratch& s = scratch;
  const int64_t T = batch;  // one token per sequence
  const int64_t dm = hp.d_model, di = hp.d_inner, N = hp.d_state, R = hp.dt_rank, K = hp.d_conv;
  const int64_t ipd = 2 * di, dbc_dim = R + 2 * N;
  const int nt = rt::ThreadCount(n_threads);
  const size_t conv_per_layer = conv_floats_per_layer(batch);
  const int64_t channel_blocks = Blocks(di, kChannelBlock);
  const int64_t x_chunks = Blocks(dbc_dim, kRowChunk), out_chunks = Blocks(dm, kRowChunk);
  const int64_t head_chunks = Blocks(hp.vocab_size, kHeadChunk);
  rt::Grow(s.team_normed, static_cast<size_t>(nt * T * dm));
  GrowStateScratch(batch);

  rt::TeamBlocks in_blocks, x_blocks, step_blocks, out_blocks, head_blocks;
  in_blocks.Reset(2 * channel_blocks, nt);
  x_blocks.Reset(x_chunks, nt);
  step_blocks.Reset(channel_blocks, nt);
  out_blocks.Reset(out_chunks, nt);
  head_blocks.Reset(head_chunks, nt);
  rt::SpinBarrier barrier;

#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    float* normed = s.team_normed.data() + t * T * dm;
    for (int l = 0; l < hp.n_layer; ++l) {
      const rt::LayerWeights& w = layers[l];
      const rt::LayerActs& act = w.act;
      float* conv_state = state.conv.data() + l * conv_per_layer;
      const rt::SsmStateRef ssm = LayerSsm(l, batch, state);
      const float* conv_b = w.conv_b.present() ? w.conv_b.f32 : nullptr;

      rt::RmsNormRows(s.hidden.data(), T, dm, w.norm.f32, hp.norm_eps, normed, 1);
      const rt::RowsPlan in_proj = PlanMatMulAct(w.in_proj, &w.in_proj_bias,
                                                 act[ActSite::kInProjInput], normed, dm, T,
                                                 s.proj.data(), ipd);
      for (int64_t item; (item = in_blocks.Next(t)) >= 0;) {
        const bool z_rows = item >= channel_blocks;
        const int64_t blk = z_rows ? item - channel_blocks : item;
        const int64_t c0 = blk * kChannelBlock, c1 = std::min(di, c0 + kChannelBlock);
        const int64_t base = z_rows ? di : 0;
        in_proj.Run(base + c0, base + c1);
        rt::FakeQuantizeColumns(act[ActSite::kInProjOutput], s.proj.data(), ipd, T, base + c0,
                                base + c1);
        if (z_rows) continue;
        for (int64_t b = 0; b < batch; ++b) {
          rt::CausalConvSilu(s.proj.data() + b * ipd, ipd, 1, c0, c1, K, w.conv_w.f32, conv_b,
                             conv_state + b * di * (K - 1), s.conv_out.data() + b * di, di);
        }
        rt::FakeQuantizeColumns(act[ActSite::kConvOutput], s.conv_out.data(), di, T, c0, c1);
      }
      barrier.Wait(team, [&] { in_blocks.Reset(2 * channel_blocks, nt); });

      const rt::RowsPlan x_proj = PlanMatMulAct(w.x_proj, nullptr, act[ActSite::kConvOutput],
                                                s.conv_out.data(), di, T, s.dbc.data(), dbc_dim);
      for (int64_t c; (c = x_blocks.Next(t)) >= 0;) {
        x_proj.Run(c * kRowChunk, std::min(dbc_dim, (c + 1) * kRowChunk));
      }
      barrier.Wait(team, [&] {
        rt::FakeQuantize(act[ActSite::kXProjOutput], s.dbc.data(), dbc_dim, T, dbc_dim, 1);
        x_blocks.Reset(x_chunks, nt);
      });

      const rt::RowsPlan dt_proj = PlanMatMulAct(w.dt_proj, &w.dt_bias, act.dt_proj_input,
                                                 s.dbc.data(), dbc_dim, T, s.dt.data(), di);
      for (int64_t blk; (blk = step_blocks.Next(t)) >= 0;) {
        const int64_t c0 = blk * kChannelBlock, c1 = std::min(di, c0 + kChannelBlock);
        dt_proj.Run(c0, c1);
        rt::FakeQuantizeColumns(act[ActSite::kDtProjOutput], s.dt.data(), di, T, c0, c1);
        for (int64_t b = 0; b < batch; ++b) {
          rt::Mamba1StepChannels512(ssm, b * di, c0, c1, N, s.conv_out.data() + b * di,
                                    s.dt.data() + b * di, s.dbc.data() + b * dbc_dim + R,
                                    s.proj.data() + b * ipd + di, w.a.data(), w.d.f32,
                                    s.y.data() + b * di);
        }
      }
      barrier.Wait(team, [&] {
        if (w.has_out_proj_hadamard)
          HadamardTransformRows(w.out_proj_hadamard, s.y.data(), T, di, 1);
        step_blocks.Reset(channel_blocks, nt);
      });

      const rt::RowsPlan out_proj =
          PlanMatMulAct(w.out_proj, &w.out_proj_bias, act[ActSite::kOutProjInput], s.y.data(), di,
                        T, s.mixer_out.data(), dm);
      for (int64_t c; (c = out_blocks.Next(t)) >= 0;) {
        const int64_t r0 = c * kRowChunk, r1 = std::min(dm, r0 + kRowChunk);
        out_proj.Run(r0, r1);
        for (int64_t b = 0; b < batch; ++b) {  // the residual, as Forward adds it
          float* h = s.hidden.data() + b * dm;
          const float* o = s.mixer_out.data() + b * dm;
          for (int64_t r = r0; r < r1; ++r) h[r] += o[r];
        }
      }
      barrier.Wait(team, [&] { out_blocks.Reset(out_chunks, nt); });
    }

    if (logits) {
      rt::RmsNormRows(s.hidden.data(), T, dm, output_norm.f32, hp.norm_eps, normed, 1);
      const rt::RowsPlan head = rt::PlanMatMul(lm_head(), nullptr, normed, dm, T, logits,
                                               hp.vocab_size);
      for (int64_t c; (c = head_blocks.Next(t)) >= 0;) {
        head.Run(c * kHeadChunk, std::min(hp.vocab_size, (c + 1) * kHeadChunk));
      }
    }
  }
}

}  // namespace ssmq
