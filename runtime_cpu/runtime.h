// The reference CPU runtime: executes a loaded Model (Mamba1 / Mamba2).
// Two paths that must agree: Prefill (whole sequences; chunked SSD scan for
// Mamba2) and Step (one token per sequence with conv + SSM recurrent state).
// fp32 accumulation throughout; OpenMP across channels/heads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "format/status.h"
#include "model/model.h"

namespace ssmq {

class Observer;  // runtime_cpu/observer.h

// Recurrent state of one batch of sequences, all layers.
//   conv: [n_layer][batch][conv_dim][d_conv-1]   (last d_conv-1 conv inputs, oldest first)
//   ssm:  mamba1 [n_layer][batch][d_inner][d_state]
//         mamba2 [n_layer][batch][n_heads][head_dim][d_state]
//   ssm_q: the same layout as ssm, int8 codes, used by the layers whose file
//          quantizes the state (site ssm_state of w8a8 / w4a8 files); those
//          layers' slices of ssm are unused.
//   ssm_h: the same layout as ssm, IEEE half bits, used instead of ssm by the
//          other layers when RuntimeOptions::f16_state is set.
// Each vector is n_layer slices long when some layer uses it and empty otherwise.
struct RecurrentState {
  int64_t batch = 0;
  std::vector<float> conv;
  std::vector<float> ssm;
  std::vector<int8_t> ssm_q;
  std::vector<uint16_t> ssm_h;
};

struct RuntimeOptions {
  int n_threads = 0;  // <= 0: OpenMP default
  // Run activation-quantized matmuls on the simulated (fake-quant) path: the
  // float input is replaced by its int8 grid values and multiplied by the
  // dequantized weights in fp32. The oracle the integer path is tested against.
  bool simulate_act_quant = false;
  // Keep the float SSM state in f16 between calls (round to nearest even
  // after each Prefill / Step; the scan itself runs in f32). Half the state
  // memory and decode traffic (mamba2-370m: 49 instead of 98 MiB per sequence);
  // mamba_ssm also keeps the state in the model's 16-bit dtype. Layers with an
  // int8 state cache keep it.
  bool f16_state = false;
  // Mamba1 decode (one token per sequence): the whole step in one OpenMP
  // team, threads meeting at a spin barrier between stages and taking
  // ranges of channels through in_proj + conv and dt_proj + step
  // (decode_team.cpp; the same values as stage by stage, one region per
  // stage). -1: when the layers are big enough to use threads; 0: never;
  // 1: whenever it applies (tests compare it with 0).
  int decode_team = -1;
  // In the decode team, a thread waiting at a barrier prefetches the first
  // bytes of its share of the next stage (idle_prefetch.h).
  bool idle_prefetch = true;
  // Copy the Q4 and Q8 matmul weights into 16-row tiles at load
  // (weight_tiles.h), handing the row-major pages back: the same resident
  // size, faster decode kernels (every quantized scheme), ~0.3 s more load
  // time at 370m.
  bool weight_tiles = true;
  // Lay the quantized decode matmul weights (the Q4 tiles, and copies of
  // the other Q8 / Q4 matmul weights and LM head) out in one mapping on
  // transparent huge pages (huge_arena.h), handing the file's pages back:
  // the same resident size, fewer TLB misses per decoded token (decode
  // +5-16% at 370m), ~1 s more load time per 370 MB on the dev VM.
  bool huge_pages = true;
};

class Runtime {
 public:
  // The model must outlive the runtime. Float tensors (f16/bf16) are
  // converted to f32 once here; f32 tensors are used in place (zero-copy).
  static Result<std::unique_ptr<Runtime>> Create(const Model& model, int n_threads = 0);
  static Result<std::unique_ptr<Runtime>> Create(const Model& model, const RuntimeOptions& opts);
  ~Runtime();

  const HParams& hparams() const;
  RecurrentState NewState(int64_t batch) const;  // zeroed
  void ResetState(RecurrentState& s) const;

  // tokens: [batch][seq_len] row-major; logits out: [batch][seq_len][vocab].
  // Starts from `state` (zero for a fresh sequence) and leaves the final state
  // in it, so Step can continue where Prefill stopped.
  Status Prefill(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len,
                 RecurrentState& state, std::vector<float>& logits);

  // The same as Prefill, but only the logits of each sequence's last position
  // come out ([batch][vocab]), and the prompt runs in pieces of at most
  // kPrefillPiece tokens per sequence with the state carried between them,
  // so memory does not grow with the prompt (scratch ~ batch * piece rows,
  // no [seq_len][vocab] logits). What generation and `ssmq bench` use.
  // 96: a piece's scratch is ~54 KB per token at mamba-370m (1.8-2.0 MB
  // less peak RSS than pieces of 128, in every scheme), while the prefill
  // kernels still convert each weight panel once per 96 tokens.
  static constexpr int64_t kPrefillPiece = 96;
  Status PrefillLast(std::span<const int32_t> tokens, int64_t batch, int64_t seq_len,
                     RecurrentState& state, std::vector<float>& logits);

  // One token per sequence: tokens [batch]; logits out: [batch][vocab].
  Status Step(std::span<const int32_t> tokens, RecurrentState& state, std::vector<float>& logits);

  // Attaches an observer called with the activations of every site
  // (runtime_cpu/observer.h) during Prefill/Step; nullptr detaches. Not owned.
  void SetObserver(Observer* observer);

  struct Impl;
 private:
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Perplexity with the fixtures' convention: ids cut into non-overlapping
// windows of `window` (tail dropped), every position but the first of each
// window scored, ppl = exp(mean NLL), softmax over all vocab rows (padded too).
struct PerplexityResult {
  double perplexity = 0;
  int64_t tokens_scored = 0;
  double mean_nll = 0;
};
Result<PerplexityResult> EvaluatePerplexity(Runtime& rt, std::span<const int32_t> ids,
                                            int64_t window = 256, int64_t batch = 8,
                                            const std::function<void(int64_t, int64_t)>& progress = {});

struct SamplingOptions {
  bool greedy = true;
  float temperature = 1.0f;
  float top_p = 1.0f;
  uint64_t seed = 0;
  int32_t max_token_id = -1;  // ids >= this are never sampled (tokenizer size); -1 = vocab
};
// Runs prompt then n_new steps; calls on_token(id) for each generated id.
// Returns prompt ids followed by generated ids.
Result<std::vector<int32_t>> Generate(Runtime& rt, std::span<const int32_t> prompt, int n_new,
                                      const SamplingOptions& opts,
                                      const std::function<void(int32_t)>& on_token = {});

}  // namespace ssmq
