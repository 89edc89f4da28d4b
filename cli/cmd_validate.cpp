// ssmq validate QUANT.ssmq --against FLOAT.ssmq --text FILE [--split val]
//   [--window 256] [--act-windows 4] [--ppl-windows 0] [--json]
// The round-trip accuracy report of a quantized file against its float
// source: weight SQNR per tensor, mixer-output SQNR per layer, logits KL and
// top-1 agreement, perplexity of both and the relative delta.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/command.h"
#include "convert/quantize_validate.h"

namespace ssmq::cli {
namespace {

struct ValidateArgs {
  std::string quant;
  std::string against;
  std::string text_file;
  std::string split = "val";
  int64_t window = 256;
  int64_t act_windows = 4;
  int64_t ppl_windows = 0;
  int threads = 0;
  bool json = false;
};

// JSON has no infinity: identical tensors report null.
nlohmann::json Db(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

Status RunValidate(const ValidateArgs& a) {
  SSMQ_ASSIGN_OR_RETURN(Model quant, OpenModel(a.quant));
  SSMQ_ASSIGN_OR_RETURN(Model reference, OpenModel(a.against));
  SSMQ_ASSIGN_OR_RETURN(auto tok, ModelTokenizer(reference));
  SSMQ_ASSIGN_OR_RETURN(TextSplit split, ParseSplit(a.split));
  SSMQ_ASSIGN_OR_RETURN(std::string text, ReadTextFile(a.text_file));
  const std::vector<int32_t> ids = tok->Encode(SelectSplit(text, split));
  ValidationOptions opts;
  opts.window = a.window;
  opts.activation_windows = a.act_windows;
  opts.ppl_windows = a.ppl_windows;
  opts.n_threads = a.threads;
  SSMQ_ASSIGN_OR_RETURN(ValidationReport r, ValidateQuantized(quant, reference, ids, opts));
  if (a.json) {
    nlohmann::json j;
    for (const TensorSqnr& t : r.weights)
      j["weights"].push_back({{"name", t.name}, {"type", t.quant_type}, {"sqnr_db", Db(t.sqnr_db)}});
    for (const LayerSqnr& l : r.layers)
      j["layers"].push_back({{"layer", l.layer}, {"mixer_output_sqnr_db", Db(l.mixer_output_sqnr_db)}});
    j["activation_windows"] = r.activation_windows;
    j["logits_kl"] = r.logits_kl;
    j["top1_agreement"] = r.top1_agreement;
    j["perplexity_float"] = r.ppl_float;
    j["perplexity_quant"] = r.ppl_quant;
    j["perplexity_rel_delta"] = r.ppl_rel_delta();
    j["tokens_scored"] = r.tokens_scored;
    j["split"] = a.split;
    j["window"] = a.window;
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("weights (SQNR, dB; float tensors identical to the source are not listed)\n");
  for (const TensorSqnr& t : r.weights) {
    if (std::isinf(t.sqnr_db) && t.sqnr_db > 0) continue;
    std::printf("  %-28s %-4s %7.2f\n", t.name.c_str(), t.quant_type.c_str(), t.sqnr_db);
  }
  std::printf("mixer outputs on %lld windows of %lld tokens (SQNR, dB)\n",
              static_cast<long long>(r.activation_windows), static_cast<long long>(a.window));
  for (const LayerSqnr& l : r.layers) std::printf("  layer %-3d %7.2f\n", l.layer, l.mixer_output_sqnr_db);
  std::printf("logits: KL(float || quant) %.5f nats/token, top-1 agreement %.4f\n", r.logits_kl,
              r.top1_agreement);
  std::printf("perplexity (%s, %lld tokens): float %.4f  quant %.4f  delta %+.3f%%\n",
              a.split.c_str(), static_cast<long long>(r.tokens_scored), r.ppl_float, r.ppl_quant,
              100.0 * r.ppl_rel_delta());
  return Status::Ok();
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<ValidateArgs>();
  auto* sub = app.add_subcommand("validate", "Accuracy of a quantized model against its float source");
  sub->add_option("quant", args->quant, "quantized .ssmq file")->required();
  sub->add_option("--against", args->against, "float .ssmq file or Hugging Face directory")->required();
  sub->add_option("--text", args->text_file, "evaluation text (UTF-8)")->required();
  sub->add_option("--split", args->split, "val (last 10% of characters) | train | all")
      ->capture_default_str();
  sub->add_option("--window", args->window, "tokens per window")->capture_default_str();
  sub->add_option("--act-windows", args->act_windows,
                  "windows for activation SQNR, KL and top-1")->capture_default_str();
  sub->add_option("--ppl-windows", args->ppl_windows, "windows for perplexity (0 = all)")
      ->capture_default_str();
  sub->add_option("--threads", args->threads, "threads (0 = all)");
  sub->add_flag("--json", args->json, "print JSON");
  sub->callback([args] {
    Status st = RunValidate(*args);
    if (!st.ok()) ReportError(st);
  });
}
SSMQ_REGISTER_COMMAND(60, Setup);

}  // namespace
}  // namespace ssmq::cli
