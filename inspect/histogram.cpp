#include "inspect/histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "inspect/text_format.h"

namespace ssmq::inspect {

Histogram BuildHistogram(std::span<const float> values, int bins, std::string name) {
  Histogram h;
  h.name = std::move(name);
  h.counts.assign(static_cast<size_t>(std::max(1, bins)), 0);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (float f : values) {
    if (!std::isfinite(f)) continue;
    lo = std::min(lo, static_cast<double>(f));
    hi = std::max(hi, static_cast<double>(f));
  }
  if (lo > hi) lo = hi = 0;  // no finite values
  h.lo = lo;
  h.hi = hi;
  const double width = (hi - lo) / static_cast<double>(h.counts.size());
  for (float f : values) {
    if (!std::isfinite(f)) {
      ++h.non_finite;
      continue;
    }
    size_t bin = width > 0 ? static_cast<size_t>((static_cast<double>(f) - lo) / width) : 0;
    bin = std::min(bin, h.counts.size() - 1);
    ++h.counts[bin];
    ++h.total;
  }
  return h;
}

std::string RenderHistogramText(const Histogram& h, int width) {
  std::string out = "Histogram of " + h.name + ": " + FormatCount(h.total) + " values in [" +
                    FormatDouble(h.lo) + ", " + FormatDouble(h.hi) + "]";
  if (h.non_finite) out += ", " + FormatCount(h.non_finite) + " NaN/Inf not shown";
  out += "\n";
  const uint64_t peak = *std::max_element(h.counts.begin(), h.counts.end());
  const double bin_width = (h.hi - h.lo) / static_cast<double>(h.counts.size());
  TextTable t;
  t.AddColumn("from", TextTable::Align::kRight);
  t.AddColumn("to", TextTable::Align::kRight);
  t.AddColumn("count", TextTable::Align::kRight);
  t.AddColumn("");
  for (size_t i = 0; i < h.counts.size(); ++i) {
    const double from = h.lo + bin_width * static_cast<double>(i);
    const double to = i + 1 == h.counts.size() ? h.hi : from + bin_width;
    size_t bar = peak ? static_cast<size_t>(std::llround(static_cast<double>(width) *
                                                         static_cast<double>(h.counts[i]) /
                                                         static_cast<double>(peak)))
                      : 0;
    if (bar == 0 && h.counts[i] > 0) bar = 1;  // a non-empty bin is always visible
    t.AddRow({FormatDouble(from, 4), FormatDouble(to, 4), std::to_string(h.counts[i]),
              std::string(bar, '#')});
  }
  return out + t.Render();
}

nlohmann::ordered_json HistogramToJson(const Histogram& h) {
  nlohmann::ordered_json j;
  j["name"] = h.name;
  j["min"] = JsonNumber(h.lo);
  j["max"] = JsonNumber(h.hi);
  j["total"] = h.total;
  j["non_finite"] = h.non_finite;
  j["counts"] = h.counts;
  return j;
}

}  // namespace ssmq::inspect
