// ssmq: one executable, one verb per cli/cmd_*.cpp.
#include <algorithm>
#include <cstdio>
#include <unistd.h>

#include "cli/command.h"

namespace ssmq::cli {

namespace {
int g_exit_code = 0;
}

std::vector<std::pair<int, CommandSetup>>& Commands() {
  static std::vector<std::pair<int, CommandSetup>> commands;
  return commands;
}

CommandRegistration::CommandRegistration(int order, CommandSetup setup) {
  Commands().emplace_back(order, std::move(setup));
}

void SetExitCode(int code) { g_exit_code = code; }
int ExitCode() { return g_exit_code; }

void ReportError(const Status& st) {
  std::fprintf(stderr, "ssmq: error: %s\n", st.ToString().c_str());
  SetExitCode(st.code() == StatusCode::kInvalidArgument ? 2 : 1);
}

Progress::Progress(std::string label) : label_(std::move(label)), tty_(isatty(2) != 0) {}

void Progress::Update(uint64_t done, uint64_t total) {
  if (!tty_ || total == 0) return;
  int pct = static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total));
  if (pct == last_percent_) return;
  last_percent_ = pct;
  int bar = pct / 4;
  std::fprintf(stderr, "\r%s [%.*s%*s] %3d%%", label_.c_str(), bar,
               "#########################", 25 - bar, "", pct);
  std::fflush(stderr);
}

void Progress::Finish() {
  if (tty_ && last_percent_ >= 0) std::fprintf(stderr, "\n");
}

}  // namespace ssmq::cli

int main(int argc, char** argv) {
  CLI::App app{"ssmq: convert, inspect and run quantized Mamba / Mamba2 models (.ssmq files)"};
  app.set_version_flag("--version", std::string("ssmq ") + SSMQ_VERSION + " (format 1.0)");
  app.require_subcommand(0, 1);
  auto& cmds = ssmq::cli::Commands();
  std::sort(cmds.begin(), cmds.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, setup] : cmds) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (app.get_subcommands().empty()) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  }
  return ssmq::cli::ExitCode();
}
