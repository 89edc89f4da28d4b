// Runtime internals shared by runtime.cpp and the two mixers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "format/status.h"
#include "model/act_sites.h"
#include "model/model.h"
#include "runtime_cpu/act_quant.h"
#include "runtime_cpu/hadamard.h"
#include "runtime_cpu/kernels.h"
#include "runtime_cpu/observer.h"
#include "runtime_cpu/runtime.h"
#include "runtime_cpu/huge_arena.h"
#include "runtime_cpu/weight.h"

namespace ssmq {

namespace rt {

struct DecodeTeamShared;  // decode_team.cpp

// The int8 SSM-state cache of one layer (site ssm_state): state row r (mamba1
// channel, mamba2 head·head_dim + p) at state index n is stored as
// clamp(RNE(h · (1/s)), ±127) with s = scales[(r / rows_per_group)·d_state + n].
struct StateQuant {
  int64_t rows_per_group = 0;
  int64_t d_state = 0;
  std::vector<float> scales;      // [d_inner / rows_per_group][d_state]
  std::vector<float> inv_scales;  // 1 / scales
  bool enabled() const { return !scales.empty(); }
};

// A layer's state is batch · rows_per_seq rows of d_state values (Mamba1:
// rows are channels; Mamba2: (head, head-dim) pairs), the scale row of row r
// being (r mod rows_per_seq) / rows_per_group. These convert rows
// [row0, row0 + n_rows) of the layer arrays `codes` and `h` (whole-layer base
// pointers): the mixers call them inside their parallel scan loops for the
// rows each work item scans, so the int8 cache costs no serial pass.
void DequantizeStateRows(const StateQuant& sq, const int8_t* codes, int64_t row0, int64_t n_rows,
                         float* h);
void QuantizeStateRows(const StateQuant& sq, const float* h, int64_t row0, int64_t n_rows,
                       int8_t* codes);

// One Mamba2 recurrent step of one head straight on the int8 cache: rows
// [row0, row0 + P) of the layer's codes are dequantized, stepped
// (kernels.h: Mamba2StepHead) and requantized. With AVX-512 in registers,
// in the code domain (state_quant.cpp: the same values up to float
// rounding); else Mamba2StepHeadInt8Reference.
void Mamba2StepHeadInt8(const StateQuant& sq, int64_t row0, int64_t P, const float* x,
                        const float* B, const float* C, float dt, float A, float D,
                        int8_t* codes, float* y);
// Through a float copy: DequantizeStateRows + Mamba2StepHead + QuantizeStateRows.
void Mamba2StepHeadInt8Reference(const StateQuant& sq, int64_t row0, int64_t P, const float* x,
                                 const float* B, const float* C, float dt, float A, float D,
                                 int8_t* codes, float* y);

// f16 state rows (RuntimeOptions::f16_state) [row0, row0 + n_rows) of d_state
// values, to and from f32, like the int8 ones (round to nearest even).
void HalfStateRowsToF32(const uint16_t* half, int64_t row0, int64_t n_rows, int64_t d_state,
                        float* h);
void F32StateRowsToHalf(const float* h, int64_t row0, int64_t n_rows, int64_t d_state,
                        uint16_t* half);

// One Mamba2 recurrent step of one head on an f16 state: rows [row0, row0 + P)
// converted, stepped and rounded back in registers. Same arithmetic as Load +
// Mamba2StepHead + Store.
void Mamba2StepHeadHalf(int64_t row0, int64_t P, int64_t N, const float* x, const float* B,
                        const float* C, float dt, float A, float D, uint16_t* half, float* y);

// Where a mixer finds a layer's SSM state: `f32` is always where the scan
// runs; with an int8 cache (`codes` non-null) or an f16 state (`half`
// non-null) f32 is scratch that the mixer fills from them and writes back to
// them, row range by row range.
struct SsmStateRef {
  float* f32 = nullptr;
  int8_t* codes = nullptr;
  const StateQuant* sq = nullptr;
  uint16_t* half = nullptr;
  int64_t d_state = 0;  // with `half`: values per row
  void Load(int64_t row0, int64_t n_rows) const {
    if (codes) DequantizeStateRows(*sq, codes, row0, n_rows, f32);
    if (half) HalfStateRowsToF32(half, row0, n_rows, d_state, f32);
  }
  void Store(int64_t row0, int64_t n_rows) const {
    if (codes) QuantizeStateRows(*sq, f32, row0, n_rows, codes);
    if (half) F32StateRowsToHalf(f32, row0, n_rows, d_state, half);
  }
};

// One Mamba1 decode step (one token) of channels [d0, d1) of one sequence
// whose channel d is state row row0 + d, straight on the state storage: an
// int8 cache or f16 state is read and written in registers (no f32 copy),
// 16 channels at a time, with AVX-512 and d_state a multiple of 16
// (Mamba1FusedStepApplies, kernels.h; mamba1_step.cpp). Same arithmetic as
// Load + Mamba1ScanChannels(L = 1) + Store. Elsewhere it is exactly that.
// x, dt_raw, z, y: the sequence's rows [d_inner]; bc: its B [N] then C [N].
void Mamba1StepChannelsFused(const SsmStateRef& ssm, int64_t row0, int64_t d0, int64_t d1,
                           int64_t N, const float* x, const float* dt_raw, const float* bc,
                           const float* z, const float* A, const float* D, float* y);

// Activation quantization of one layer (model/act_sites.h): one ActQuant per
// row site (kNone where the file keeps the site float), the dt_proj input
// (mamba1: the dt_in slice of x_proj_output) and the state cache.
struct LayerActs {
  ActQuant site[kActSiteCount];
  ActQuant dt_proj_input;
  StateQuant state;
  const ActQuant& operator[](ActSite s) const { return site[static_cast<int>(s)]; }
};

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
  LayerActs act;  // all kNone for float and weight-only files
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
  std::vector<int8_t> act_codes;  // int8 matmul input [tokens][cols]
  std::vector<float> act_row_scales;  // [tokens]
  std::vector<float> state_f32;   // one layer's dequantized int8 SSM state
  std::vector<float> team_normed; // DecodeTeam: each thread's normed rows [threads][tokens][d_model]
};

}  // namespace rt

