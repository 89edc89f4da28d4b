// Normalized Hadamard transforms y = H_N x / sqrt(N) for N = m · 2^k,
// m in {1, 12, 20, 28, 40}: H_N = H_m ⊗ H_{2^k} (base outer), element
// (a·2^k + b, c·2^k + d) = H_m[a][c] · H_{2^k}[b][d]. H_{2^k} is Sylvester's
// matrix (H[i][j] = (-1)^popcount(i & j)); the base matrices are built by
// Paley's constructions (spec/format.md §6.4 gives every detail so other
// runtimes can reproduce them bit for bit):
//   H_12: Paley I, q = 11     H_20: Paley I, q = 19     H_28: Paley II, q = 13
//   H_40: [[H_20, H_20], [H_20, -H_20]] (Paley II needs q ≡ 1 mod 4; 19 is not)
// each normalized so that its first row and first column are all +1.
// H_N / sqrt(N) is orthogonal, so its inverse is its transpose; with m = 1 it
// is also symmetric (an involution).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "format/metadata.h"
#include "format/status.h"

namespace ssmq {

// Which matrix: N = base · 2^log2_pow.
struct HadamardKind {
  int64_t base = 1;      // 1, 12, 20, 28 or 40
  int log2_pow = 0;      // k
  int64_t size() const { return base << log2_pow; }
  bool operator==(const HadamardKind&) const = default;
};

// The kind for a transform of size n, trying bases in the order 1, 12, 40,
// 20, 28 (Quamba's dispatch order first: 12·2^k, then 40·2^k, else 2^k;
// 20 = 40/2 is therefore only chosen for n = 20). kUnsupported otherwise.
Result<HadamardKind> ChooseHadamard(int64_t n);

// The m x m ±1 base matrix, row-major (m = 1 gives [1]). Empty for other m.
const std::vector<float>& HadamardBaseMatrix(int64_t base);

// The dense unnormalized H_N (±1), row-major N x N. For tests and offline use.
std::vector<float> DenseHadamard(const HadamardKind& kind);

// In place: x <- H_N x / sqrt(N), x has N = kind.size() floats. O(N log N + m N).
void HadamardTransform(const HadamardKind& kind, float* x);
// In place: x <- H_N^T x / sqrt(N), the inverse of HadamardTransform.
void HadamardTransformTransposed(const HadamardKind& kind, float* x);

// HadamardTransform on each of `rows` rows of N floats, row r starting at
// x + r*stride. n_threads <= 0: OpenMP default.
void HadamardTransformRows(const HadamardKind& kind, float* x, int64_t rows, int64_t stride,
                           int n_threads);

// The metadata descriptor of a rotation at `site` of block `layer`
// (spec/format.md §6.4): blk.{layer}.hadamard.{site}.size (u32), .base (u32),
// .kind (string "orthonormal"). Sites in use: "ssm_out" (the out_proj input:
// the runtime applies HadamardTransform to it online; the weight is stored as W H^T).
void WriteHadamardDescriptor(Metadata& md, int layer, std::string_view site,
                             const HadamardKind& kind);
// nullopt when the file has no descriptor for this site; kBadMetadata when it
// is incomplete or inconsistent (size != base·2^k, unknown kind or base).
Result<std::optional<HadamardKind>> ReadHadamardDescriptor(const Metadata& md, int layer,
                                                           std::string_view site);

// Scalar reference: out = H_N x / sqrt(N) by the dense matrix product (double accumulation).
void HadamardTransformDense(const HadamardKind& kind, const float* x, float* out);

}  // namespace ssmq
