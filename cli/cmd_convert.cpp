// ssmq convert SRC -o OUT.ssmq --scheme f32|f16|bf16|w8a16|w4a16|w8a8|w4a8 [--group-size G]
//   [--keep-lm-head] [--layer-schemes "0-2:w4a8,3-5:w4a16"] [--mamba2-norm full|grouped] [--zstd]
//   A8: --calib FILE [--calib-samples N --calib-seqlen L --seed S --percentile P]
//       [--recipe ssmq|quamba|naive] [--enable C1,C2] [--disable C3]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/cli_common.h"
#include "cli/command.h"
#include "convert/gguf_import.h"
#include "convert/hf_import.h"
#include "convert/recipe.h"
#include "model/arch.h"
#include "model/model_io.h"

namespace ssmq::cli {
namespace {

struct ConvertArgs {
  std::string src;
  std::string out;
  std::string scheme = "auto";
  std::string mamba2_norm;
  bool zstd = false;
  bool json = false;
  // Quantized schemes (w8a16 | w4a16 ...): convert/recipe.h.
  uint32_t group_size = 128;
  bool keep_lm_head = false;
  std::string layer_schemes;
  int head_bits = 0;
  uint32_t head_group_size = 0;
  bool small_f32 = false;
  bool rtn = false;
  // A8 schemes (w8a8 | w4a8): convert/act_recipe.h.
  std::string calib_file;
  int64_t calib_samples = 32;
  int64_t calib_seqlen = 256;
  uint64_t seed = 0;
  double percentile = 0.9995;
  std::string recipe = "ssmq";
  std::vector<std::string> enable, disable;
  std::string auto_mix;
  bool gptq = false;
};

Status RunConvert(const ConvertArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  Model model;
  if (std::filesystem::is_directory(a.src, ec)) {
    HfImportOptions opts;
    if (a.mamba2_norm == "full") opts.mamba2_norm = NormGrouping::kFull;
    else if (a.mamba2_norm == "grouped") opts.mamba2_norm = NormGrouping::kGrouped;
    else if (!a.mamba2_norm.empty())
      return Status(StatusCode::kInvalidArgument, "--mamba2-norm must be full or grouped");
    Progress progress("reading " + a.src);
    opts.progress = [&](uint64_t d, uint64_t t) { progress.Update(d, t); };
    SSMQ_ASSIGN_OR_RETURN(model, ImportHfDirectory(a.src, opts));
    progress.Finish();
  } else if (a.src.ends_with(".gguf")) {  // llama.cpp GGUF: the gated norm defaults to grouped
    GgufImportOptions opts;
    if (a.mamba2_norm == "full") opts.mamba2_norm = NormGrouping::kFull;
    else if (a.mamba2_norm == "grouped") opts.mamba2_norm = NormGrouping::kGrouped;
    else if (!a.mamba2_norm.empty())
      return Status(StatusCode::kInvalidArgument, "--mamba2-norm must be full or grouped");
    SSMQ_ASSIGN_OR_RETURN(model, ImportGguf(a.src, opts));
  } else {
    SSMQ_ASSIGN_OR_RETURN(model, OpenModel(a.src));
    if (!a.mamba2_norm.empty()) {
      if (model.hp.arch != Arch::kMamba2)
        return Status(StatusCode::kInvalidArgument, "--mamba2-norm applies to mamba2 models only");
      if (a.mamba2_norm != "full" && a.mamba2_norm != "grouped")
        return Status(StatusCode::kInvalidArgument, "--mamba2-norm must be full or grouped");
      model.hp.norm_group_size =
          a.mamba2_norm == "full" ? model.hp.d_inner : model.hp.d_inner / model.hp.n_groups;
    }
  }

  std::string scheme = a.scheme;
  if (IsQuantScheme(scheme)) {
    QuantRecipeOptions q;
    q.scheme = scheme;
    q.group_size = a.group_size;
    q.keep_lm_head = a.keep_lm_head;
    q.layer_schemes = a.layer_schemes;
    q.head_bits = a.head_bits;
    q.head_group_size = a.head_group_size;
    q.small_tensors_f16 = !a.small_f32;
    q.rtn = a.rtn;
    q.recipe = a.recipe;
    q.auto_mix = a.auto_mix;
    q.gptq = a.gptq;
    for (const std::string& c : a.enable) q.switches.emplace_back(c, true);
    for (const std::string& c : a.disable) q.switches.emplace_back(c, false);
    q.calib.samples = a.calib_samples;
    q.calib.seqlen = a.calib_seqlen;
    q.calib.seed = a.seed;
    q.calib.percentile = a.percentile;
    std::string calib_text;
    if (!a.calib_file.empty()) {
      SSMQ_ASSIGN_OR_RETURN(calib_text, ReadTextFile(a.calib_file));
      q.calib_text = calib_text;
    }
    std::unique_ptr<Progress> bar;
    std::string bar_stage;
    q.progress = [&](const std::string& stage, int64_t d, int64_t t) {
      if (stage != bar_stage) {
        if (bar) bar->Finish();
        bar = std::make_unique<Progress>(stage);
        bar_stage = stage;
      }
      bar->Update(static_cast<uint64_t>(d), static_cast<uint64_t>(t));
    };
    SSMQ_RETURN_IF_ERROR(ApplyQuantRecipe(model, q));
    if (bar) bar->Finish();
    if (auto v = model.extra.GetString("quant.scheme"); v.ok()) scheme = *v;
  } else if (scheme != "auto") {
    auto type = TensorTypeFromName(scheme);
    if (!type || !TraitsOf(*type).is_float)
      return Status(StatusCode::kInvalidArgument,
                    "--scheme '" + scheme + "' is not supported (f32, f16, bf16, auto)");
    SSMQ_RETURN_IF_ERROR(CastFloatTensors(model, *type));
  } else {
    // auto keeps the source types; name the scheme after the embedding's type.
    const ModelTensor* emb = model.Find("token_embd.weight");
    scheme = emb ? std::string(TensorTypeName(emb->type)) : "f32";
  }
  if (!model.extra.Find("quant.scheme") || !IsQuantScheme(a.scheme))
    model.extra.Set("quant.scheme", MetaValue::String(scheme));
  if (!model.extra.Find(keys::kSource)) model.extra.Set(keys::kSource, MetaValue::String(
      std::filesystem::path(a.src).filename().string()));

  SaveOptions save;
  save.zstd = a.zstd;
  Progress progress("writing " + a.out);
  save.progress = [&](uint64_t d, uint64_t t) { progress.Update(d, t); };
  SSMQ_RETURN_IF_ERROR(SaveModel(model, a.out, save));
  progress.Finish();

  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto bytes = std::filesystem::file_size(a.out, ec);
  if (a.json) {
    std::printf("{\"output\": \"%s\", \"scheme\": \"%s\", \"bytes\": %llu, \"seconds\": %.3f}\n",
                a.out.c_str(), scheme.c_str(), static_cast<unsigned long long>(bytes), secs);
  } else {
    std::printf("wrote %s: %s %s, %zu tensors, %.2f MiB in %.2f s\n", a.out.c_str(),
                ArchName(model.hp.arch), scheme.c_str(), model.tensors().size(),
                static_cast<double>(bytes) / (1024.0 * 1024.0), secs);
  }
  return Status::Ok();
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  auto* sub = app.add_subcommand("convert", "Convert a Hugging Face checkpoint directory or a .ssmq file to .ssmq");
  sub->add_option("src", args->src, "Hugging Face model directory or .ssmq file")->required();
  sub->add_option("-o,--output", args->out, "output .ssmq path (written atomically)")->required();
  sub->add_option("--scheme", args->scheme,
                  "f32 | f16 | bf16 | auto (keep source types) | w8a16 | w4a16 | w8a8 | w4a8")
      ->capture_default_str();
  sub->add_option("--mamba2-norm", args->mamba2_norm,
                  "Mamba2 gated-norm grouping: full (transformers) | grouped (mamba_ssm, llama.cpp)");
  sub->add_option("--group-size", args->group_size,
                  "int4 group size along the input dim (w4*; falls back to the largest even divisor)")
      ->capture_default_str();
  sub->add_flag("--keep-lm-head", args->keep_lm_head,
                "leave the LM head (or the tied embedding) unquantized");
  sub->add_option("--layer-schemes", args->layer_schemes,
                  "per-layer schemes, e.g. \"0-2:w4a16,3-5:w8a16\" (others use --scheme)");
  sub->add_option("--head-bits", args->head_bits,
                  "bits of the embedding and LM head: 8 (per row) or 4 (per group); default by scheme");
  sub->add_option("--head-group-size", args->head_group_size,
                  "int4 group size of the embedding and LM head (default --group-size)");
  sub->add_flag("--small-f32", args->small_f32,
                "keep the non-matmul float tensors (norms, conv, A_log, D) f32 (default f16)");
  sub->add_flag("--rtn", args->rtn,
                "int4: plain absmax round-to-nearest scales (default: least-squares clipped scales)");
  sub->add_option("--calib", args->calib_file,
                  "calibration text (UTF-8) for w8a8 / w4a8; windows come from its first 90% (train split)");
  sub->add_option("--calib-samples", args->calib_samples, "calibration windows")
      ->capture_default_str();
  sub->add_option("--calib-seqlen", args->calib_seqlen, "tokens per calibration window")
      ->capture_default_str();
  sub->add_option("--seed", args->seed, "seed that picks the calibration windows")
      ->capture_default_str();
  sub->add_option("--percentile", args->percentile,
                  "percentile of |x| used to clip the SSM input (and mamba1 state) scales")
      ->capture_default_str();
  sub->add_option("--recipe", args->recipe,
                  "A8 recipe: ssmq (ours, default) | quamba (faithful Quamba/Quamba2) | naive "
                  "(per-tensor min-max)")
      ->capture_default_str();
  sub->add_option("--enable", args->enable,
                  "turn recipe components on: rotate-residual, hadamard, percentile, reorder, "
                  "x-groups, group-bc, segment-scales, out-proj-dynamic, small-int8, state-int8")
      ->delimiter(',');
  sub->add_option("--disable", args->disable, "turn recipe components off (names as --enable)")
      ->delimiter(',');
  sub->add_option("--auto-mix", args->auto_mix,
                  "pick per-layer schemes (w4a8/w8a8, or w4a16/w8a16 for a16 schemes) by measured "
                  "sensitivity to fit a size: 0.35x (of the f16 file), 35%, 4MB, 3MiB");
  sub->add_flag("--gptq", args->gptq,
                "GPTQ for the matmul weights (Hessians from the --calib windows) instead of "
                "round-to-nearest");
  sub->add_flag("--zstd", args->zstd, "zstd-compress tensors where it saves space");
  sub->add_flag("--json", args->json, "print a JSON summary");
  sub->callback([args] {
    Status st = RunConvert(*args);
    if (!st.ok()) ReportError(st);
  });
}
SSMQ_REGISTER_COMMAND(10, Setup);

}  // namespace
}  // namespace ssmq::cli
