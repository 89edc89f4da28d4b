// Next-token selection from one row of logits.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace ssmq::rt {

// Index of the largest of logits[0..n) (ties -> lowest index; NaNs ignored).
int32_t ArgMax(const float* logits, int64_t n);

// Uniform double in [0, 1) from the top 53 bits of one draw (the same on every platform,
// unlike std::uniform_real_distribution).
inline double UniformUnit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

// Temperature + nucleus (top-p) sampling over logits[0..n): probabilities
// softmax(logits / temperature); ids sorted by probability (ties -> lower id);
// the smallest prefix whose mass reaches top_p is kept (at least one id);
// one uniform draw picks within it. `scratch` is reused between calls.
int32_t SampleTopP(const float* logits, int64_t n, float temperature, float top_p,
                   std::mt19937_64& rng, std::vector<std::pair<double, int32_t>>& scratch);

}  // namespace ssmq::rt
