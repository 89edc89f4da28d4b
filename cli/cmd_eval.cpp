// ssmq eval MODEL --text FILE [--window 256] [--split val|train|all] [--max-windows N]
//   perplexity with the fixtures' convention (optionally on the first N windows only)
// ssmq eval MODEL --ref REF.safetensors [--mode prefill|step|both]
//   our logits against reference logits for the reference's input_ids
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/command.h"
#include "convert/safetensors.h"
#include "runtime_cpu/runtime.h"

namespace ssmq::cli {
namespace {

struct EvalArgs {
  std::string model;
  std::string text_file;
  std::string ref_file;
  std::string split = "val";
  std::string mode = "both";
  int64_t window = 256;
  int64_t batch = 8;
  int64_t max_windows = 0;  // 0 = every window of the split
  int threads = 0;
  bool json = false;
  bool simulate = false;
  bool f16_state = false;
};

Status EvalPerplexity(const EvalArgs& a, Runtime& rt, const Tokenizer& tok) {
  SSMQ_ASSIGN_OR_RETURN(TextSplit split, ParseSplit(a.split));
  if (a.max_windows < 0)
    return Status(StatusCode::kInvalidArgument, "--max-windows must be >= 0 (0 = all windows)");
  SSMQ_ASSIGN_OR_RETURN(std::string text, ReadTextFile(a.text_file));
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = tok.Encode(SelectSplit(text, split));
  // A prefix of the split: the first N windows, scored exactly as in the
  // whole-split run (so a prefix run of two models compares like for like).
  if (a.max_windows > 0 && a.window > 0 && static_cast<int64_t>(ids.size()) > a.max_windows * a.window)
    ids.resize(static_cast<size_t>(a.max_windows * a.window));
  Progress progress("scoring");
  SSMQ_ASSIGN_OR_RETURN(PerplexityResult r,
                        EvaluatePerplexity(rt, ids, a.window, a.batch,
                                           [&](int64_t d, int64_t t) { progress.Update(d, t); }));
  progress.Finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    nlohmann::json j;
    j["perplexity"] = r.perplexity;
    j["tokens_scored"] = r.tokens_scored;
    j["mean_nll"] = r.mean_nll;
    j["window"] = a.window;
    j["windows"] = r.tokens_scored / (a.window - 1);
    j["split"] = a.split;
    j["seconds"] = secs;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity %.4f over %lld tokens (split %s, windows of %lld, %.1f s)\n",
                r.perplexity, static_cast<long long>(r.tokens_scored), a.split.c_str(),
                static_cast<long long>(a.window), secs);
  }
  return Status::Ok();
}

struct LogitDiff {
  double max_abs_diff = 0;
  double top1_agreement = 0;
};

LogitDiff CompareLogits(const float* ours, const float* ref, int64_t rows, int64_t vocab) {
  LogitDiff d;
  int64_t agree = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* o = ours + r * vocab;
    const float* f = ref + r * vocab;
    for (int64_t v = 0; v < vocab; ++v)
      d.max_abs_diff = std::max(d.max_abs_diff, std::fabs(static_cast<double>(o[v]) - f[v]));
    agree += (std::max_element(o, o + vocab) - o) == (std::max_element(f, f + vocab) - f);
  }
  d.top1_agreement = rows ? static_cast<double>(agree) / static_cast<double>(rows) : 0.0;
  return d;
}

