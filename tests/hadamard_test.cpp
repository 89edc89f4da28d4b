// Hadamard matrices and the fast normalized transform: orthogonality of every
// kind, fast == dense product, inverse / involution, and the sizes our
// fixtures need (768 = 12·64, 384 = 12·32, 256, 512).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "runtime_cpu/hadamard.h"

namespace ssmq {
namespace {

std::vector<float> RandomVector(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST(Hadamard, ChoosesKinds) {
  struct Case { int64_t n, base; int k; };
  for (const Case& c : std::vector<Case>{{1, 1, 0}, {256, 1, 8}, {512, 1, 9}, {12, 12, 0},
                                          {384, 12, 5}, {768, 12, 6}, {1536, 12, 7},
                                          {20, 20, 0}, {28, 28, 0}, {224, 28, 3}, {40, 40, 0},
                                          {2560, 40, 6}, {80, 40, 1}}) {
    auto kind = ChooseHadamard(c.n);
    ASSERT_TRUE(kind.ok()) << c.n;
    EXPECT_EQ(kind->base, c.base) << c.n;
    EXPECT_EQ(kind->log2_pow, c.k) << c.n;
    EXPECT_EQ(kind->size(), c.n);
  }
  for (int64_t n : {0, 3, 24 * 3, 36, 100, 1000}) {
    auto kind = ChooseHadamard(n);
    ASSERT_FALSE(kind.ok()) << n;
    EXPECT_EQ(kind.status().code(), StatusCode::kUnsupported);
  }
}

TEST(Hadamard, BaseMatricesAreNormalizedHadamard) {
  for (int64_t m : {1, 12, 20, 28, 40}) {
    const std::vector<float>& h = HadamardBaseMatrix(m);
    ASSERT_EQ(h.size(), static_cast<size_t>(m * m));
    for (int64_t j = 0; j < m; ++j) {
      EXPECT_EQ(h[j], 1.0f) << "first row, m=" << m;
      EXPECT_EQ(h[j * m], 1.0f) << "first column, m=" << m;
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < m; ++j) {
        float dot = 0;
        for (int64_t c = 0; c < m; ++c) dot += h[i * m + c] * h[j * m + c];
        EXPECT_EQ(dot, i == j ? static_cast<float>(m) : 0.0f) << "m=" << m << " rows " << i << "," << j;
      }
    }
  }
  // Pinned second rows (the spec quotes them) so a change of construction is noticed.
  const std::vector<float>& h12 = HadamardBaseMatrix(12);
  std::string row;
  for (int64_t j = 0; j < 12; ++j) row += h12[12 + j] > 0 ? '+' : '-';
  EXPECT_EQ(row, "+--+---+++-+");
  EXPECT_TRUE(HadamardBaseMatrix(13).empty());
}

// H H^T = N I for every kind up to N = 40·64.
TEST(Hadamard, DenseIsOrthogonalForEveryKindUpTo2560) {
  for (int64_t base : {1, 12, 20, 28, 40}) {
    for (int k = 0; (base << k) <= 40 * 64; ++k) {
      const HadamardKind kind{base, k};
      const int64_t n = kind.size();
      if (n < 2) continue;
      const std::vector<float> h = DenseHadamard(kind);
      int64_t bad = 0;
      if (n <= 320) {  // every dot product, exactly (integers below 2^24)
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t j = i; j < n; ++j) {
            float dot = 0;
            for (int64_t c = 0; c < n; ++c) dot += h[i * n + c] * h[j * n + c];
            bad += dot != (i == j ? static_cast<float>(n) : 0.0f);
          }
        }
      } else {  // larger: H times each row of H (H^T e_j) through the (separately
                // tested) fast transform must give sqrt(N) e_j
        std::vector<float> v(static_cast<size_t>(n));
        const float root = std::sqrt(static_cast<float>(n));
        for (int64_t j = 0; j < n; ++j) {
          std::copy_n(h.data() + j * n, n, v.data());
          HadamardTransform(kind, v.data());
          for (int64_t i = 0; i < n; ++i) bad += std::fabs(v[i] - (i == j ? root : 0.0f)) > 1e-3f;
        }
      }
      EXPECT_EQ(bad, 0) << "base " << base << " k " << k;
    }
  }
}

