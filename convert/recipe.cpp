// The quantization driver: scheme names -> per-layer weight bits -> the
// quantized Model with its quant.* metadata.
#include "convert/recipe.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "convert/auto_mix.h"
#include "convert/gptq.h"
#include "convert/hf_import.h"

namespace ssmq {

namespace {

WeightBits BitsOf(const std::string& s) {
  return (s == "w4a16" || s == "w4a8") ? WeightBits::kW4 : WeightBits::kW8;
}

Result<int64_t> ParseLayerIndex(const std::string& text, int64_t n_layer) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 0 || v >= n_layer) {
    return Status(StatusCode::kInvalidArgument, "--layer-schemes: bad layer index '" + text +
                                                    "' (model has " + std::to_string(n_layer) +
                                                    " layers)");
  }
  return static_cast<int64_t>(v);
}

}  // namespace

bool IsA8Scheme(const std::string& s) { return s == "w8a8" || s == "w4a8"; }

bool IsQuantScheme(const std::string& s) {
  return s == "w8a16" || s == "w4a16" || s == "w8a8" || s == "w4a8";
}

Result<std::vector<std::string>> ParseLayerSchemes(const std::string& spec, int64_t n_layer,
                                                   const std::string& default_scheme) {
  std::vector<std::string> out(static_cast<size_t>(n_layer), default_scheme);
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string::npos) comma = spec.size();
    const std::string piece = spec.substr(pos, comma - pos);
    pos = comma + 1;
    const size_t colon = piece.find(':');
    if (colon == std::string::npos) {
      return Status(StatusCode::kInvalidArgument,
                    "--layer-schemes: '" + piece + "' is not RANGE:SCHEME");
    }
    const std::string range = piece.substr(0, colon), scheme = piece.substr(colon + 1);
    if (!IsQuantScheme(scheme)) {
      return Status(StatusCode::kInvalidArgument,
                    "--layer-schemes: unknown scheme '" + scheme + "' in '" + piece + "'");
    }
    const size_t dash = range.find('-');
    SSMQ_ASSIGN_OR_RETURN(int64_t first, ParseLayerIndex(range.substr(0, dash), n_layer));
    int64_t last = first;
    if (dash != std::string::npos) {
      SSMQ_ASSIGN_OR_RETURN(last, ParseLayerIndex(range.substr(dash + 1), n_layer));
    }
    if (last < first) {
      return Status(StatusCode::kInvalidArgument, "--layer-schemes: empty range '" + range + "'");
    }
    for (int64_t l = first; l <= last; ++l) out[static_cast<size_t>(l)] = scheme;
  }
  return out;
}

// Weight quantization of a prepared float model: per-layer bits from the
// scheme names, embedding/head bits, int4 scale search; GPTQ first when asked
// (it quantizes the matmul weights it has Hessians for; QuantizeWeights skips them).
Status QuantizeModelWeights(Model& model, const QuantRecipeOptions& opts,
                            const std::vector<std::string>& per_layer, WeightQuantOptions& w,
                            bool allow_gptq) {
  w = WeightQuantOptions{};
  w.bits = BitsOf(opts.scheme);
  w.group_size = opts.group_size;
  w.keep_lm_head = opts.keep_lm_head;
  for (const std::string& s : per_layer) w.layer_bits.push_back(BitsOf(s));
  if (opts.head_bits != 0 && opts.head_bits != 4 && opts.head_bits != 8) {
    return Status(StatusCode::kInvalidArgument, "--head-bits must be 4 or 8");
  }
  if (opts.head_bits != 0) w.embedding_bits = opts.head_bits == 4 ? WeightBits::kW4 : WeightBits::kW8;
  w.head_group_size = opts.head_group_size;
  w.mse_scale_search = !opts.rtn;
  if (opts.gptq && allow_gptq) {
    // GPTQ quantizes the matmul weights it has Hessians for (in_proj, x_proj,
    // dt_proj, out_proj, an untied LM head); QuantizeWeights does the rest
    // (embedding, tied head) and skips what GPTQ already quantized.
    const WeightBits head = w.embedding_bits == WeightBits::kFloat ? w.bits : w.embedding_bits;
    auto bits_of = [&](const std::string& name) {
      if (name == "output.weight") return opts.keep_lm_head ? WeightBits::kFloat : head;
      int layer = -1;
      if (std::sscanf(name.c_str(), "blk.%d.", &layer) == 1 && layer >= 0 &&
          layer < static_cast<int>(w.layer_bits.size())) {
        return w.layer_bits[static_cast<size_t>(layer)];
      }
      return WeightBits::kFloat;
    };
    std::function<void(int64_t, int64_t)> progress;
    if (opts.progress) progress = [&](int64_t d, int64_t t) { opts.progress("gptq", d, t); };
    SSMQ_RETURN_IF_ERROR(ApplyGptq(model, opts.calib_text, opts.calib, bits_of, opts.group_size,
                                   GptqOptions{}, progress));
  }
  return QuantizeWeights(model, w);
}

