// Consistency rules for tensor directory entries (spec/format.md "Tensor
// directory" rules T1..T10), shared by the writer (before writing) and the
// reader (before use). Internal to format/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/ssmq_file.h"

namespace ssmq::detail {

// Rows x cols view of a shape: cols = last dim (1 for rank 0), rows = the rest.
void RowsCols(const std::vector<int64_t>& shape, uint64_t* rows, uint64_t* cols);

// Name: 1..4096 bytes of printable UTF-8.
Status CheckTensorName(const std::string& name, uint64_t at);

// Type known, rank <= kMaxRank, dims >= 0, numel and bytes without overflow,
// quantization fields consistent with the type, q4 last dim even, compression
// known, and t.size == TensorBytes(type, numel). `at` is the entry offset.
Status CheckTensorDescription(const TensorInfo& t, uint64_t at);

// Across tensors: every q8/q4 tensor has "<name>.scale" (f32, ScaleCount
// elements) and, with a zero point, "<name>.zero" (u8, same count).
// Names must already be unique.
Status CheckCompanions(const std::vector<TensorInfo>& tensors);

// No two non-empty stored ranges [offset, offset + stored_size) intersect.
Status CheckNoOverlap(const std::vector<TensorInfo>& tensors);

}  // namespace ssmq::detail
