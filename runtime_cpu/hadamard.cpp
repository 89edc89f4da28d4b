// Hadamard matrices (Sylvester, Paley I/II) and the fast normalized transform.
#include "runtime_cpu/hadamard.h"

#include <omp.h>

#include <cmath>
#include <string>

#include "runtime_cpu/team_blocks.h"

namespace ssmq {

namespace {

// Quadratic character of x modulo the prime q: 0 for 0, +1 for a non-zero
// square, -1 otherwise.
int QuadraticCharacter(int64_t x, int64_t q) {
  x = ((x % q) + q) % q;
  if (x == 0) return 0;
  for (int64_t y = 1; y < q; ++y) {
    if ((y * y) % q == x) return 1;
  }
  return -1;
}

// Negates every column whose first-row entry is -1, then every row whose
// first-column entry is -1: first row and column become all +1.
void Normalize(std::vector<float>& h, int64_t m) {
  for (int64_t j = 0; j < m; ++j) {
    if (h[j] < 0) {
      for (int64_t i = 0; i < m; ++i) h[i * m + j] = -h[i * m + j];
    }
  }
  for (int64_t i = 0; i < m; ++i) {
    if (h[i * m] < 0) {
      for (int64_t j = 0; j < m; ++j) h[i * m + j] = -h[i * m + j];
    }
  }
}

// Paley construction I (q prime, q ≡ 3 mod 4), order q + 1. Index 0 is the
// point at infinity, index 1 + x the field element x:
//   H[0][j] = 1, H[i][0] = -1 (i >= 1), H[1+x][1+y] = chi(y - x) for x != y, H[i][i] = 1.
std::vector<float> PaleyI(int64_t q) {
  const int64_t m = q + 1;
  std::vector<float> h(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      float v;
      if (i == 0) v = 1;
      else if (j == 0) v = -1;
      else if (i == j) v = 1;
      else v = static_cast<float>(QuadraticCharacter((j - 1) - (i - 1), q));
      h[i * m + j] = v;
    }
  }
  Normalize(h, m);
  return h;
}

// Paley construction II (q prime, q ≡ 1 mod 4), order 2(q + 1). The symmetric
// conference matrix C (C[0][0] = 0, C[0][j] = C[j][0] = 1, C[1+x][1+y] = chi(y - x))
// with every entry replaced by a 2x2 block: 0 -> [[1, -1], [-1, -1]],
// ±1 -> ±[[1, 1], [1, -1]]; H[2i + r][2j + s] = block(C[i][j])[r][s].
std::vector<float> PaleyII(int64_t q) {
  const int64_t c = q + 1, m = 2 * c;
  std::vector<float> h(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < c; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      int cij;
      if (i == 0 && j == 0) cij = 0;
      else if (i == 0 || j == 0) cij = 1;
      else cij = QuadraticCharacter((j - 1) - (i - 1), q);
      for (int r = 0; r < 2; ++r) {
        for (int s = 0; s < 2; ++s) {
          float v;
          if (cij == 0) v = (r == 0 && s == 0) ? 1.0f : -1.0f;
          else v = static_cast<float>(cij) * ((r == 1 && s == 1) ? -1.0f : 1.0f);
          h[(2 * i + r) * m + (2 * j + s)] = v;
        }
      }
    }
  }
  Normalize(h, m);
  return h;
}

std::vector<float> Doubled(const std::vector<float>& h, int64_t m) {
  const int64_t n = 2 * m;
  std::vector<float> out(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const float sign = (i >= m && j >= m) ? -1.0f : 1.0f;
      out[i * n + j] = sign * h[(i % m) * m + (j % m)];
    }
  }
  return out;
}

std::vector<float> Transposed(const std::vector<float>& h, int64_t m) {
  std::vector<float> t(h.size());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < m; ++j) t[j * m + i] = h[i * m + j];
  }
  return t;
}

struct BaseTables {
  std::vector<float> h1{1.0f}, h12, h20, h28, h40;
  std::vector<float> t12, t20, t28, t40;  // transposes
  BaseTables() {
    h12 = PaleyI(11);
    h20 = PaleyI(19);
    h28 = PaleyII(13);
    h40 = Doubled(h20, 20);
    t12 = Transposed(h12, 12);
    t20 = Transposed(h20, 20);
    t28 = Transposed(h28, 28);
    t40 = Transposed(h40, 40);
  }
};

const BaseTables& Tables() {
  static const BaseTables tables;
  return tables;
}

const std::vector<float>* BaseMatrix(int64_t base, bool transposed) {
  const BaseTables& t = Tables();
  switch (base) {
    case 1: return &t.h1;
    case 12: return transposed ? &t.t12 : &t.h12;
    case 20: return transposed ? &t.t20 : &t.h20;
    case 28: return transposed ? &t.t28 : &t.h28;
    case 40: return transposed ? &t.t40 : &t.h40;
    default: return nullptr;
  }
}

