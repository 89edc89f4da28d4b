// The int8 SSM-state cache (site ssm_state): codes = clamp(RNE(h / s), ±127).
#include <cstdint>

#include "runtime_cpu/runtime_impl.h"

namespace ssmq::rt {

namespace {

// Scale row of flat state row r (rows repeat every d_inner for batches).
inline const float* ScaleRow(const StateQuant& sq, int64_t r, int64_t rows_per_seq) {
  return sq.scales.data() + ((r % rows_per_seq) / sq.rows_per_group) * sq.d_state;
}

}  // namespace

void DequantizeState(const StateQuant& sq, const int8_t* codes, int64_t n, float* out) {
  const int64_t N = sq.d_state, rows = n / N;
  const int64_t rows_per_seq = static_cast<int64_t>(sq.scales.size()) / N * sq.rows_per_group;
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = ScaleRow(sq, r, rows_per_seq);
    for (int64_t k = 0; k < N; ++k) out[r * N + k] = static_cast<float>(codes[r * N + k]) * s[k];
  }
}

void QuantizeState(const StateQuant& sq, const float* h, int64_t n, int8_t* codes) {
  const int64_t N = sq.d_state, rows = n / N;
  const int64_t rows_per_seq = static_cast<int64_t>(sq.scales.size()) / N * sq.rows_per_group;
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = ScaleRow(sq, r, rows_per_seq);
    for (int64_t k = 0; k < N; ++k) codes[r * N + k] = QuantizeValue(h[r * N + k] / s[k]);
  }
}

}  // namespace ssmq::rt
