// Decode (one token per sequence) of a whole model in one OpenMP team
// (RuntimeOptions::decode_team): every layer and the LM head, with the
// threads meeting at a SpinBarrier between stages instead of opening a
// region per stage.
//
// Work is shared with rt::TeamBlocks (each thread its own share of the
// units in order, in claims of up to a block, then what is left of the
// others' from their back), so each thread's weight rows are one contiguous
// stream per matrix. Per layer, for each thread:
//   norm        its own copy of RMSNorm(hidden) (d_model values: no barrier
//               needed for a shared one), from which it prepares in_proj
// Mamba1:
//   in_proj     blocks of x rows, each followed by its channels' causal
//   + conv      conv + SiLU, then blocks of z rows                -> barrier
//   x_proj      row chunks of dt_in, B, C                          -> barrier
//               (the last thread to arrive: x_proj's output site quantized)
//   dt_proj     dt rows of a block of channels, then the block's
//   + step      selective-scan step (its own channels)             -> barrier
//               (the last thread: the online Hadamard of y, if the file has one)
// Mamba2:
//   in_proj     blocks of rows in order: z, then xBC (each block followed by
//   + conv      its channels' conv + SiLU), then dt (softplus and clamp)
//                                                                  -> barrier
//   step        heads, each gated by silu(z) as it is done         -> barrier
//               (the last thread: the groups' RMSNorm and the Hadamard)
// both:
//   out_proj    row chunks, each added into the residual stream    -> barrier
// and after the last layer the final norm (a copy per thread) and row
// chunks of the LM head. A thread waiting at a barrier prefetches the start
// of its share of the next stage (idle_prefetch.h: its out_proj rows, the
// next layer's in_proj rows, its heads' state, ...): A/B in one process
// (decode_ab_bench idle=0 vs 1, 2 threads, Zen 5 VM) gave mamba2-370m w8a8
// +4.6-14%, w4a8 +5%, mamba-370m w8a8 +5%, w4a16 +1.4-4.8%, mamba2 w4a16
// +0.7%. Every value is computed by the same kernel on the same inputs as
// stage by stage (the mixers + Forward): the logits are the same bits
// (tests/a8_model_test.cpp), with or without the prefetching.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "runtime_cpu/activations.h"
#include "runtime_cpu/idle_prefetch.h"
#include "runtime_cpu/runtime_impl.h"
#include "runtime_cpu/spin_barrier.h"
#include "runtime_cpu/team_blocks.h"
#include "runtime_cpu/weight_tiles.h"