// In-place unnormalized Sylvester transform of len = 2^k floats.
void SylvesterButterfly(float* x, int64_t len) {
  for (int64_t h = 1; h < len; h *= 2) {
    for (int64_t i = 0; i < len; i += 2 * h) {
      for (int64_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

void Transform(const HadamardKind& kind, float* x, bool transposed) {
  const int64_t chunk = int64_t{1} << kind.log2_pow, m = kind.base, n = m * chunk;
  for (int64_t c = 0; c < m; ++c) SylvesterButterfly(x + c * chunk, chunk);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  if (m == 1) {
    for (int64_t i = 0; i < n; ++i) x[i] *= scale;
    return;
  }
  // Across chunks: out[a·chunk + b] = sum_c Hm[a][c] · x[c·chunk + b].
  const float* hm = BaseMatrix(m, transposed)->data();
  thread_local std::vector<float> tmp;
  if (tmp.size() < static_cast<size_t>(n)) tmp.resize(static_cast<size_t>(n));
  float* out = tmp.data();
  for (int64_t a = 0; a < m; ++a) {
    float* o = out + a * chunk;
    for (int64_t b = 0; b < chunk; ++b) o[b] = 0.0f;
    for (int64_t c = 0; c < m; ++c) {
      const float s = hm[a * m + c];
      const float* xc = x + c * chunk;
      for (int64_t b = 0; b < chunk; ++b) o[b] += s * xc[b];
    }
  }
  for (int64_t i = 0; i < n; ++i) x[i] = out[i] * scale;
}

}  // namespace

Result<HadamardKind> ChooseHadamard(int64_t n) {
  if (n > 0) {
    for (int64_t base : {1, 12, 40, 20, 28}) {
      if (n % base != 0) continue;
      const int64_t p = n / base;
      if ((p & (p - 1)) != 0) continue;
      int k = 0;
      while ((int64_t{1} << k) < p) ++k;
      return HadamardKind{base, k};
    }
  }
  return Status(StatusCode::kUnsupported,
                "hadamard: size " + std::to_string(n) +
                    " is not 2^k, 12*2^k, 20*2^k, 28*2^k or 40*2^k");
}

const std::vector<float>& HadamardBaseMatrix(int64_t base) {
  static const std::vector<float> empty;
  const std::vector<float>* h = BaseMatrix(base, false);
  return h ? *h : empty;
}

std::vector<float> DenseHadamard(const HadamardKind& kind) {
  const int64_t chunk = int64_t{1} << kind.log2_pow, m = kind.base, n = m * chunk;
  const std::vector<float>& hm = HadamardBaseMatrix(m);
  std::vector<float> h(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const int64_t a = i / chunk, b = i % chunk, c = j / chunk, d = j % chunk;
      const float syl = (__builtin_popcountll(static_cast<uint64_t>(b & d)) & 1) ? -1.0f : 1.0f;
      h[i * n + j] = hm[a * m + c] * syl;
    }
  }
  return h;
}

void HadamardTransform(const HadamardKind& kind, float* x) { Transform(kind, x, false); }

void HadamardTransformTransposed(const HadamardKind& kind, float* x) {
  Transform(kind, x, true);
}

void HadamardTransformRows(const HadamardKind& kind, float* x, int64_t rows, int64_t stride,
                           int n_threads) {
  const int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
  rt::ForEachIndex(rows, nt, nt > 1, [&](int64_t r) { Transform(kind, x + r * stride, false); });
}

namespace {
std::string DescriptorKey(int layer, std::string_view site, const char* field) {
  return "blk." + std::to_string(layer) + ".hadamard." + std::string(site) + "." + field;
}
}  // namespace

void WriteHadamardDescriptor(Metadata& md, int layer, std::string_view site,
                             const HadamardKind& kind) {
  md.Set(DescriptorKey(layer, site, "size"), MetaValue::U32(static_cast<uint32_t>(kind.size())));
  md.Set(DescriptorKey(layer, site, "base"), MetaValue::U32(static_cast<uint32_t>(kind.base)));
  md.Set(DescriptorKey(layer, site, "kind"), MetaValue::String("orthonormal"));
}

Result<std::optional<HadamardKind>> ReadHadamardDescriptor(const Metadata& md, int layer,
                                                           std::string_view site) {
  const std::string size_key = DescriptorKey(layer, site, "size");
  const std::string base_key = DescriptorKey(layer, site, "base");
  const std::string kind_key = DescriptorKey(layer, site, "kind");
  if (!md.Find(size_key) && !md.Find(base_key) && !md.Find(kind_key)) {
    return std::optional<HadamardKind>();
  }
  auto bad = [&](const std::string& what) {
    return Status(StatusCode::kBadMetadata, "hadamard descriptor blk." + std::to_string(layer) +
                                                ".hadamard." + std::string(site) + ": " + what);
  };
  auto size = md.GetInt(size_key);
  auto base = md.GetInt(base_key);
  auto kind = md.GetString(kind_key);
  if (!size.ok() || !base.ok() || !kind.ok()) return bad("needs size, base and kind");
  if (*kind != "orthonormal") return bad("unknown kind '" + *kind + "'");
  if (HadamardBaseMatrix(*base).empty()) return bad("base " + std::to_string(*base) + " not in {1, 12, 20, 28, 40}");
  if (*size <= 0 || *size % *base != 0) return bad("size " + std::to_string(*size) + " is not a multiple of the base");
  const int64_t p = *size / *base;
  if ((p & (p - 1)) != 0) return bad("size / base is not a power of two");
  int k = 0;
  while ((int64_t{1} << k) < p) ++k;
  return std::optional<HadamardKind>(HadamardKind{*base, k});
}

void HadamardTransformDense(const HadamardKind& kind, const float* x, float* out) {
  const int64_t n = kind.size();
  const std::vector<float> h = DenseHadamard(kind);
  const double scale = 1.0 / std::sqrt(static_cast<double>(n));
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < n; ++j) acc += static_cast<double>(h[i * n + j]) * x[j];
    out[i] = static_cast<float>(acc * scale);
  }
}

}  // namespace ssmq
