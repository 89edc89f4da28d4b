// Subcommand registry for the `ssmq` CLI. Each cli/cmd_*.cpp registers one
// verb with SSMQ_REGISTER_COMMAND; the verb's callback does its work through
// the libraries and sets the process exit code with SetExitCode.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "format/status.h"

namespace ssmq::cli {

using CommandSetup = std::function<void(CLI::App& app)>;

struct CommandRegistration {
  CommandRegistration(int order, CommandSetup setup);
};
std::vector<std::pair<int, CommandSetup>>& Commands();

void SetExitCode(int code);
int ExitCode();

// Prints "ssmq: error: <status>" to stderr and sets exit code 1 (2 for bad usage).
void ReportError(const Status& st);

// A progress line on stderr, only when stderr is a terminal. Call Finish() at the end.
class Progress {
 public:
  explicit Progress(std::string label);
  void Update(uint64_t done, uint64_t total);
  void Finish();
 private:
  std::string label_;
  bool tty_;
  int last_percent_ = -1;
};

}  // namespace ssmq::cli

#define SSMQ_REGISTER_COMMAND(order, fn) \
  static ::ssmq::cli::CommandRegistration SSMQ_CONCAT(_ssmq_cmd_, __LINE__)(order, fn)