Status EvalReference(const EvalArgs& a, Runtime& rt) {
  SSMQ_ASSIGN_OR_RETURN(auto ref, SafetensorsFile::Open(a.ref_file));
  const SafetensorsTensor* ids_t = ref->Find("input_ids");
  const SafetensorsTensor* logits_t = ref->Find("logits");
  if (!ids_t || !logits_t)
    return Status(StatusCode::kNotFound, a.ref_file + ": needs tensors 'input_ids' and 'logits'");
  if (ids_t->shape.size() != 2 || (ids_t->dtype != "I64" && ids_t->dtype != "I32"))
    return Status(StatusCode::kBadShape, "input_ids must be I64 or I32 [batch, seq]");
  const int64_t batch = ids_t->shape[0], seq = ids_t->shape[1];
  const int64_t vocab = rt.hparams().vocab_size;
  if (logits_t->dtype != "F32" || logits_t->shape != std::vector<int64_t>{batch, seq, vocab})
    return Status(StatusCode::kBadShape,
                  "logits must be F32 [" + std::to_string(batch) + ", " + std::to_string(seq) +
                      ", " + std::to_string(vocab) + "] to match the model");
  std::vector<int32_t> tokens(static_cast<size_t>(batch * seq));
  for (size_t i = 0; i < tokens.size(); ++i) {
    int64_t v;
    if (ids_t->dtype == "I64") {
      std::memcpy(&v, ids_t->data.data() + 8 * i, 8);
    } else {
      int32_t v32;
      std::memcpy(&v32, ids_t->data.data() + 4 * i, 4);
      v = v32;
    }
    if (v < 0 || v >= vocab)
      return Status(StatusCode::kBadValue, "input_ids[" + std::to_string(i) + "] = " +
                                               std::to_string(v) + " is outside the vocabulary");
    tokens[i] = static_cast<int32_t>(v);
  }
  std::vector<float> ref_logits(static_cast<size_t>(batch * seq * vocab));
  std::memcpy(ref_logits.data(), logits_t->data.data(), ref_logits.size() * sizeof(float));

  nlohmann::json j;
  LogitDiff worst{0.0, 1.0};
  auto record = [&](const char* name, const LogitDiff& d) {
    j[name] = {{"max_abs_diff", d.max_abs_diff}, {"top1_agreement", d.top1_agreement}};
    worst.max_abs_diff = std::max(worst.max_abs_diff, d.max_abs_diff);
    worst.top1_agreement = std::min(worst.top1_agreement, d.top1_agreement);
  };
  if (a.mode == "prefill" || a.mode == "both") {
    RecurrentState state = rt.NewState(batch);
    std::vector<float> logits;
    SSMQ_RETURN_IF_ERROR(rt.Prefill(tokens, batch, seq, state, logits));
    record("prefill", CompareLogits(logits.data(), ref_logits.data(), batch * seq, vocab));
  }
  if (a.mode == "step" || a.mode == "both") {
    RecurrentState state = rt.NewState(batch);
    std::vector<float> all(ref_logits.size()), logits;
    std::vector<int32_t> step_tokens(static_cast<size_t>(batch));
    for (int64_t t = 0; t < seq; ++t) {
      for (int64_t b = 0; b < batch; ++b) step_tokens[b] = tokens[b * seq + t];
      SSMQ_RETURN_IF_ERROR(rt.Step(step_tokens, state, logits));
      for (int64_t b = 0; b < batch; ++b)
        std::memcpy(&all[(b * seq + t) * vocab], &logits[b * vocab], vocab * sizeof(float));
    }
    record("step", CompareLogits(all.data(), ref_logits.data(), batch * seq, vocab));
  }
  if (j.empty()) return Status(StatusCode::kInvalidArgument, "--mode must be prefill, step or both");
  j["max_abs_diff"] = worst.max_abs_diff;
  j["top1_agreement"] = worst.top1_agreement;
  if (a.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    for (const char* m : {"prefill", "step"})
      if (j.contains(m))
        std::printf("%-8s max_abs_diff %.3g  top1_agreement %.4f\n", m,
                    j[m]["max_abs_diff"].get<double>(), j[m]["top1_agreement"].get<double>());
  }
  return Status::Ok();
}

Status RunEval(const EvalArgs& a) {
  if (a.text_file.empty() == a.ref_file.empty())
    return Status(StatusCode::kInvalidArgument, "give exactly one of --text FILE or --ref REF.safetensors");
  SSMQ_ASSIGN_OR_RETURN(Model model, OpenModel(a.model));
  RuntimeOptions ro;
  ro.n_threads = a.threads;
  ro.simulate_act_quant = a.simulate;
  ro.f16_state = a.f16_state;
  SSMQ_ASSIGN_OR_RETURN(auto rt, Runtime::Create(model, ro));
  if (!a.ref_file.empty()) return EvalReference(a, *rt);
  SSMQ_ASSIGN_OR_RETURN(auto tok, ModelTokenizer(model));
  return EvalPerplexity(a, *rt, *tok);
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* sub = app.add_subcommand("eval", "Perplexity on a text, or logits against a reference");
  sub->add_option("model", args->model, ".ssmq file or Hugging Face directory")->required();
  sub->add_option("--text", args->text_file, "text file to score");
  sub->add_option("--split", args->split,
                  "part of the text: val (last 10% of characters, the fixtures' convention) | train | all")
      ->capture_default_str();
  sub->add_option("--window", args->window, "tokens per window (first of each not scored)")
      ->capture_default_str();
  sub->add_option("--batch", args->batch, "windows per forward pass")->capture_default_str();
  sub->add_option("--max-windows", args->max_windows,
                  "score only the first N windows of the split (0 = all); a quick, comparable "
                  "prefix of the whole-split number")
      ->capture_default_str();
  sub->add_option("--ref", args->ref_file, "safetensors with input_ids [B,T] and logits [B,T,V]");
  sub->add_option("--mode", args->mode, "with --ref: prefill | step | both")->capture_default_str();
  sub->add_option("-t,--threads", args->threads, "threads (0 = all cores)")->capture_default_str();
  sub->add_flag("--simulate-act-quant", args->simulate,
                "w8a8/w4a8: run the simulated (fake-quant float) path instead of the int8 kernels");
  sub->add_flag("--f16-state", args->f16_state, kF16StateHelp);
  sub->add_flag("--json", args->json, "machine-readable output");
  sub->callback([args] {
    Status st = RunEval(*args);
    if (!st.ok()) ReportError(st);
  });
}
SSMQ_REGISTER_COMMAND(25, Setup);

}  // namespace
}  // namespace ssmq::cli