TEST(Hadamard, SylvesterMatchesPopcountFormula) {
  const HadamardKind kind{1, 5};
  const std::vector<float> h = DenseHadamard(kind);
  for (int64_t i = 0; i < 32; ++i) {
    for (int64_t j = 0; j < 32; ++j) {
      EXPECT_EQ(h[i * 32 + j], (__builtin_popcountll(i & j) & 1) ? -1.0f : 1.0f);
    }
  }
}

TEST(Hadamard, FastEqualsDenseProduct) {
  for (int64_t base : {1, 12, 20, 28, 40}) {
    for (int k = 0; (base << k) <= 40 * 64; ++k) {
      const HadamardKind kind{base, k};
      const int64_t n = kind.size();
      const std::vector<float> x = RandomVector(n, 100 + n);
      std::vector<float> fast = x, dense(static_cast<size_t>(n));
      HadamardTransform(kind, fast.data());
      HadamardTransformDense(kind, x.data(), dense.data());
      EXPECT_LT(MaxAbsDiff(fast, dense), 2e-5f) << "base " << base << " k " << k;
    }
  }
}

TEST(Hadamard, TransposedIsTheInverseAndNormIsPreserved) {
  for (int64_t n : {256, 384, 512, 768, 20 * 16, 28 * 8, 2560}) {
    const HadamardKind kind = ChooseHadamard(n).value();
    const std::vector<float> x = RandomVector(n, n);
    std::vector<float> y = x;
    HadamardTransform(kind, y.data());
    double nx = 0, ny = 0;
    for (int64_t i = 0; i < n; ++i) nx += x[i] * x[i], ny += y[i] * y[i];
    EXPECT_NEAR(ny / nx, 1.0, 1e-5) << n;
    HadamardTransformTransposed(kind, y.data());
    EXPECT_LT(MaxAbsDiff(x, y), 1e-5f) << n;
  }
}

TEST(Hadamard, PowerOfTwoIsAnInvolution) {
  for (int64_t n : {2, 256, 512, 2048}) {
    const HadamardKind kind = ChooseHadamard(n).value();
    const std::vector<float> x = RandomVector(n, 7 * n);
    std::vector<float> y = x;
    HadamardTransform(kind, y.data());
    EXPECT_GT(MaxAbsDiff(x, y), 0.1f);
    HadamardTransform(kind, y.data());
    EXPECT_LT(MaxAbsDiff(x, y), 1e-5f) << n;
  }
}

// The fixture sizes, with a known vector: H e_0 / sqrt(N) is the first column / sqrt(N),
// all +1/sqrt(N) after normalization; and the rows variant agrees with the single one.
TEST(Hadamard, FixtureSizesAndRows) {
  for (int64_t n : {768, 384, 256, 512}) {
    const HadamardKind kind = ChooseHadamard(n).value();
    std::vector<float> e(static_cast<size_t>(n), 0.0f);
    e[0] = 1.0f;
    HadamardTransform(kind, e.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(e[i], 1.0 / std::sqrt(double(n)), 1e-7) << n;

    const int64_t rows = 5, stride = n + 3;
    std::vector<float> m = RandomVector(rows * stride, 3 * n);
    std::vector<float> expect = m;
    for (int64_t r = 0; r < rows; ++r) HadamardTransform(kind, expect.data() + r * stride);
    for (int threads : {1, 2}) {
      std::vector<float> got = m;
      HadamardTransformRows(kind, got.data(), rows, stride, threads);
      EXPECT_EQ(MaxAbsDiff(got, expect), 0.0f);
    }
  }
}

}  // namespace
}  // namespace ssmq
