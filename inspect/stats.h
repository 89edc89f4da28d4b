// `ssmq inspect FILE --stats [PATTERN] [--against OTHER.ssmq]`: per tensor,
// statistics of the dequantized values; for scale tensors their distribution;
// for lossy tensors (q8/q4/f16/bf16) the error against the same-named tensor
// of a float source file.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/ssmq_file.h"
#include "inspect/values.h"

namespace ssmq::inspect {

// PATTERN: a glob (fnmatch: * ? [..]) when it has one of those characters,
// else a substring; "" matches everything.
bool NameMatches(const std::string& name, const std::string& pattern);

struct TensorStatsRow {
  std::string name;
  std::string type;
  std::vector<int64_t> shape;
  std::string role;
  ValueStats stats;
  std::optional<ScaleDistribution> scales;  // role "scale" only
  std::optional<ErrorVsReference> error;    // with a reference file, lossy tensors only
  std::string note;                         // why `error` is missing, or a read failure
};

struct StatsOptions {
  std::string pattern;
  const SsmqFile* against = nullptr;  // float source to compare lossy tensors with
};

// Tensors are read one at a time (memory: the largest tensor as f32, twice
// with a reference). Fails only when a tensor cannot be read.
Result<std::vector<TensorStatsRow>> BuildStats(const SsmqFile& file, const StatsOptions& opts);

std::string RenderStatsText(const std::vector<TensorStatsRow>& rows);
nlohmann::ordered_json StatsToJson(const std::vector<TensorStatsRow>& rows);

// Shared by diff: {"sqnr_db": x|null, "max_abs_err": y, "rmse": z}.
nlohmann::ordered_json ErrorToJson(const ErrorVsReference& e);

}  // namespace ssmq::inspect
