#include "inspect/stats.h"

#include <fnmatch.h>

#include "inspect/labels.h"
#include "inspect/text_format.h"

namespace ssmq::inspect {

bool NameMatches(const std::string& name, const std::string& pattern) {
  if (pattern.empty()) return true;
  if (pattern.find_first_of("*?[") != std::string::npos)
    return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
  return name.find(pattern) != std::string::npos;
}

namespace {

bool IsLossy(TensorType t) {
  return t == TensorType::kF16 || t == TensorType::kBF16 || t == TensorType::kQ8 ||
         t == TensorType::kQ4;
}

// Fills row.error (or row.note) by comparing with the same-named tensor of `ref`.
Status CompareWithReference(const SsmqFile& ref, const TensorInfo& t,
                            const std::vector<float>& values, TensorStatsRow& row) {
  const TensorInfo* other = ref.FindTensor(t.name);
  if (!other) {
    row.note = "not in the reference file";
    return Status::Ok();
  }
  if (other->numel() != t.numel()) {
    row.note = "reference has shape " + FormatShape(other->shape);
    return Status::Ok();
  }
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> ref_values, ReadTensorValues(ref, *other));
  row.error = CompareToReference(ref_values, values);
  return Status::Ok();
}

}  // namespace

Result<std::vector<TensorStatsRow>> BuildStats(const SsmqFile& file, const StatsOptions& opts) {
  TensorLabeler labeler(file.metadata());
  std::vector<TensorStatsRow> rows;
  for (const TensorInfo& t : file.tensors()) {
    if (!NameMatches(t.name, opts.pattern)) continue;
    TensorStatsRow row;
    row.name = t.name;
    row.type = std::string(TensorTypeName(t.type));
    row.shape = t.shape;
    row.role = labeler.Label(t.name).role;
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> values, ReadTensorValues(file, t));
    row.stats = ComputeValueStats(values);
    if (row.role == "scale") row.scales = ComputeScaleDistribution(values);
    if (opts.against && IsLossy(t.type) && row.role != "scale") {
      SSMQ_RETURN_IF_ERROR(CompareWithReference(*opts.against, t, values, row));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string RenderStatsText(const std::vector<TensorStatsRow>& rows) {
  using A = TextTable::Align;
  TextTable t;
  t.AddColumn("name");
  t.AddColumn("type");
  t.AddColumn("shape");
  for (const char* h : {"min", "max", "mean", "std", "absmax", "zeros%"}) t.AddColumn(h, A::kRight);
  bool any_error = false, any_nonfinite = false;
  for (const auto& r : rows) {
    any_error |= r.error.has_value() || !r.note.empty();
    any_nonfinite |= r.stats.non_finite > 0;
  }
  if (any_nonfinite) t.AddColumn("nan/inf", A::kRight);
  if (any_error) {
    t.AddColumn("sqnr_db", A::kRight);
    t.AddColumn("max_abs_err", A::kRight);
    t.AddColumn("note");
  }
  for (const auto& r : rows) {
    char zeros[32];
    std::snprintf(zeros, sizeof zeros, "%.2f", 100.0 * r.stats.zero_share);
    std::vector<std::string> cells = {r.name,
                                      r.type,
                                      FormatShape(r.shape),
                                      FormatDouble(r.stats.min),
                                      FormatDouble(r.stats.max),
                                      FormatDouble(r.stats.mean),
                                      FormatDouble(r.stats.std),
                                      FormatDouble(r.stats.absmax),
                                      zeros};
    if (any_nonfinite) cells.push_back(std::to_string(r.stats.non_finite));
    if (any_error) {
      cells.push_back(r.error ? FormatDouble(r.error->sqnr_db, 4) : "-");
      cells.push_back(r.error ? FormatDouble(r.error->max_abs_err) : "-");
      cells.push_back(r.note);
    }
    t.AddRow(std::move(cells));
  }
  std::string out = t.Render();

  bool any_scales = false;
  for (const auto& r : rows) any_scales |= r.scales.has_value();
  if (any_scales) {
    out += "Scale distributions:\n";
    TextTable s;
    s.AddColumn("name");
    for (const char* h : {"count", "min", "p1", "median", "p99", "max", "max/median", "zeros"})
      s.AddColumn(h, A::kRight);
    for (const auto& r : rows) {
      if (!r.scales) continue;
      const ScaleDistribution& d = *r.scales;
      s.AddRow({r.name, std::to_string(r.stats.count), FormatDouble(d.min), FormatDouble(d.p01),
                FormatDouble(d.p50), FormatDouble(d.p99), FormatDouble(d.max),
                FormatDouble(d.max_over_median, 4), std::to_string(d.zeros)});
    }
    out += s.Render();
  }
  return out;
}

nlohmann::ordered_json ErrorToJson(const ErrorVsReference& e) {
  return {{"sqnr_db", JsonNumber(e.sqnr_db)},
          {"max_abs_err", JsonNumber(e.max_abs_err)},
          {"rmse", JsonNumber(e.rmse)}};
}

nlohmann::ordered_json StatsToJson(const std::vector<TensorStatsRow>& rows) {
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const auto& r : rows) {
    nlohmann::ordered_json o;
    o["name"] = r.name;
    o["type"] = r.type;
    o["shape"] = r.shape;
    o["role"] = r.role;
    o["count"] = r.stats.count;
    o["non_finite"] = r.stats.non_finite;
    o["min"] = JsonNumber(r.stats.min);
    o["max"] = JsonNumber(r.stats.max);
    o["mean"] = JsonNumber(r.stats.mean);
    o["std"] = JsonNumber(r.stats.std);
    o["absmax"] = JsonNumber(r.stats.absmax);
    o["zero_share"] = JsonNumber(r.stats.zero_share);
    if (r.scales) {
      const ScaleDistribution& d = *r.scales;
      o["scale_distribution"] = {{"min", JsonNumber(d.min)},       {"p01", JsonNumber(d.p01)},
                                 {"p50", JsonNumber(d.p50)},       {"p99", JsonNumber(d.p99)},
                                 {"max", JsonNumber(d.max)},       {"zeros", d.zeros},
                                 {"max_over_median", JsonNumber(d.max_over_median)}};
    }
    if (r.error) o["error"] = ErrorToJson(*r.error);
    if (!r.note.empty()) o["note"] = r.note;
    arr.push_back(std::move(o));
  }
  return arr;
}

}  // namespace ssmq::inspect
