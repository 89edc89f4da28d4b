// Reading any tensor as f32 values, and the statistics computed on them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "format/ssmq_file.h"

namespace ssmq::inspect {

// f32 values of any tensor: float types converted, Q8/Q4 dequantized with
// their "<name>.scale"/".zero", plain integers (i8/u8/i32/i64) cast.
Result<std::vector<float>> ReadTensorValues(const SsmqFile& file, const TensorInfo& t);

struct ValueStats {
  uint64_t count = 0;
  uint64_t non_finite = 0;  // NaN/Inf entries (excluded from the other numbers)
  double min = 0, max = 0, mean = 0, std = 0, absmax = 0;
  double zero_share = 0;    // fraction of entries exactly 0
};
ValueStats ComputeValueStats(std::span<const float> v);

// Distribution of a scale tensor's entries (quantiles by nearest rank).
struct ScaleDistribution {
  double min = 0, p01 = 0, p50 = 0, p99 = 0, max = 0;
  uint64_t zeros = 0;       // all-zero groups store scale 0
  double max_over_median = 0;  // spread; 0 when the median is 0
};
ScaleDistribution ComputeScaleDistribution(std::span<const float> scales);

// Error of `test` against a reference of the same length.
struct ErrorVsReference {
  double sqnr_db = 0;       // 10*log10(sum(ref^2) / sum((ref-test)^2)); +inf when equal
  double max_abs_err = 0;
  double rmse = 0;
};
ErrorVsReference CompareToReference(std::span<const float> ref, std::span<const float> test);

}  // namespace ssmq::inspect
