// `ssmq inspect FILE --histogram NAME [--bins N]`: a text histogram of a
// tensor's (dequantized) values over [min, max].
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ssmq::inspect {

struct Histogram {
  std::string name;
  double lo = 0, hi = 0;            // range of the finite values
  std::vector<uint64_t> counts;     // bins of width (hi - lo) / bins; the last bin includes hi
  uint64_t total = 0;
  uint64_t non_finite = 0;          // NaN/Inf, not binned
};

Histogram BuildHistogram(std::span<const float> values, int bins, std::string name);
// One line per bin: "[lo, hi)  count  ####"; bars scaled to `width` characters.
std::string RenderHistogramText(const Histogram& h, int width = 50);
nlohmann::ordered_json HistogramToJson(const Histogram& h);

}  // namespace ssmq::inspect