namespace ssmq {

namespace {

// in_proj rows (and their channels) per unit, and Mamba1 channels per
// dt_proj + step unit, claimed up to kChannelTake units (a block of 128) at a
// time: blocks of 128 against 32 gave mamba-370m w4a16 decode +8.5%, w8a8 +3%,
// mamba2-370m w4a16 +5%, w8a8 the same (fewer, longer runs of each thread's
// weight stream; the conv and step vectors fuller); 64 was between. The
// smaller unit is for the end of a stage, where claims taper to one unit.
constexpr int64_t kChannelUnit = 32, kChannelTake = 4;
constexpr int64_t kRowChunk = 48;                   // x_proj rows per unit (96 at 370m)
constexpr int64_t kOutUnit = 16, kOutTake = 8;      // out_proj rows: blocks of up to 128
constexpr int64_t kHeadUnit = 32, kHeadTake = 8;    // LM-head rows: blocks of up to 256

int64_t Blocks(int64_t n, int64_t per_block) { return (n + per_block - 1) / per_block; }

// Units [begin, end) of thread t's share of n units (TeamBlocks::Reset's split).
struct Share {
  int64_t begin, end;
};
Share ShareOf(int64_t n_units, int t, int nt) { return {n_units * t / nt, n_units * (t + 1) / nt}; }

// Rows [r0, r1) of w (clipped to its rows), as the decode kernels read them.
void AddRows(rt::IdlePrefetch& pf, const rt::Weight& w, int64_t r0, int64_t r1) {
  const rt::ByteRange b = rt::RowRangeBytes(w, r0, std::min(r1, w.rows));
  pf.Add(b.begin, b.bytes);
}

// Rows [row0, row0 + n_rows) of d_state values of a layer's SSM state, in
// the type it is kept in between steps (int8 codes, f16 or f32).
void AddStateRows(rt::IdlePrefetch& pf, const rt::SsmStateRef& ssm, int64_t d_state,
                  int64_t row0, int64_t n_rows) {
  const int64_t first = row0 * d_state, n = n_rows * d_state;
  if (ssm.codes) {
    pf.Add(ssm.codes + first, n);
  } else if (ssm.half) {
    pf.Add(ssm.half + first, 2 * n);
  } else {
    pf.Add(ssm.f32 + first, 4 * n);
  }
}

}  // namespace

namespace rt {

// What the threads of one DecodeTeam call share. Each TeamBlocks is reset
// by the last thread at the barrier after its stage, ready for the next layer.
struct DecodeTeamShared {
  int64_t batch = 0;
  int nt = 0;  // shares per TeamBlocks (the team may be smaller: the rest is taken over)
  RecurrentState* state = nullptr;
  TeamBlocks in_blocks, mid_blocks, step_blocks, out_blocks, head_blocks;
  int64_t n_in = 0, n_mid = 0, n_step = 0, n_out = 0, n_head = 0;
  int64_t step_take = 1;
  bool idle_prefetch = true;  // RuntimeOptions::idle_prefetch
  bool logits = false;        // the LM head runs after the last layer
  SpinBarrier barrier;
  void ResetIn() { in_blocks.Reset(n_in, nt, kChannelTake); }
  void ResetMid() { mid_blocks.Reset(n_mid, nt); }
  void ResetStep() { step_blocks.Reset(n_step, nt, step_take); }
  void ResetOut() { out_blocks.Reset(n_out, nt, kOutTake); }
};

}  // namespace rt

namespace {

// Thread t's in_proj rows of a layer: its share of the in_proj units, which
// are x rows then z rows (Mamba1: 2 · d_inner rows in two halves) or the rows
// in order (Mamba2).
void AddInProjShare(rt::IdlePrefetch& pf, const rt::Weight& in_proj, const rt::DecodeTeamShared& c,
                    int t, Arch arch, int64_t d_inner) {
  const Share u = ShareOf(c.n_in, t, c.nt);
  if (arch != Arch::kMamba1) {
    return AddRows(pf, in_proj, u.begin * kChannelUnit, u.end * kChannelUnit);
  }
  const int64_t x_units = c.n_in / 2;
  const int64_t base = u.begin < x_units ? 0 : d_inner;
  const int64_t first = u.begin < x_units ? u.begin : u.begin - x_units;
  const int64_t last = u.begin < x_units ? std::min(u.end, x_units) : u.end - x_units;
  AddRows(pf, in_proj, base + first * kChannelUnit,
          base + std::min(d_inner, last * kChannelUnit));
}

// Thread t's out_proj rows.
rt::IdlePrefetch OutProjShare(const rt::Weight& out_proj, const rt::DecodeTeamShared& c, int t) {
  rt::IdlePrefetch pf;
  if (!c.idle_prefetch) return pf;
  const Share u = ShareOf(c.n_out, t, c.nt);
  AddRows(pf, out_proj, u.begin * kOutUnit, u.end * kOutUnit);
  return pf;
}

}  // namespace

bool Runtime::Impl::DecodeTeamApplies(int64_t batch) const {
  if (decode_team == 0 || observer || simulate_act_quant) return false;
  const int nt = rt::ThreadCount(n_threads);
  if (nt < 2 || !rt::MatMulPlanApplies(batch) || !rt::Int8PlanApplies(batch)) return false;
  for (int l = 0; l < hp.n_layer; ++l) {
    const rt::LayerWeights& w = layers[l];
    const rt::LayerActs& act = w.act;
    // Column ranges need static (or no) scales where a stage quantizes in
    // place, and matmuls on the integer or float path (not the simulated one).
    for (ActSite site : {ActSite::kInProjOutput, ActSite::kConvOutput, ActSite::kDtProjOutput}) {
      if (act[site].mode == rt::ActQuant::Mode::kDynamicPerToken) return false;
    }
    if ((act[ActSite::kInProjInput].enabled() && !w.in_proj.quantized()) ||
        (act[ActSite::kOutProjInput].enabled() && !w.out_proj.quantized()) ||
        (act.dt_proj_input.enabled() && !w.dt_proj.quantized()) ||
        (act[ActSite::kConvOutput].enabled() && w.x_proj.present() && !w.x_proj.quantized()))
      return false;
  }
  if (hp.arch == Arch::kMamba1 &&
      (hp.d_inner < 2 * kChannelUnit * kChannelTake || !rt::Mamba1FusedStepApplies(hp.d_state)))
    return false;
  return decode_team == 1 || rt::WorthThreads(batch * 2 * hp.d_inner * hp.d_model, nt);
}

void Runtime::Impl::DecodeTeam(int64_t batch, RecurrentState& state, float* logits) {
  rt::Scratch& s = scratch;
  const int64_t T = batch, dm = hp.d_model;
  const int nt = rt::ThreadCount(n_threads);
  rt::Grow(s.team_normed, static_cast<size_t>(nt * T * dm));
  GrowStateScratch(batch);

  rt::DecodeTeamShared c;
  c.batch = batch;
  c.nt = nt;
  c.state = &state;
  if (hp.arch == Arch::kMamba1) {
    c.n_in = 2 * Blocks(hp.d_inner, kChannelUnit);  // x units, then z units
    c.n_mid = Blocks(hp.dt_rank + 2 * hp.d_state, kRowChunk);
    c.n_step = Blocks(hp.d_inner, kChannelUnit);
    c.step_take = kChannelTake;
  } else {
    c.n_in = Blocks(hp.in_proj_dim(), kChannelUnit);
    c.n_step = batch * hp.n_heads;
    c.step_take = 1;
  }
  c.n_out = Blocks(dm, kOutUnit);
  c.n_head = Blocks(hp.vocab_size, kHeadUnit);
  c.ResetIn();
  c.ResetMid();
  c.ResetStep();
  c.ResetOut();
  c.head_blocks.Reset(c.n_head, nt, kHeadTake);
  c.barrier.SetOversubscribed(nt > omp_get_num_procs());
  c.idle_prefetch = idle_prefetch;
  c.logits = logits != nullptr;

#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    float* normed = s.team_normed.data() + t * T * dm;
    for (int l = 0; l < hp.n_layer; ++l) {
      rt::RmsNormRows(s.hidden.data(), T, dm, layers[l].norm.f32, hp.norm_eps, normed, 1);
      if (hp.arch == Arch::kMamba1) {
        Mamba1TeamMixer(l, c, t, team, normed);
      } else {
        Mamba2TeamMixer(l, c, t, team, normed);
      }
      OutProjTeam(l, c, t, team);
    }
    if (logits) {
      rt::RmsNormRows(s.hidden.data(), T, dm, output_norm.f32, hp.norm_eps, normed, 1);
      const rt::RowsPlan head = rt::PlanMatMul(lm_head(), nullptr, normed, dm, T, logits,
                                               hp.vocab_size);
      while (const rt::TeamBlocks::Claim u = c.head_blocks.Next(t)) {
        head.Run(u.begin * kHeadUnit, std::min(hp.vocab_size, u.end * kHeadUnit));
      }
    }
  }
}

