// ssmq export FILE.ssmq --to gguf -o OUT.gguf [--type f16|q8_0|q4_0] [--dequantize] [--force]
#include <cstdio>

#include "cli/cli_common.h"
#include "cli/command.h"
#include "convert/gguf_export.h"
#include "model/arch.h"

namespace ssmq::cli {
namespace {

struct ExportArgs {
  std::string src;
  std::string to = "gguf";
  std::string out;
  std::string type = "f16";
  bool dequantize = false;
  bool force = false;
};

Status RunExport(const ExportArgs& a) {
  if (a.to != "gguf") return Status(StatusCode::kInvalidArgument, "--to must be gguf");
  GgufExportOptions opts;
  if (a.type == "f16") opts.type = GgufExportType::kF16;
  else if (a.type == "q8_0") opts.type = GgufExportType::kQ8_0;
  else if (a.type == "q4_0") opts.type = GgufExportType::kQ4_0;
  else return Status(StatusCode::kInvalidArgument, "--type must be f16, q8_0 or q4_0, not '" + a.type + "'");
  opts.dequantize = a.dequantize;
  opts.force = a.force;
  SSMQ_ASSIGN_OR_RETURN(Model model, OpenModel(a.src));
  SSMQ_RETURN_IF_ERROR(ExportGgufFile(model, a.out, opts));
  std::printf("wrote %s: %s, GGUF %s\n", a.out.c_str(), ArchName(model.hp.arch), a.type.c_str());
  return Status::Ok();
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  auto* sub = app.add_subcommand("export", "Export a .ssmq model to llama.cpp's GGUF");
  sub->add_option("src", args->src, ".ssmq file (or Hugging Face directory)")->required();
  sub->add_option("--to", args->to, "target format: gguf")->capture_default_str();
  sub->add_option("-o,--output", args->out, "output .gguf path (written atomically)")->required();
  sub->add_option("--type", args->type, "f16 | q8_0 | q4_0 (matmul weights; others stay f32)")
      ->capture_default_str();
  sub->add_flag("--dequantize", args->dequantize,
                "write the equivalent float model where GGUF cannot express the quantization (activation scales)");
  sub->add_flag("--force", args->force,
                "export even where llama.cpp will compute differently (Mamba2 full-width gated norm with n_groups > 1)");
  sub->callback([args] {
    Status st = RunExport(*args);
    if (!st.ok()) ReportError(st);
  });
}
SSMQ_REGISTER_COMMAND(65, Setup);

}  // namespace
}  // namespace ssmq::cli
