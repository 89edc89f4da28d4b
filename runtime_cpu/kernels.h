// The numeric building blocks of the Mamba blocks, on plain f32 arrays.
// Each works on one sequence (or a range of channels / one B-C group of
// it) so callers parallelize over batch x channels / groups with OpenMP.
// Strides are in floats between consecutive tokens.
#pragma once

#include <cstdint>

namespace ssmq::rt {

// out[r][i] = x[r][i] / sqrt(mean_i(x[r]^2) + eps) * weight[i]; rows of `dim`.
void RmsNormRows(const float* x, int64_t n_rows, int64_t dim, const float* weight, double eps,
                 float* out, int n_threads);

// x[i] = silu(x[i]), i < n: 16 / 8 lanes at a time where the CPU has AVX-512 /
// AVX2 (Silu512 / Silu256, within 2 ulp of the scalar Silu), the tail by Silu.
void SiluInPlace(float* x, int64_t n);

// Causal depthwise conv + SiLU over time for channels [c0, c1) of one
// sequence of L tokens, continuing from and updating the conv state.
//   in(t, c)  = src[t*src_stride + c] for t >= 0,
//               state[c*(K-1) + (K-1) + t] for -(K-1) <= t < 0 (oldest first)
//   out[t*out_stride + c] = silu(bias[c] + sum_k w[c*K + k] * in(t - (K-1) + k, c))
// Afterwards state[c][j] = in(L - (K-1) + j, c), j < K-1. bias may be null.
void CausalConvSilu(const float* src, int64_t src_stride, int64_t L, int64_t c0, int64_t c1,
                    int64_t K, const float* w, const float* bias, float* state, float* out,
                    int64_t out_stride);

// Mamba1 selective scan of one sequence, channels [d0, d1), L tokens, in time order,
// with dt[t][d] = softplus(dt_raw[t*dt_stride + d]) (dt_raw: dt_proj output + bias):
//   s[d][n] = exp(dt[t][d] * A[d][n]) * s[d][n] + dt[t][d] * B[t][n] * x[t][d]
//   y[t][d] = (sum_n s[d][n] * C[t][n] + D[d] * x[t][d]) * silu(z[t][d])
// B[t][n] = bc[t*bc_stride + n], C[t][n] = bc[t*bc_stride + N + n].
// A: [d_inner][N] (already -exp(A_log)); state: [d_inner][N], updated in place.
void Mamba1ScanChannels(int64_t L, int64_t d0, int64_t d1, int64_t N, const float* x,
                        int64_t x_stride, const float* dt_raw, int64_t dt_stride, const float* bc,
                        int64_t bc_stride, const float* z, int64_t z_stride, const float* A,
                        const float* D, float* state, float* y, int64_t y_stride);

// Whether Mamba1ScanChannels runs its AVX2 scan (L > 1, or L = 1 without
// the fused step): an AVX2 (not AVX-512) CPU, d_state a multiple of 8, at
// most 64. It equals Mamba1ScanChannelsGeneric to float rounding.
bool Mamba1ScanAvx2Applies(int64_t N);

// Mamba1ScanChannels without the fused decode step below or the AVX2 scan: the blocked
// plain loops (vectorized by the compiler) for every L. The tests'
// reference for the step.
void Mamba1ScanChannelsGeneric(int64_t L, int64_t d0, int64_t d1, int64_t N, const float* x,
                               int64_t x_stride, const float* dt_raw, int64_t dt_stride,
                               const float* bc, int64_t bc_stride, const float* z,
                               int64_t z_stride, const float* A, const float* D, float* state,
                               float* y, int64_t y_stride);

// The decode step (L = 1) fused over channel blocks, 16 channels at a time
// with AVX-512 and 8 with AVX2 (mamba1_step.cpp), when
// Mamba1FusedStepApplies(N): an AVX2 or AVX-512 CPU and d_state a multiple
// of 16. Mamba1ScanChannels takes it for L = 1; the
// mixer's decode calls the SsmStateRef form (runtime_impl.h), which also
// reads and writes an int8 or f16 state in place. Arguments as
// Mamba1ScanChannels for one token (x, dt_raw, z, y indexed by channel;
// bc: B [N] then C [N]).
bool Mamba1FusedStepApplies(int64_t N);
void Mamba1StepChannelsFused(int64_t d0, int64_t d1, int64_t N, const float* x, const float* dt_raw,
                           const float* bc, const float* z, const float* A, const float* D,
                           float* state, float* y);

// Mamba2 dimensions. Per token the conv output row holds x [H*P], B [G][N], C [G][N].
struct Mamba2Dims {
  int64_t n_heads = 0;   // H
  int64_t head_dim = 0;  // P
  int64_t n_groups = 0;  // G; head h uses group h / (H/G)
  int64_t d_state = 0;   // N
  int64_t d_inner() const { return n_heads * head_dim; }
  int64_t heads_per_group() const { return n_heads / n_groups; }
};

// Floats of scratch Mamba2ChunkScanGroup needs for these dims and chunk size.
int64_t Mamba2ChunkScratchFloats(const Mamba2Dims& dims, int64_t chunk);

// Mamba2 SSD scan of the heads of group g of one sequence, L tokens, in
// chunks of `chunk` tokens: inside a chunk with cumulative log-decays
// cs[i] = sum_{k<=i} dt[k]*A (chunk-local),
//   y[i] = exp(cs[i]) * C_i . S_prev                          (state from before the chunk)
//        + sum_{j<=i} (C_i . B_j) * exp(cs[i]-cs[j]) * dt[j] * x[j]   (decay-masked quadratic form)
//        + D * x[i]
//   S_next = exp(cs[q-1]) * S_prev + sum_j exp(cs[q-1]-cs[j]) * dt[j] * x[j] (outer) B_j
// which equals the token-by-token recurrence. xbc: conv outputs (row stride
// xbc_stride); dt: [t*dt_stride + h] after softplus and clamp; A, D: [H];
// state: this sequence's [H][P][N]; y: [t*y_stride + h*P + p].
// Heads [h0, h1) (all in group g) are scanned: a group's heads may be split
// across threads (each slice recomputes the group's C.B products, a small
// part of the work) so that a single-group model still uses every core.
// Per chunk that is four matrix products (C.B^T, C.S^T, the masked
// quadratic form times x, the state update); with AVX-512 or AVX2 + FMA and
// head_dim, d_state multiples of 16 they run as register-tiled kernels,
// elsewhere as plain loops. scratch: Mamba2ChunkScratchFloats(dims, chunk)
// floats.
void Mamba2ChunkScanGroup(const Mamba2Dims& dims, int64_t g, int64_t h0, int64_t h1, int64_t L,
                          int64_t chunk, const float* xbc, int64_t xbc_stride, const float* dt,
                          int64_t dt_stride, const float* A, const float* D, float* state,
                          float* y, int64_t y_stride, float* scratch);
// The plain loops of Mamba2ChunkScanGroup whatever the CPU (what the tests
// compare the tiled kernels with).
void Mamba2ChunkScanGroupReference(const Mamba2Dims& dims, int64_t g, int64_t h0, int64_t h1,
                                   int64_t L, int64_t chunk, const float* xbc, int64_t xbc_stride,
                                   const float* dt, int64_t dt_stride, const float* A,
                                   const float* D, float* state, float* y, int64_t y_stride,
                                   float* scratch);

// One recurrent step of head h of one sequence (x, B, C: that head's / group's rows):
//   S[p][n] = exp(dt*A) * S[p][n] + dt * x[p] * B[n];  y[p] = C . S[p] + D * x[p]
void Mamba2StepHead(int64_t P, int64_t N, const float* x, const float* B, const float* C,
                    float dt, float A, float D, float* S, float* y);

// Gated RMSNorm (Mamba2): v = y * silu(z), normalized over consecutive
// groups of `group` channels, times weight. Row-wise, `dim` channels.
// GateChannels and GroupRmsNormRow are its two halves (GatedRmsNormRows is
// exactly one after the other): out[i] = y[i] * silu(z[i]) for n channels,
// then each group of v scaled in place.
void GateChannels(const float* y, const float* z, int64_t n, float* out);
void GroupRmsNormRow(float* v, int64_t dim, int64_t group, const float* weight, double eps);
void GatedRmsNormRows(const float* y, int64_t y_stride, const float* z, int64_t z_stride,
                      int64_t n_rows, int64_t dim, int64_t group, const float* weight,
                      double eps, float* out, int64_t out_stride, int n_threads);

}  // namespace ssmq::rt
