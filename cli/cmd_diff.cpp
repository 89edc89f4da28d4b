// ssmq diff A.ssmq B.ssmq [--json] [--no-sqnr] [--exit-code]
// Metadata and tensor differences; A is the reference for the SQNR of changed tensors.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "format/ssmq_file.h"
#include "inspect/diff.h"

namespace ssmq::cli {
namespace {

struct DiffArgs {
  std::string a, b;
  bool json = false;
  bool no_sqnr = false;
  bool exit_code = false;
};

void Run(const DiffArgs& args) {
  Result<std::unique_ptr<SsmqFile>> a = SsmqFile::OpenMmap(args.a);
  if (!a.ok()) return ReportError(a.status().WithContext(args.a));
  Result<std::unique_ptr<SsmqFile>> b = SsmqFile::OpenMmap(args.b);
  if (!b.ok()) return ReportError(b.status().WithContext(args.b));
  inspect::DiffOptions opts;
  opts.compute_sqnr = !args.no_sqnr;
  Result<inspect::DiffReport> d = inspect::DiffFiles(**a, **b, args.a, args.b, opts);
  if (!d.ok()) return ReportError(d.status());
  if (args.json)
    std::fputs((inspect::DiffToJson(*d).dump(2) + "\n").c_str(), stdout);
  else
    std::fputs(inspect::RenderDiffText(*d).c_str(), stdout);
  SetExitCode(args.exit_code && !d->identical() ? 1 : 0);
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<DiffArgs>();
  CLI::App* sub = app.add_subcommand(
      "diff", "Metadata and tensor differences between two .ssmq files (SQNR of changed tensors)");
  sub->add_option("a", args->a, "Reference file")->required();
  sub->add_option("b", args->b, "Compared file")->required();
  sub->add_flag("--json", args->json, "JSON output (spec/inspect-json.md)");
  sub->add_flag("--no-sqnr", args->no_sqnr, "Do not read tensor data (no SQNR)");
  sub->add_flag("--exit-code", args->exit_code, "Exit 1 when the files differ (like git diff)");
  sub->callback([args] { Run(*args); });
}

SSMQ_REGISTER_COMMAND(45, Setup);

}  // namespace
}  // namespace ssmq::cli
