// ssmq synth --arch mamba|mamba2 --preset NAME -o DIR [--seed S] [--dtype f16|bf16|f32] [--force] [--json]
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "convert/synth.h"

namespace ssmq::cli {
namespace {

struct SynthArgs {
  std::string arch;
  std::string preset;
  std::string out;
  uint64_t seed = 0;
  std::string dtype = "f16";
  int64_t layers = 0;
  bool force = false;
  bool json = false;
};

Status RunSynth(const SynthArgs& a) {
  std::optional<Arch> arch;
  if (!a.arch.empty()) {
    SSMQ_ASSIGN_OR_RETURN(arch, ParseSynthArch(a.arch));
  }
  SSMQ_ASSIGN_OR_RETURN(SynthPreset preset, FindSynthPreset(a.preset, arch));
  SynthOptions opts;
  opts.seed = a.seed;
  opts.force = a.force;
  if (a.dtype == "f16") opts.dtype = TensorType::kF16;
  else if (a.dtype == "bf16") opts.dtype = TensorType::kBF16;
  else if (a.dtype == "f32") opts.dtype = TensorType::kF32;
  else return Status(StatusCode::kInvalidArgument, "--dtype must be f16, bf16 or f32, not '" + a.dtype + "'");
  if (a.layers > 0) opts.n_layer = a.layers;
  Progress progress("writing " + a.out);
  opts.progress = [&](uint64_t d, uint64_t t) { progress.Update(d, t); };
  SSMQ_ASSIGN_OR_RETURN(SynthSummary s, WriteSynthCheckpoint(preset, a.out, opts));
  progress.Finish();
  if (a.json) {
    nlohmann::ordered_json j;
    j["dir"] = a.out;
    j["preset"] = preset.name;
    j["arch"] = ArchName(s.hp.arch);
    j["seed"] = a.seed;
    j["dtype"] = a.dtype;
    j["n_layer"] = s.hp.n_layer;
    j["d_model"] = s.hp.d_model;
    j["vocab_size"] = s.hp.vocab_size;
    j["n_params"] = s.n_params;
    j["weight_bytes"] = s.weight_bytes;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("wrote %s: %s (%s, %lld layers, d_model %lld, vocab %lld), %.1fM params, %s, %.1f MB of weights, "
                "seed %llu\n",
                a.out.c_str(), preset.name, ArchName(s.hp.arch), static_cast<long long>(s.hp.n_layer),
                static_cast<long long>(s.hp.d_model), static_cast<long long>(s.hp.vocab_size),
                static_cast<double>(s.n_params) / 1e6, a.dtype.c_str(), static_cast<double>(s.weight_bytes) / 1e6,
                static_cast<unsigned long long>(a.seed));
  }
  return Status::Ok();
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  std::string presets;
  for (const SynthPreset& p : SynthPresets()) presets += (presets.empty() ? "" : ", ") + std::string(p.name);
  auto* sub = app.add_subcommand(
      "synth", "Write a Hugging Face checkpoint with random weights at a published Mamba/Mamba2 shape");
  sub->add_option("--arch", args->arch, "mamba | mamba2 (optional when --preset names the architecture)");
  sub->add_option("--preset", args->preset, "one of: " + presets + " (with --arch, the size alone: 370m)")
      ->required();
  sub->add_option("-o,--output", args->out, "output directory (written atomically)")->required();
  sub->add_option("--seed", args->seed, "random seed (the output is identical for a seed)")->capture_default_str();
  sub->add_option("--dtype", args->dtype, "f16 | bf16 | f32")->capture_default_str();
  sub->add_option("--layers", args->layers, "override the preset's layer count (quick tests)");
  sub->add_flag("--force", args->force, "replace an existing output directory");
  sub->add_flag("--json", args->json, "print a JSON summary");
  sub->callback([args] {
    Status st = RunSynth(*args);
    if (!st.ok()) ReportError(st);
  });
}
SSMQ_REGISTER_COMMAND(70, Setup);

}  // namespace
}  // namespace ssmq::cli