Status ApplyQuantRecipe(Model& model, const QuantRecipeOptions& opts) {
  if (!IsQuantScheme(opts.scheme)) {
    return Status(StatusCode::kInvalidArgument, "unknown quantization scheme '" + opts.scheme + "'");
  }
  if (opts.group_size < 2) {
    return Status(StatusCode::kInvalidArgument, "--group-size must be at least 2");
  }
  SSMQ_ASSIGN_OR_RETURN(std::vector<std::string> per_layer,
                        ParseLayerSchemes(opts.layer_schemes, model.hp.n_layer, opts.scheme));
  bool mixed = false, any_a8 = false;
  std::vector<bool> layer_a8;
  for (const std::string& s : per_layer) {
    mixed = mixed || s != per_layer.front();
    layer_a8.push_back(IsA8Scheme(s));
    any_a8 = any_a8 || IsA8Scheme(s);
  }
  const uint64_t f16_bytes = F16Bytes(model);
  if (opts.gptq && opts.calib_text.empty()) {
    return Status(StatusCode::kInvalidArgument, "--gptq needs calibration text (--calib FILE)");
  }
  if (!opts.auto_mix.empty()) {
    if (!opts.layer_schemes.empty()) {
      return Status(StatusCode::kInvalidArgument, "--auto-mix and --layer-schemes exclude each other");
    }
    if (opts.calib_text.empty()) {
      return Status(StatusCode::kInvalidArgument, "--auto-mix needs calibration text (--calib FILE)");
    }
  }
  SSMQ_RETURN_IF_ERROR(CastFloatTensors(model, TensorType::kF32));
  std::string act_text;
  if (any_a8) {
    if (opts.calib_text.empty()) {
      return Status(StatusCode::kInvalidArgument,
                    "activation-quantized schemes (w8a8, w4a8) need calibration text (--calib FILE)");
    }
    ActRecipeOptions a;
    a.recipe = opts.recipe;
    SSMQ_ASSIGN_OR_RETURN(a.components, RecipeComponents(opts.recipe));
    for (const auto& [name, on] : opts.switches) {
      SSMQ_RETURN_IF_ERROR(SetComponent(a.components, name, on));
    }
    a.calib = opts.calib;
    a.calib_text = opts.calib_text;
    a.layer_a8 = layer_a8;
    a.progress = opts.progress;
    SSMQ_RETURN_IF_ERROR(ApplyActRecipe(model, a).status());
    act_text = "; activations (a8 layers): recipe " + opts.recipe + " (" +
               ComponentsText(a.components) + "), int8 symmetric, round half to even, static " +
               "scales from " + std::to_string(opts.calib.samples) + " calibration windows of " +
               std::to_string(opts.calib.seqlen) + " tokens";
  }

  WeightQuantOptions w;
  // The auto-mix search quantizes many candidates: round-to-nearest there,
  // GPTQ (when asked) only for the final model.
  auto quantize = [&](Model& m, const std::vector<std::string>& schemes) -> Status {
    return QuantizeModelWeights(m, opts, schemes, w, /*allow_gptq=*/false);
  };
  std::string mix_text;
  if (!opts.auto_mix.empty()) {
    AutoMixOptions am;
    SSMQ_ASSIGN_OR_RETURN(am.budget_bytes,
                          ParseSizeBudget(opts.auto_mix, static_cast<double>(f16_bytes)));
    am.low = any_a8 ? "w4a8" : "w4a16";
    am.high = any_a8 ? "w8a8" : "w8a16";
    am.text = opts.calib_text;
    am.seqlen = opts.calib.seqlen;
    am.threads = opts.calib.threads;
    if (opts.progress) opts.progress("auto-mix sensitivity", 0, 1);
    SSMQ_ASSIGN_OR_RETURN(AutoMixPlan plan, PlanAutoMix(model, am, quantize));
    if (opts.progress) opts.progress("auto-mix sensitivity", 1, 1);
    per_layer = plan.layer_schemes;
    mixed = std::any_of(per_layer.begin(), per_layer.end(),
                        [&](const std::string& x) { return x != per_layer.front(); });
    char buf[160];
    std::snprintf(buf, sizeof buf, "; auto-mix budget %s (%.0f B): tensors %llu B, NLL %+.4f vs all-",
                  opts.auto_mix.c_str(), am.budget_bytes,
                  static_cast<unsigned long long>(plan.bytes_plan), plan.nll_plan - plan.nll_high);
    mix_text = buf + am.high + ", layers";
    for (size_t l = 0; l < per_layer.size(); ++l) {
      std::snprintf(buf, sizeof buf, " %zu:%s(dNLL %.4f)", l, per_layer[l].c_str(),
                    plan.sensitivity[l]);
      mix_text += buf;
    }
  }
  SSMQ_RETURN_IF_ERROR(QuantizeModelWeights(model, opts, per_layer, w, /*allow_gptq=*/true));
  if (opts.small_tensors_f16) {
    // Only float tensors that are not scales remain: cast them (scales stay f32).
    SSMQ_RETURN_IF_ERROR(CastFloatTensors(model, TensorType::kF16));
  }

  const bool head_w4 = w.embedding_bits == WeightBits::kW4 ||
                       (w.embedding_bits == WeightBits::kFloat && w.bits == WeightBits::kW4);
  const std::string g = std::to_string(opts.group_size);
  const std::string hg = std::to_string(opts.head_group_size ? opts.head_group_size : opts.group_size);
  const std::string int4 = std::string(opts.gptq ? "GPTQ (percdamp 0.01, Hessians from the calibration windows) for the layer matmuls and untied head, else " : "") +
                           std::string(w.mse_scale_search ? "least-squares clipped scale"
                                                          : "absmax scale") +
                           ", round half to even";
  std::string recipe = std::string(any_a8 ? "ssmq" : "ssmq weight-only") + ": matmul weights " +
                       (w.bits == WeightBits::kW4
                            ? "int4 symmetric per group of " + g +
                                  " along the input dim (else the largest even divisor), " + int4
                            : std::string(opts.gptq ? "GPTQ " : "") + "int8 per output channel, absmax, round half to even") +
                       "; embedding" + (opts.keep_lm_head ? "" : " and lm_head") +
                       (head_w4 ? " int4 per group of " + hg + " (" + int4 + ")"
                                : std::string(" int8 per row")) +
                       (opts.keep_lm_head ? "; lm_head (tied: embedding) kept f32" : "") +
                       "; other tensors " + (opts.small_tensors_f16 ? "f16" : "f32");
  if (!opts.layer_schemes.empty()) recipe += "; layer schemes " + opts.layer_schemes;
  recipe += act_text + mix_text;
  model.extra.Set("quant.scheme", MetaValue::String(mixed ? "mixed" : per_layer.front()));
  model.extra.Set("quant.recipe", MetaValue::String(recipe));
  model.extra.Set("quant.group_size", MetaValue::U32(opts.group_size));
  model.extra.Set("quant.rounding", MetaValue::String("nearest_even"));
  return Status::Ok();
}

}  // namespace ssmq