void Runtime::Impl::Mamba1TeamMixer(int l, rt::DecodeTeamShared& c, int t, int team,
                                    const float* normed) {
  rt::Scratch& s = scratch;
  const rt::LayerWeights& w = layers[l];
  const rt::LayerActs& act = w.act;
  const int64_t batch = c.batch, T = batch;
  const int64_t dm = hp.d_model, di = hp.d_inner, N = hp.d_state, R = hp.dt_rank, K = hp.d_conv;
  const int64_t ipd = 2 * di, dbc_dim = R + 2 * N, x_units = c.n_in / 2;
  float* conv_state = c.state->conv.data() + l * conv_floats_per_layer(batch);
  const rt::SsmStateRef ssm = LayerSsm(l, batch, *c.state);
  const float* conv_b = w.conv_b.present() ? w.conv_b.f32 : nullptr;

  // x rows then z rows: each thread's share is one contiguous stream of
  // in_proj (interleaving a block's x and z rows made it two, ~10% slower).
  const rt::RowsPlan in_proj = PlanMatMulAct(w.in_proj, &w.in_proj_bias,
                                             act[ActSite::kInProjInput], normed, dm, T,
                                             s.proj.data(), ipd);
  auto in_rows = [&](int64_t u0, int64_t u1) {  // units of x rows, or of z rows
    const bool z_rows = u0 >= x_units;
    const int64_t c0 = (z_rows ? u0 - x_units : u0) * kChannelUnit;
    const int64_t c1 = std::min(di, (z_rows ? u1 - x_units : u1) * kChannelUnit);
    const int64_t base = z_rows ? di : 0;
    in_proj.Run(base + c0, base + c1);
    rt::FakeQuantizeColumns(act[ActSite::kInProjOutput], s.proj.data(), ipd, T, base + c0,
                            base + c1);
    if (z_rows) return;
    for (int64_t b = 0; b < batch; ++b) {
      rt::CausalConvSilu(s.proj.data() + b * ipd, ipd, 1, c0, c1, K, w.conv_w.f32, conv_b,
                         conv_state + b * di * (K - 1), s.conv_out.data() + b * di, di);
    }
    rt::FakeQuantizeColumns(act[ActSite::kConvOutput], s.conv_out.data(), di, T, c0, c1);
  };
  while (const rt::TeamBlocks::Claim u = c.in_blocks.Next(t)) {
    const int64_t split = std::clamp(x_units, u.begin, u.end);  // a claim may span x and z
    if (u.begin < split) in_rows(u.begin, split);
    if (split < u.end) in_rows(split, u.end);
  }
  rt::IdlePrefetch x_proj_share;  // while waiting: its x_proj rows
  if (c.idle_prefetch) {
    const Share u = ShareOf(c.n_mid, t, c.nt);
    AddRows(x_proj_share, w.x_proj, u.begin * kRowChunk, u.end * kRowChunk);
  }
  c.barrier.Wait(team, [&] { c.ResetIn(); }, x_proj_share);

  const rt::RowsPlan x_proj = PlanMatMulAct(w.x_proj, nullptr, act[ActSite::kConvOutput],
                                            s.conv_out.data(), di, T, s.dbc.data(), dbc_dim);
  while (const rt::TeamBlocks::Claim u = c.mid_blocks.Next(t)) {
    x_proj.Run(u.begin * kRowChunk, std::min(dbc_dim, u.end * kRowChunk));
  }
  rt::IdlePrefetch step_claim;  // while waiting: what its first dt_proj + step claim reads
  if (c.idle_prefetch) {
    const int64_t c0 = ShareOf(c.n_step, t, c.nt).begin * kChannelUnit;
    const int64_t c1 = std::min(di, c0 + kChannelTake * kChannelUnit);
    AddRows(step_claim, w.dt_proj, c0, c1);
    AddStateRows(step_claim, ssm, N, c0, c1 - c0);
    step_claim.Add(w.a.data() + c0 * N, (c1 - c0) * N * 4);
  }
  c.barrier.Wait(
      team,
      [&] {
        rt::FakeQuantize(act[ActSite::kXProjOutput], s.dbc.data(), dbc_dim, T, dbc_dim, 1);
        c.ResetMid();
      },
      step_claim);

  const rt::RowsPlan dt_proj = PlanMatMulAct(w.dt_proj, &w.dt_bias, act.dt_proj_input,
                                             s.dbc.data(), dbc_dim, T, s.dt.data(), di);
  while (const rt::TeamBlocks::Claim u = c.step_blocks.Next(t)) {
    const int64_t c0 = u.begin * kChannelUnit, c1 = std::min(di, u.end * kChannelUnit);
    dt_proj.Run(c0, c1);
    rt::FakeQuantizeColumns(act[ActSite::kDtProjOutput], s.dt.data(), di, T, c0, c1);
    for (int64_t b = 0; b < batch; ++b) {
      rt::Mamba1StepChannelsFused(ssm, b * di, c0, c1, N, s.conv_out.data() + b * di,
                                s.dt.data() + b * di, s.dbc.data() + b * dbc_dim + R,
                                s.proj.data() + b * ipd + di, w.a.data(), w.d.f32,
                                s.y.data() + b * di);
    }
  }
  c.barrier.Wait(
      team,
      [&] {
        if (w.has_out_proj_hadamard)
          HadamardTransformRows(w.out_proj_hadamard, s.y.data(), T, di, 1);
        c.ResetStep();
      },
      OutProjShare(w.out_proj, c, t));
}

