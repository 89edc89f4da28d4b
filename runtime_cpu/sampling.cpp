#include "runtime_cpu/sampling.h"

#include <algorithm>
#include <cmath>

namespace ssmq::rt {

int32_t ArgMax(const float* logits, int64_t n) {
  int32_t best = 0;
  float best_v = -INFINITY;
  bool found = false;
  for (int64_t i = 0; i < n; ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;
    if (!found || v > best_v) {
      best = static_cast<int32_t>(i);
      best_v = v;
      found = true;
    }
  }
  return best;
}

int32_t SampleTopP(const float* logits, int64_t n, float temperature, float top_p,
                   std::mt19937_64& rng, std::vector<std::pair<double, int32_t>>& scratch) {
  const int32_t best = ArgMax(logits, n);
  const double max_logit = logits[best];
  const double inv_t = 1.0 / static_cast<double>(temperature);
  scratch.clear();
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(logits[i])) continue;
    const double p = std::exp((static_cast<double>(logits[i]) - max_logit) * inv_t);
    scratch.emplace_back(p, static_cast<int32_t>(i));
    total += p;
  }
  std::sort(scratch.begin(), scratch.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  const double keep_mass = std::clamp(static_cast<double>(top_p), 0.0, 1.0) * total;
  size_t kept = 0;
  double kept_total = 0;
  while (kept < scratch.size()) {
    kept_total += scratch[kept].first;
    ++kept;
    if (kept_total >= keep_mass) break;
  }
  const double target = UniformUnit(rng) * kept_total;
  double run = 0;
  for (size_t i = 0; i < kept; ++i) {
    run += scratch[i].first;
    if (target < run) return scratch[i].second;
  }
  return kept ? scratch[kept - 1].second : best;
}

}  // namespace ssmq::rt
