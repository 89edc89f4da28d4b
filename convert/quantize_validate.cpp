// ValidateQuantized: see quantize_validate.h.
#include "convert/quantize_validate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "convert/gguf_import.h"
#include "convert/reorder.h"
#include "runtime_cpu/hadamard.h"
#include "runtime_cpu/observer.h"
#include "runtime_cpu/runtime.h"

namespace ssmq {

namespace {

// Keeps the mixer output of every layer of one Prefill ([n_layer][T*d_model]).
class MixerOutputRecorder : public Observer {
 public:
  explicit MixerOutputRecorder(int n_layer) : outputs_(static_cast<size_t>(n_layer)) {}
  void Observe(ObsSite site, int layer, const float* data, int64_t rows, int64_t cols) override {
    if (site != ObsSite::kOutProjOutput || layer < 0 ||
        layer >= static_cast<int>(outputs_.size()))
      return;
    outputs_[static_cast<size_t>(layer)].assign(data, data + rows * cols);
  }
  const std::vector<float>& output(int layer) const { return outputs_[static_cast<size_t>(layer)]; }
  std::vector<float>& mutable_output(int layer) { return outputs_[static_cast<size_t>(layer)]; }

 private:
  std::vector<std::vector<float>> outputs_;
};

bool IsAuxTensor(const std::string& name) {
  return name.ends_with(".scale") || name.ends_with(".zero") ||
         name.find(".act.") != std::string::npos;
}

// log-softmax of one row into out (double).
void LogSoftmax(const float* row, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  double m = row[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, static_cast<double>(row[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(row[i] - m);
  const double lse = m + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = row[i] - lse;
}

}  // namespace

double Sqnr(std::span<const float> ref, std::span<const float> approx) {
  double signal = 0, noise = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(ref[i]) - approx[i];
    signal += static_cast<double>(ref[i]) * ref[i];
    noise += d * d;
  }
  if (noise == 0) return std::numeric_limits<double>::infinity();
  if (signal == 0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

Result<ValidationReport> ValidateQuantized(const Model& quant, const Model& reference,
                                           std::span<const int32_t> ids,
                                           const ValidationOptions& opts) {
  const HParams& a = quant.hp;
  const HParams& b = reference.hp;
  if (a.arch != b.arch || a.d_model != b.d_model || a.n_layer != b.n_layer ||
      a.vocab_size != b.vocab_size || a.d_inner != b.d_inner || a.d_state != b.d_state) {
    return Status(StatusCode::kInvalidArgument,
                  "validate: the two models differ in architecture or dimensions");
  }
  if (opts.window < 2 || opts.activation_windows < 1) {
    return Status(StatusCode::kInvalidArgument, "validate: window >= 2 and activation windows >= 1");
  }
  ValidationReport rep;
  // A Quamba2 reorder permutes channels inside the weights: compare the
  // weights after undoing it (the file stores the permutations) when possible.
  const Model* weights = &quant;
  Model unpermuted;
  const std::string perm0 = "blk.0.perm.x_channels";
  if (quant.Find(perm0) && !reference.Find(perm0)) {
    unpermuted = quant;
    if (DequantizeModelTensors(unpermuted).ok() && UndoMamba2Reorder(unpermuted).ok()) {
      weights = &unpermuted;
    }
  }
  for (const ModelTensor& t : reference.tensors()) {
    if (IsAuxTensor(t.name)) continue;
    const ModelTensor* q = quant.Find(t.name);
    if (!q || q->numel() != t.numel()) continue;
    auto x = reference.ReadAsF32(t.name);
    auto y = weights->ReadAsF32(t.name);
    if (!x.ok() || !y.ok()) continue;  // plain integer tensors (permutations)
    rep.weights.push_back({t.name, std::string(TensorTypeName(q->type)), Sqnr(*x, *y)});
  }

  SSMQ_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt_ref, Runtime::Create(reference, opts.n_threads));
  SSMQ_ASSIGN_OR_RETURN(std::unique_ptr<Runtime> rt_q, Runtime::Create(quant, opts.n_threads));

  // Activations, KL and top-1 on the first windows.
  const int64_t L = opts.window;
  const int64_t n_act = std::min<int64_t>(opts.activation_windows,
                                          static_cast<int64_t>(ids.size()) / L);
  if (n_act < 1) {
    return Status(StatusCode::kInvalidArgument, "validate: the text is shorter than one window");
  }
  rep.activation_windows = n_act;
  const auto act_ids = ids.subspan(0, static_cast<size_t>(n_act * L));
  MixerOutputRecorder rec_ref(static_cast<int>(a.n_layer)), rec_q(static_cast<int>(a.n_layer));
  std::vector<float> logits_ref, logits_q;
  {
    rt_ref->SetObserver(&rec_ref);
    RecurrentState s = rt_ref->NewState(n_act);
    Status st = rt_ref->Prefill(act_ids, n_act, L, s, logits_ref);
    rt_ref->SetObserver(nullptr);
    SSMQ_RETURN_IF_ERROR(st);
  }
  {
    rt_q->SetObserver(&rec_q);
    RecurrentState s = rt_q->NewState(n_act);
    Status st = rt_q->Prefill(act_ids, n_act, L, s, logits_q);
    rt_q->SetObserver(nullptr);
    SSMQ_RETURN_IF_ERROR(st);
  }
  // A residual rotation (quant.residual_hadamard.*) puts the quantized
  // model's mixer outputs in the rotated basis: rotate the reference's too.
  const MetaValue* rot_base = quant.extra.Find("quant.residual_hadamard.base");
  const bool rotate_ref = rot_base && !reference.extra.Find("quant.residual_hadamard.base");
  if (rotate_ref) {
    SSMQ_ASSIGN_OR_RETURN(const HadamardKind kind, ChooseHadamard(a.d_model));
    SSMQ_ASSIGN_OR_RETURN(const uint64_t base, rot_base->AsUInt());
    if (static_cast<int64_t>(base) != kind.base) {
      return Status(StatusCode::kUnsupported, "validate: residual Hadamard base " +
                                                  std::to_string(base) + " is not ours");
    }
    for (int l = 0; l < a.n_layer; ++l) {
      std::vector<float>& out = rec_ref.mutable_output(l);
      HadamardTransformRows(kind, out.data(), static_cast<int64_t>(out.size()) / a.d_model,
                            a.d_model, opts.n_threads);
    }
  }
  for (int l = 0; l < a.n_layer; ++l) {
    rep.layers.push_back({l, Sqnr(rec_ref.output(l), rec_q.output(l))});
  }
  const int64_t V = a.vocab_size, rows = n_act * L;
  double kl = 0;
  int64_t agree = 0;
  std::vector<double> lp, lq;
  for (int64_t r = 0; r < rows; ++r) {
    const float* fr = logits_ref.data() + r * V;
    const float* fq = logits_q.data() + r * V;
    LogSoftmax(fr, V, lp);
    LogSoftmax(fq, V, lq);
    double k = 0;
    for (int64_t v = 0; v < V; ++v) k += std::exp(lp[v]) * (lp[v] - lq[v]);
    kl += k;
    agree += (std::max_element(fr, fr + V) - fr) == (std::max_element(fq, fq + V) - fq);
  }
  rep.logits_kl = kl / static_cast<double>(rows);
  rep.top1_agreement = static_cast<double>(agree) / static_cast<double>(rows);

  auto ppl_ids = ids;
  if (opts.ppl_windows > 0 && static_cast<int64_t>(ids.size()) > opts.ppl_windows * L)
    ppl_ids = ids.subspan(0, static_cast<size_t>(opts.ppl_windows * L));
  SSMQ_ASSIGN_OR_RETURN(PerplexityResult pr, EvaluatePerplexity(*rt_ref, ppl_ids, L, 8));
  SSMQ_ASSIGN_OR_RETURN(PerplexityResult pq, EvaluatePerplexity(*rt_q, ppl_ids, L, 8));
  rep.ppl_float = pr.perplexity;
  rep.ppl_quant = pq.perplexity;
  rep.tokens_scored = pq.tokens_scored;
  return rep;
}

}  // namespace ssmq