void Runtime::Impl::Mamba2TeamMixer(int l, rt::DecodeTeamShared& c, int t, int team,
                                    const float* normed) {
  rt::Scratch& s = scratch;
  const rt::LayerWeights& w = layers[l];
  const rt::LayerActs& act = w.act;
  const int64_t batch = c.batch, T = batch;
  const int64_t dm = hp.d_model, di = hp.d_inner, N = hp.d_state, K = hp.d_conv;
  const int64_t H = hp.n_heads, P = hp.head_dim, G = hp.n_groups, cd = hp.conv_dim();
  const int64_t ipd = hp.in_proj_dim(), hpg = H / G;
  float* conv_state = c.state->conv.data() + l * conv_floats_per_layer(batch);
  const rt::SsmStateRef ssm = LayerSsm(l, batch, *c.state);
  const float* conv_b = w.conv_b.present() ? w.conv_b.f32 : nullptr;
  const bool clamp = !(hp.dt_limit_min == 0.0 && std::isinf(hp.dt_limit_max) &&
                       hp.dt_limit_max > 0);
  const float dt_min = static_cast<float>(hp.dt_limit_min);
  const float dt_max = static_cast<float>(hp.dt_limit_max);

  // proj row: z [di], xBC [cd], dt [H]; blocks of rows in that order
  const rt::RowsPlan in_proj = PlanMatMulAct(w.in_proj, &w.in_proj_bias,
                                             act[ActSite::kInProjInput], normed, dm, T,
                                             s.proj.data(), ipd);
  while (const rt::TeamBlocks::Claim u = c.in_blocks.Next(t)) {
    const int64_t r0 = u.begin * kChannelUnit, r1 = std::min(ipd, u.end * kChannelUnit);
    in_proj.Run(r0, r1);
    rt::FakeQuantizeColumns(act[ActSite::kInProjOutput], s.proj.data(), ipd, T, r0, r1);
    const int64_t c0 = std::max(r0, di) - di, c1 = std::min(r1, di + cd) - di;
    if (c0 < c1) {  // conv channels [c0, c1) of xBC
      for (int64_t b = 0; b < batch; ++b) {
        rt::CausalConvSilu(s.proj.data() + b * ipd + di, ipd, 1, c0, c1, K, w.conv_w.f32, conv_b,
                           conv_state + b * cd * (K - 1), s.conv_out.data() + b * cd, cd);
      }
      rt::FakeQuantizeColumns(act[ActSite::kConvOutput], s.conv_out.data(), cd, T, c0, c1);
    }
    const int64_t h0 = std::max(r0, di + cd) - (di + cd), h1 = std::min(r1, ipd) - (di + cd);
    for (int64_t b = 0; b < batch; ++b) {  // heads [h0, h1): softplus(dt + bias), clamped
      const float* raw = s.proj.data() + b * ipd + di + cd;
      for (int64_t h = h0; h < h1; ++h) {
        float v = rt::Softplus(raw[h] + w.dt_bias.f32[h]);
        if (clamp) v = std::min(std::max(v, dt_min), dt_max);
        s.dt[b * H + h] = v;
      }
    }
  }
  rt::IdlePrefetch heads_share;  // while waiting: the state of its heads
  if (c.idle_prefetch) {
    const Share u = ShareOf(c.n_step, t, c.nt);  // units: b · H + h, state rows of P each
    AddStateRows(heads_share, ssm, N, u.begin * P, (u.end - u.begin) * P);
  }
  c.barrier.Wait(team, [&] { c.ResetIn(); }, heads_share);

  const int64_t state_per_seq = H * P * N;
  while (const rt::TeamBlocks::Claim u = c.step_blocks.Next(t)) {
    const int64_t bh = u.begin;  // claims of one head (step_take 1)
    const int64_t b = bh / H, h = bh % H, g = h / hpg;
    const float* row = s.conv_out.data() + b * cd;
    const float *x = row + h * P, *B = row + di + g * N, *C = row + di + G * N + g * N;
    float* y = s.y.data() + b * di + h * P;
    if (ssm.codes) {
      rt::Mamba2StepHeadInt8(*ssm.sq, b * H * P + h * P, P, x, B, C, s.dt[b * H + h], w.a[h],
                             w.d.f32[h], ssm.codes, y);
    } else if (ssm.half) {
      rt::Mamba2StepHeadHalf(b * H * P + h * P, P, N, x, B, C, s.dt[b * H + h], w.a[h],
                             w.d.f32[h], ssm.half, y);
    } else {
      rt::Mamba2StepHead(P, N, x, B, C, s.dt[b * H + h], w.a[h], w.d.f32[h],
                         ssm.f32 + b * state_per_seq + h * P * N, y);
    }
    // the first half of the gated RMSNorm: y · silu(z) for the head's channels
    rt::GateChannels(y, s.proj.data() + b * ipd + h * P, P, s.gated.data() + b * di + h * P);
  }
  c.barrier.Wait(
      team,
      [&] {
        for (int64_t b = 0; b < batch; ++b) {
          rt::GroupRmsNormRow(s.gated.data() + b * di, di, hp.norm_group_size, w.ssm_norm.f32,
                              hp.norm_eps);
        }
        if (w.has_out_proj_hadamard)
          HadamardTransformRows(w.out_proj_hadamard, s.gated.data(), T, di, 1);
        c.ResetStep();
      },
      OutProjShare(w.out_proj, c, t));
}