struct Runtime::Impl {
  const Model* model = nullptr;
  HParams hp;
  int n_threads = 0;  // <= 0: OpenMP default at call time
  bool simulate_act_quant = false;  // RuntimeOptions::simulate_act_quant
  int decode_team = -1;             // RuntimeOptions::decode_team
  bool idle_prefetch = true;        // RuntimeOptions::idle_prefetch
  bool any_float_state = true, any_int8_state = false;  // which state buffers exist
  bool any_half_state = false;                          // (RuntimeOptions::f16_state)
  rt::HugeArena arena;     // the weights laid out at load (RuntimeOptions::huge_pages)
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
  Status LayOutMatmulWeights(const RuntimeOptions& opts);
  void OutProjInputTransform(int l, float* y, int64_t T);

  // y = w · x̂ where x̂ is x quantized as `aq` says (kNone: plain MatMul).
  // Integer path: int8 codes -> Int8MatMul (x untouched). Simulated path (the
  // oracle), or a float weight: x <- x̂ in place, then the float MatMul.
  void MatMulAct(const rt::Weight& w, const rt::Weight* bias, const rt::ActQuant& aq, float* x,
                 int64_t x_stride, int64_t T, float* y, int64_t y_stride);
  // MatMulAct's integer or float path prepared on the calling thread (its own
  // buffers; x untouched) for a thread of a mixer's own team: plan.Run(r0, r1).
  // Not for the simulated path; T within MatMulPlanApplies / Int8PlanApplies.
  rt::RowsPlan PlanMatMulAct(const rt::Weight& w, const rt::Weight* bias, const rt::ActQuant& aq,
                             const float* x, int64_t x_stride, int64_t T, float* y,
                             int64_t y_stride) const;

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
  // path, which may leave ssm.f32 (scratch for an int8 / f16 state) stale;
  // otherwise the scan (Mamba2: chunked), after which ssm.f32 holds the state.
  void Mamba1Mixer(int l, int64_t batch, int64_t seq_len, float* conv_state,
                   const rt::SsmStateRef& ssm, bool recurrent);
  // Decode of one token per sequence in one OpenMP team (decode_team.cpp,
  // RuntimeOptions::decode_team): whether it applies to `batch` sequences,
  // and the whole step from the embedded hidden rows to the logits
  // ([batch][vocab]; nullptr: none). The other three are its stages, run by
  // thread t of `team` threads (normed: that thread's normed rows).
  bool DecodeTeamApplies(int64_t batch) const;
  void DecodeTeam(int64_t batch, RecurrentState& state, float* logits);
  void Mamba1TeamMixer(int l, rt::DecodeTeamShared& c, int t, int team, const float* normed);
  void Mamba2TeamMixer(int l, rt::DecodeTeamShared& c, int t, int team, const float* normed);
  void OutProjTeam(int l, rt::DecodeTeamShared& c, int t, int team);
  // Where layer l's SSM state is for `batch` sequences (GrowStateScratch
  // first: an int8 or f16 state is converted through scratch.state_f32).
  void GrowStateScratch(int64_t batch);
  rt::SsmStateRef LayerSsm(int l, int64_t batch, RecurrentState& state);
  void Mamba2Mixer(int l, int64_t batch, int64_t seq_len, float* conv_state, const rt::SsmStateRef& ssm,
                   bool recurrent);
  // Which logits Forward computes: every position, only each sequence's last
  // one ([batch][vocab]), or none (a PrefillLast piece before the last).
  enum class Logits { kAll, kLast, kNone };
  Status Forward(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len,
                 RecurrentState& state, std::vector<float>& logits, bool recurrent,
                 Logits which = Logits::kAll);
};

}  // namespace ssmq
