#include "inspect/values.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace ssmq::inspect {

namespace {
template <class T>
std::vector<float> CastInts(std::span<const uint8_t> bytes, uint64_t n) {
  std::vector<float> out(n);
  for (uint64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, bytes.data() + i * sizeof(T), sizeof(T));
    out[i] = static_cast<float>(v);
  }
  return out;
}
}  // namespace

Result<std::vector<float>> ReadTensorValues(const SsmqFile& file, const TensorInfo& t) {
  const TensorTypeTraits& traits = TraitsOf(t.type);
  if (traits.is_float || traits.is_quantized) return file.ReadAsF32(t);
  SSMQ_ASSIGN_OR_RETURN(std::span<const uint8_t> bytes, file.TensorData(t));
  const uint64_t n = t.numel();
  switch (t.type) {
    case TensorType::kI8: return CastInts<int8_t>(bytes, n);
    case TensorType::kU8: return CastInts<uint8_t>(bytes, n);
    case TensorType::kI32: return CastInts<int32_t>(bytes, n);
    case TensorType::kI64: return CastInts<int64_t>(bytes, n);
    default: break;
  }
  return Status(StatusCode::kUnsupported,
                "tensor '" + t.name + "': cannot read type " + std::string(TensorTypeName(t.type)) +
                    " as values");
}

ValueStats ComputeValueStats(std::span<const float> v) {
  ValueStats s;
  s.count = v.size();
  double sum = 0, sum_sq = 0;
  uint64_t finite = 0, zeros = 0;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (float f : v) {
    if (!std::isfinite(f)) {
      ++s.non_finite;
      continue;
    }
    const double x = f;
    ++finite;
    zeros += (x == 0.0);
    sum += x;
    sum_sq += x * x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  if (finite) {
    s.min = lo;
    s.max = hi;
    s.mean = sum / static_cast<double>(finite);
    s.std = std::sqrt(std::max(0.0, sum_sq / static_cast<double>(finite) - s.mean * s.mean));
    s.absmax = std::max(std::fabs(lo), std::fabs(hi));
  }
  s.zero_share = s.count ? static_cast<double>(zeros) / static_cast<double>(s.count) : 0.0;
  return s;
}

ScaleDistribution ComputeScaleDistribution(std::span<const float> scales) {
  ScaleDistribution d;
  if (scales.empty()) return d;
  std::vector<float> sorted(scales.begin(), scales.end());
  std::sort(sorted.begin(), sorted.end());
  auto quantile = [&](double q) {
    const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
    return static_cast<double>(sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)]);
  };
  d.min = sorted.front();
  d.max = sorted.back();
  d.p01 = quantile(0.01);
  d.p50 = quantile(0.50);
  d.p99 = quantile(0.99);
  d.zeros = static_cast<uint64_t>(std::count(sorted.begin(), sorted.end(), 0.0f));
  d.max_over_median = d.p50 != 0 ? d.max / d.p50 : 0;
  return d;
}

ErrorVsReference CompareToReference(std::span<const float> ref, std::span<const float> test) {
  ErrorVsReference e;
  const size_t n = std::min(ref.size(), test.size());
  double signal = 0, noise = 0;
  for (size_t i = 0; i < n; ++i) {
    const double r = ref[i], d = r - static_cast<double>(test[i]);
    signal += r * r;
    noise += d * d;
    e.max_abs_err = std::max(e.max_abs_err, std::fabs(d));
  }
  e.rmse = n ? std::sqrt(noise / static_cast<double>(n)) : 0;
  if (noise == 0) {
    e.sqnr_db = std::numeric_limits<double>::infinity();
  } else if (signal == 0) {
    e.sqnr_db = -std::numeric_limits<double>::infinity();
  } else {
    e.sqnr_db = 10.0 * std::log10(signal / noise);
  }
  return e;
}

}  // namespace ssmq::inspect
