// ssmq inspect FILE [--tensors] [--stats [PATTERN] [--against OTHER]] [--validate]
//                   [--dump NAME -o OUT [--raw]] [--histogram NAME [--bins N]] [--json]
// The work is in the inspect/ library; this file parses arguments and prints.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "format/ssmq_file.h"
#include "inspect/dump.h"
#include "inspect/histogram.h"
#include "inspect/stats.h"
#include "inspect/summary.h"
#include "inspect/tensor_table.h"
#include "inspect/text_format.h"
#include "inspect/validate.h"
#include "inspect/values.h"

namespace ssmq::cli {
namespace {

struct InspectArgs {
  std::string file;
  bool summary = false;
  bool tensors = false;
  std::string stats_pattern;
  CLI::Option* stats_opt = nullptr;
  std::string against;
  bool validate = false;
  std::string dump_name;
  std::string out_path;
  bool raw = false;
  std::string histogram_name;
  int bins = 40;
  bool json = false;
};

// Runs every requested section; returns the exit code.
int RunInspect(const InspectArgs& a) {
  nlohmann::ordered_json j;
  j["file"] = a.file;
  std::string text;
  auto add_text = [&](const std::string& section) {
    if (!text.empty()) text += "\n";
    text += section;
  };
  auto flush = [&]() {
    if (text.empty()) return;  // nothing was produced (the file could not be opened)
    if (a.json)
      std::fputs((j.dump(2) + "\n").c_str(), stdout);
    else
      std::fputs(text.c_str(), stdout);
  };

  const bool want_stats = a.stats_opt->count() > 0;
  const bool any_mode = a.tensors || want_stats || a.validate || !a.dump_name.empty() ||
                        !a.histogram_name.empty();
  int exit_code = 0;

  if (a.validate) {
    inspect::ValidationReport report = inspect::ValidateFile(a.file, a.file);
    j["validation"] = inspect::ValidationToJson(report);
    add_text(inspect::RenderValidationText(report));
    if (!report.intact()) exit_code = 1;
    if (!report.opened) {
      flush();
      std::fprintf(stderr, "ssmq: error: %s: the file is damaged and cannot be opened\n",
                   a.file.c_str());
      return 1;
    }
  }

  Result<std::unique_ptr<SsmqFile>> opened = SsmqFile::OpenMmap(a.file);
  if (!opened.ok()) {
    flush();
    ReportError(opened.status().WithContext(a.file));
    return 1;
  }
  const SsmqFile& file = **opened;

  if (a.summary || !any_mode) {
    inspect::FileSummary s = inspect::BuildSummary(file, a.file);
    j["summary"] = inspect::SummaryToJson(s);
    add_text(inspect::RenderSummaryText(s));
  }
  if (a.tensors) {
    auto rows = inspect::BuildTensorTable(file);
    j["tensors"] = inspect::TensorTableToJson(rows);
    add_text(inspect::RenderTensorTableText(rows));
  }
  if (want_stats) {
    std::unique_ptr<SsmqFile> reference;
    if (!a.against.empty()) {
      Result<std::unique_ptr<SsmqFile>> ref = SsmqFile::OpenMmap(a.against);
      if (!ref.ok()) {
        flush();
        ReportError(ref.status().WithContext(a.against));
        return 1;
      }
      reference = std::move(ref).value();
    }
    Result<std::vector<inspect::TensorStatsRow>> rows =
        inspect::BuildStats(file, {a.stats_pattern, reference.get()});
    if (!rows.ok()) {
      flush();
      ReportError(rows.status());
      return 1;
    }
    j["stats"] = inspect::StatsToJson(*rows);
    if (!a.against.empty()) j["against"] = a.against;
    add_text(inspect::RenderStatsText(*rows));
  }
  if (!a.histogram_name.empty()) {
    const TensorInfo* t = file.FindTensor(a.histogram_name);
    Result<std::vector<float>> values =
        t ? inspect::ReadTensorValues(file, *t)
          : Result<std::vector<float>>(
                Status(StatusCode::kNotFound, "no tensor named '" + a.histogram_name + "'"));
    if (!values.ok()) {
      flush();
      ReportError(values.status());
      return 1;
    }
    inspect::Histogram h = inspect::BuildHistogram(*values, a.bins, a.histogram_name);
    j["histogram"] = inspect::HistogramToJson(h);
    add_text(inspect::RenderHistogramText(h));
  }
  if (!a.dump_name.empty()) {
    Result<inspect::DumpResult> dumped =
        inspect::DumpTensor(file, {a.dump_name, a.out_path, a.raw});
    if (!dumped.ok()) {
      flush();
      ReportError(dumped.status());
      return dumped.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
    }
    j["dump"] = {{"tensor", a.dump_name},
                 {"path", a.out_path},
                 {"dtype", dumped->dtype},
                 {"shape", dumped->shape},
                 {"bytes", dumped->bytes}};
    add_text("Wrote " + a.dump_name + " as " + dumped->dtype + " " +
             inspect::FormatShape(dumped->shape) + " (" + std::to_string(dumped->bytes) +
             " bytes) to " + a.out_path + "\n");
  }
  flush();
  return exit_code;
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand(
      "inspect", "Show what a .ssmq file holds: summary, tensors, statistics, validation");
  sub->add_option("file", args->file, "The .ssmq file")->required();
  sub->add_flag("--summary", args->summary, "Print the summary (the default when nothing else is asked)");
  sub->add_flag("--tensors", args->tensors, "Table of every tensor");
  args->stats_opt =
      sub->add_option("--stats", args->stats_pattern,
                      "Value statistics per tensor; optional PATTERN (glob or substring)")
          ->expected(0, 1);
  sub->add_option("--against", args->against,
                  "With --stats: float source file; error (SQNR dB, max abs err) of lossy tensors");
  sub->add_flag("--validate", args->validate,
                "Verify every checksum and structural rule; exit 0 only when intact");
  sub->add_option("--dump", args->dump_name, "Write tensor NAME to -o OUT (.safetensors or .npy)");
  sub->add_option("-o,--output", args->out_path, "Output file for --dump");
  sub->add_flag("--raw", args->raw, "With --dump: the stored bytes instead of f32 values");
  sub->add_option("--histogram", args->histogram_name, "Text histogram of tensor NAME's values");
  sub->add_option("--bins", args->bins, "Bins of --histogram")->check(CLI::Range(1, 1000));
  sub->add_flag("--json", args->json, "JSON output (field names in spec/inspect-json.md)");
  sub->callback([args] {
    if (!args->dump_name.empty() && args->out_path.empty()) {
      ReportError(Status(StatusCode::kInvalidArgument, "--dump needs -o OUT.safetensors|OUT.npy"));
      return;
    }
    if (!args->against.empty() && args->stats_opt->count() == 0) {
      ReportError(Status(StatusCode::kInvalidArgument, "--against is used with --stats"));
      return;
    }
    SetExitCode(RunInspect(*args));
  });
}

SSMQ_REGISTER_COMMAND(40, Setup);

}  // namespace
}  // namespace ssmq::cli