void Runtime::Impl::OutProjTeam(int l, rt::DecodeTeamShared& c, int t, int team) {
  rt::Scratch& s = scratch;
  const rt::LayerWeights& w = layers[l];
  const int64_t batch = c.batch, dm = hp.d_model, di = hp.d_inner;
  const float* in = hp.arch == Arch::kMamba1 ? s.y.data() : s.gated.data();  // [batch][di]
  const rt::RowsPlan out_proj =
      PlanMatMulAct(w.out_proj, &w.out_proj_bias, w.act[ActSite::kOutProjInput], in, di, batch,
                    s.mixer_out.data(), dm);
  while (const rt::TeamBlocks::Claim u = c.out_blocks.Next(t)) {
    const int64_t r0 = u.begin * kOutUnit, r1 = std::min(dm, u.end * kOutUnit);
    out_proj.Run(r0, r1);
    for (int64_t b = 0; b < batch; ++b) {  // the residual, as Forward adds it
      float* h = s.hidden.data() + b * dm;
      const float* o = s.mixer_out.data() + b * dm;
      for (int64_t r = r0; r < r1; ++r) h[r] += o[r];
    }
  }
  rt::IdlePrefetch next;  // while waiting: the next layer's in_proj rows, or the LM head's
  if (c.idle_prefetch && l + 1 < hp.n_layer) {
    AddInProjShare(next, layers[l + 1].in_proj, c, t, hp.arch, di);
  } else if (c.idle_prefetch && c.logits) {
    const Share u = ShareOf(c.n_head, t, c.nt);
    AddRows(next, lm_head(), u.begin * kHeadUnit, u.end * kHeadUnit);
  }
  c.barrier.Wait(team, [&] { c.ResetOut(); }, next);
}

}  // namespace ssmq
