// Quamba2 reorder: plan (sort, Ward clustering of heads, contiguous dim
// groups) and the float-equivalent rewrite of the weights.
#include "convert/reorder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "model/arch.h"
#include "runtime_cpu/hadamard.h"

namespace ssmq {

namespace {

using Profile = std::vector<double>;

// Ward agglomerative clustering of `points` into k clusters; returns the
// clusters as lists of point indices (each ascending).
std::vector<std::vector<int>> WardClusters(const std::vector<Profile>& points, int k) {
  std::vector<std::vector<int>> clusters;
  std::vector<Profile> means;
  for (size_t i = 0; i < points.size(); ++i) {
    clusters.push_back({static_cast<int>(i)});
    means.push_back(points[i]);
  }
  while (static_cast<int>(clusters.size()) > k) {
    double best = std::numeric_limits<double>::infinity();
    size_t bi = 0, bj = 1;
    for (size_t i = 0; i < clusters.size(); ++i) {
      for (size_t j = i + 1; j < clusters.size(); ++j) {
        const double na = static_cast<double>(clusters[i].size());
        const double nb = static_cast<double>(clusters[j].size());
        double d2 = 0;
        for (size_t c = 0; c < means[i].size(); ++c) {
          const double d = means[i][c] - means[j][c];
          d2 += d * d;
        }
        const double cost = na * nb / (na + nb) * d2;
        if (cost < best) best = cost, bi = i, bj = j;
      }
    }
    const double na = static_cast<double>(clusters[bi].size());
    const double nb = static_cast<double>(clusters[bj].size());
    for (size_t c = 0; c < means[bi].size(); ++c) {
      means[bi][c] = (na * means[bi][c] + nb * means[bj][c]) / (na + nb);
    }
    clusters[bi].insert(clusters[bi].end(), clusters[bj].begin(), clusters[bj].end());
    std::sort(clusters[bi].begin(), clusters[bi].end());
    clusters.erase(clusters.begin() + static_cast<std::ptrdiff_t>(bj));
    means.erase(means.begin() + static_cast<std::ptrdiff_t>(bj));
  }
  return clusters;
}

// Optimal split of positions 0..n-1 (feature vectors rows[p]) into k contiguous
// segments minimizing the summed within-segment squared distance to the
// segment mean. Returns the k cumulative ends (empty segments only when n < k,
// placed last).
std::vector<int32_t> ContiguousSegments(const std::vector<Profile>& rows, int k) {
  const int n = static_cast<int>(rows.size());
  const int kk = std::min(k, n);
  const size_t dim = rows.empty() ? 0 : rows[0].size();
  // cost[a][b] = SSE of segment [a, b)
  std::vector<double> cost(static_cast<size_t>((n + 1) * (n + 1)), 0.0);
  for (int a = 0; a < n; ++a) {
    std::vector<double> sum(dim, 0.0);
    double sumsq = 0;
    for (int b = a + 1; b <= n; ++b) {
      for (size_t c = 0; c < dim; ++c) {
        sum[c] += rows[b - 1][c];
        sumsq += rows[b - 1][c] * rows[b - 1][c];
      }
      double s2 = 0;
      for (size_t c = 0; c < dim; ++c) s2 += sum[c] * sum[c];
      cost[a * (n + 1) + b] = sumsq - s2 / (b - a);
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  // best[j][b]: min cost of splitting [0, b) into j segments; arg: start of the last.
  std::vector<double> best(static_cast<size_t>((kk + 1) * (n + 1)), inf);
  std::vector<int> arg(best.size(), 0);
  best[0] = 0;
  for (int j = 1; j <= kk; ++j) {
    for (int b = j; b <= n; ++b) {
      for (int a = j - 1; a < b; ++a) {
        const double c = best[(j - 1) * (n + 1) + a] + cost[a * (n + 1) + b];
        if (c < best[j * (n + 1) + b] - 1e-12) best[j * (n + 1) + b] = c, arg[j * (n + 1) + b] = a;
      }
    }
  }
  std::vector<int32_t> ends(static_cast<size_t>(k), n);
  int b = n;
  for (int j = kk; j >= 1; --j) {
    ends[j - 1] = b;
    b = arg[j * (n + 1) + b];
  }
  return ends;
}

Status CheckMamba2(const HParams& hp) {
  if (hp.arch != Arch::kMamba2) {
    return Status(StatusCode::kUnsupported, "reorder: the Quamba2 reorder is for Mamba2 models");
  }
  const int64_t group_width = hp.d_inner / hp.n_groups;
  const int64_t norm_group = hp.norm_group_size == 0 ? hp.d_inner : hp.norm_group_size;
  if (hp.n_groups <= 0 || hp.n_heads % hp.n_groups != 0 || norm_group % group_width != 0) {
    return Status(StatusCode::kUnsupported,
                  "reorder: gated-norm groups of " + std::to_string(norm_group) +
                      " channels would be broken by a permutation inside SSD groups of " +
                      std::to_string(group_width));
  }
  return Status::Ok();
}

Result<std::vector<float>> ReadFloat(const Model& model, const std::string& name) {
  const ModelTensor* t = model.Find(name);
  if (!t) return Status(StatusCode::kNotFound, "reorder: tensor '" + name + "' not found");
  if (!TraitsOf(t->type).is_float) {
    return Status(StatusCode::kUnsupported, "reorder: tensor '" + name + "' is not float");
  }
  return model.ReadAsF32(name);
}

void WriteFloat(Model& model, const std::string& name, const std::vector<float>& values) {
  const std::vector<int64_t> shape = model.Find(name)->shape;
  model.SetTensor(ModelTensor::FromF32(name, shape, values));
}

void WriteI32(Model& model, const std::string& name, std::vector<int64_t> shape,
              const std::vector<int32_t>& values) {
  std::vector<uint8_t> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  model.SetTensor(ModelTensor::Owned(name, TensorType::kI32, std::move(shape), std::move(bytes)));
}

Result<std::vector<int32_t>> ReadI32(const Model& model, const std::string& name, size_t n) {
  const ModelTensor* t = model.Find(name);
  if (!t || t->type != TensorType::kI32 || t->data.size() != n * 4) {
    return Status(StatusCode::kNotFound, "reorder: i32 tensor '" + name + "' of " +
                                             std::to_string(n) + " elements not found");
  }
  std::vector<int32_t> v(n);
  std::memcpy(v.data(), t->data.data(), n * 4);
  return v;
}

// Rows [row0, row0 + perm.size()) of a [rows][cols] matrix: new row row0+k = old row row0+perm[k].
void PermuteRows(std::vector<float>& w, int64_t cols, int64_t row0, const std::vector<int32_t>& perm) {
  std::vector<float> old(w.begin() + row0 * cols,
                         w.begin() + (row0 + static_cast<int64_t>(perm.size())) * cols);
  for (size_t k = 0; k < perm.size(); ++k) {
    std::copy_n(old.data() + perm[k] * cols, cols, w.data() + (row0 + static_cast<int64_t>(k)) * cols);
  }
}

// Every row of a [rows][perm.size()] matrix: new col k = old col perm[k].
void PermuteColumns(std::vector<float>& w, const std::vector<int32_t>& perm) {
  const size_t cols = perm.size();
  std::vector<float> row(cols);
  for (size_t r = 0; r < w.size() / cols; ++r) {
    for (size_t k = 0; k < cols; ++k) row[k] = w[r * cols + perm[k]];
    std::copy(row.begin(), row.end(), w.begin() + static_cast<std::ptrdiff_t>(r * cols));
  }
}

std::vector<int32_t> Inverse(const std::vector<int32_t>& perm) {
  std::vector<int32_t> inv(perm.size());
  for (size_t k = 0; k < perm.size(); ++k) inv[perm[k]] = static_cast<int32_t>(k);
  return inv;
}

bool IsPermutation(const std::vector<int32_t>& perm) {
  std::vector<bool> seen(perm.size(), false);
  for (int32_t p : perm) {
    if (p < 0 || static_cast<size_t>(p) >= perm.size() || seen[p]) return false;
    seen[p] = true;
  }
  return true;
}

// Applies a channel permutation (x_channels over d_inner, heads over n_heads) to one layer.
Status PermuteLayer(Model& model, int l, const std::vector<int32_t>& ch,
                    const std::vector<int32_t>& heads) {
  const HParams& hp = model.hp;
  const int64_t di = hp.d_inner, dm = hp.d_model, gn = hp.n_groups * hp.d_state;
  auto name = [l](const char* suffix) { return LayerTensorName(l, suffix); };
  {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> w, ReadFloat(model, name("ssm_in.weight")));
    PermuteRows(w, dm, 0, ch);
    PermuteRows(w, dm, di, ch);
    PermuteRows(w, dm, 2 * di + 2 * gn, heads);
    WriteFloat(model, name("ssm_in.weight"), w);
  }
  if (model.Find(name("ssm_in.bias"))) {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> b, ReadFloat(model, name("ssm_in.bias")));
    PermuteRows(b, 1, 0, ch);
    PermuteRows(b, 1, di, ch);
    PermuteRows(b, 1, 2 * di + 2 * gn, heads);
    WriteFloat(model, name("ssm_in.bias"), b);
  }
  {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> w, ReadFloat(model, name("ssm_conv1d.weight")));
    PermuteRows(w, hp.d_conv, 0, ch);
    WriteFloat(model, name("ssm_conv1d.weight"), w);
  }
  if (model.Find(name("ssm_conv1d.bias"))) {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> b, ReadFloat(model, name("ssm_conv1d.bias")));
    PermuteRows(b, 1, 0, ch);
    WriteFloat(model, name("ssm_conv1d.bias"), b);
  }
  for (const char* per_head : {"ssm_a_log", "ssm_d", "ssm_dt.bias"}) {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> v, ReadFloat(model, name(per_head)));
    PermuteRows(v, 1, 0, heads);
    WriteFloat(model, name(per_head), v);
  }
  {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> v, ReadFloat(model, name("ssm_norm.weight")));
    PermuteRows(v, 1, 0, ch);
    WriteFloat(model, name("ssm_norm.weight"), v);
  }
  {
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> w, ReadFloat(model, name("ssm_out.weight")));
    PermuteColumns(w, ch);
    WriteFloat(model, name("ssm_out.weight"), w);
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<LayerReorder>> PlanMamba2Reorder(const HParams& hp, const CalibResult& calib,
                                                    const ReorderOptions& opts) {
  SSMQ_RETURN_IF_ERROR(CheckMamba2(hp));
  if (opts.n_head_groups <= 0 || opts.n_dim_groups <= 0) {
    return Status(StatusCode::kInvalidArgument, "reorder: group counts must be positive");
  }
  const int64_t H = hp.n_heads, P = hp.head_dim, G = hp.n_groups, hpg = H / G;
  const int nhg = opts.n_head_groups, ndg = opts.n_dim_groups;
  std::vector<LayerReorder> plan(static_cast<size_t>(hp.n_layer));
  for (int l = 0; l < hp.n_layer; ++l) {
    const SiteStats* st = calib.Find(ObsSite::kConvOutX, l);
    if (!st || st->cols != hp.d_inner) {
      return Status(StatusCode::kNotFound,
                    "reorder: no conv_out_x statistics of " + std::to_string(hp.d_inner) +
                        " channels for layer " + std::to_string(l));
    }
    const std::vector<float>& s = st->channel_mean_abs;
    LayerReorder& lr = plan[l];
    lr.x_channels.resize(static_cast<size_t>(H * P));
    lr.heads.resize(static_cast<size_t>(H));
    lr.head_group_ends.assign(static_cast<size_t>(G * nhg), 0);
    lr.dim_group_ends.assign(static_cast<size_t>(G * nhg * ndg), 0);
    for (int64_t g = 0; g < G; ++g) {
      // 1. sorted channel order and normalized sorted profile per head.
      std::vector<std::vector<int32_t>> order(static_cast<size_t>(hpg));
      std::vector<Profile> profile(static_cast<size_t>(hpg));
      std::vector<double> head_max(static_cast<size_t>(hpg));
      for (int64_t j = 0; j < hpg; ++j) {
        const int64_t h = g * hpg + j;
        std::vector<int32_t>& o = order[j];
        o.resize(static_cast<size_t>(P));
        std::iota(o.begin(), o.end(), 0);
        std::stable_sort(o.begin(), o.end(),
                         [&](int32_t a, int32_t b) { return s[h * P + a] < s[h * P + b]; });
        Profile& pr = profile[j];
        double norm2 = 0;
        for (int64_t p = 0; p < P; ++p) {
          pr.push_back(s[h * P + o[p]]);
          norm2 += pr.back() * pr.back();
        }
        const double inv = norm2 > 0 ? 1.0 / std::sqrt(norm2) : 0.0;
        for (double& v : pr) v *= inv;
        head_max[j] = s[h * P + o[P - 1]];
      }
      // 2. Ward clusters, ordered by mean head max (ascending), then smallest head.
      std::vector<std::vector<int>> clusters = WardClusters(profile, std::min<int>(nhg, hpg));
      auto mean_max = [&](const std::vector<int>& c) {
        double m = 0;
        for (int j : c) m += head_max[j];
        return m / static_cast<double>(c.size());
      };
      std::stable_sort(clusters.begin(), clusters.end(),
                       [&](const std::vector<int>& a, const std::vector<int>& b) {
                         const double ma = mean_max(a), mb = mean_max(b);
                         return ma != mb ? ma < mb : a[0] < b[0];
                       });
      int64_t k = 0;  // group-local new head position
      for (int hg = 0; hg < nhg; ++hg) {
        if (hg < static_cast<int>(clusters.size())) {
          const std::vector<int>& c = clusters[hg];
          // 3. contiguous dim groups over this cluster's profiles.
          std::vector<Profile> rows(static_cast<size_t>(P));
          for (int64_t p = 0; p < P; ++p) {
            for (int j : c) rows[p].push_back(profile[j][p]);
          }
          const std::vector<int32_t> ends = ContiguousSegments(rows, ndg);
          std::copy(ends.begin(), ends.end(), lr.dim_group_ends.begin() + (g * nhg + hg) * ndg);
          for (int j : c) {
            const int64_t new_head = g * hpg + k, old_head = g * hpg + j;
            lr.heads[new_head] = static_cast<int32_t>(old_head);
            for (int64_t p = 0; p < P; ++p) {
              lr.x_channels[new_head * P + p] = static_cast<int32_t>(old_head * P + order[j][p]);
            }
            ++k;
          }
        } else {  // fewer heads than head groups: empty trailing groups
          std::fill_n(lr.dim_group_ends.begin() + (g * nhg + hg) * ndg, ndg, static_cast<int32_t>(P));
        }
        lr.head_group_ends[g * nhg + hg] = static_cast<int32_t>(k);
      }
    }
  }
  return plan;
}

Status ApplyMamba2Reorder(Model& model, const std::vector<LayerReorder>& plan) {
  const HParams& hp = model.hp;
  SSMQ_RETURN_IF_ERROR(CheckMamba2(hp));
  if (static_cast<int64_t>(plan.size()) != hp.n_layer) {
    return Status(StatusCode::kInvalidArgument, "reorder: plan has " + std::to_string(plan.size()) +
                                                    " layers, the model " + std::to_string(hp.n_layer));
  }
  const int64_t P = hp.head_dim, G = hp.n_groups, hpg = hp.n_heads / G;
  for (int l = 0; l < hp.n_layer; ++l) {
    const LayerReorder& lr = plan[l];
    SSMQ_ASSIGN_OR_RETURN(const std::optional<HadamardKind> had,
                          ReadHadamardDescriptor(model.extra, l, "ssm_out"));
    if (had) {
      return Status(StatusCode::kInvalidArgument,
                    "reorder: block " + std::to_string(l) +
                        " already has an out_proj-input Hadamard; reorder before rotating");
    }
    if (model.Find(LayerTensorName(l, "perm.x_channels"))) {
      return Status(StatusCode::kInvalidArgument,
                    "reorder: block " + std::to_string(l) + " is already reordered");
    }
    const bool sizes_ok = static_cast<int64_t>(lr.x_channels.size()) == hp.d_inner &&
                          static_cast<int64_t>(lr.heads.size()) == hp.n_heads &&
                          !lr.head_group_ends.empty() && lr.head_group_ends.size() % G == 0 &&
                          lr.dim_group_ends.size() % lr.head_group_ends.size() == 0;
    if (!sizes_ok || !IsPermutation(lr.x_channels) || !IsPermutation(lr.heads)) {
      return Status(StatusCode::kInvalidArgument,
                    "reorder: layer " + std::to_string(l) + " plan is not a valid permutation");
    }
    // Stays inside SSD groups, and channels follow their heads.
    for (int64_t k = 0; k < hp.d_inner; ++k) {
      const int64_t new_head = k / P, old_head = lr.x_channels[k] / P;
      if (old_head != lr.heads[new_head] || new_head / hpg != old_head / hpg) {
        return Status(StatusCode::kInvalidArgument,
                      "reorder: layer " + std::to_string(l) + " moves channel " +
                          std::to_string(lr.x_channels[k]) + " out of its head or SSD group");
      }
    }
  }
  for (int l = 0; l < hp.n_layer; ++l) {
    const LayerReorder& lr = plan[l];
    SSMQ_RETURN_IF_ERROR(PermuteLayer(model, l, lr.x_channels, lr.heads));
    const int64_t nhg = static_cast<int64_t>(lr.head_group_ends.size()) / G;
    const int64_t ndg = static_cast<int64_t>(lr.dim_group_ends.size()) / (G * nhg);
    WriteI32(model, LayerTensorName(l, "perm.x_channels"), {hp.d_inner}, lr.x_channels);
    WriteI32(model, LayerTensorName(l, "perm.heads"), {hp.n_heads}, lr.heads);
    WriteI32(model, LayerTensorName(l, "x_head_groups"), {G, nhg}, lr.head_group_ends);
    WriteI32(model, LayerTensorName(l, "x_dim_groups"), {G, nhg, ndg}, lr.dim_group_ends);
  }
  return Status::Ok();
}

Status ReorderMamba2(Model& model, const CalibResult& calib, const ReorderOptions& opts) {
  SSMQ_ASSIGN_OR_RETURN(const std::vector<LayerReorder> plan, PlanMamba2Reorder(model.hp, calib, opts));
  return ApplyMamba2Reorder(model, plan);
}

Status UndoMamba2Reorder(Model& model) {
  const HParams& hp = model.hp;
  SSMQ_RETURN_IF_ERROR(CheckMamba2(hp));
  for (int l = 0; l < hp.n_layer; ++l) {
    SSMQ_ASSIGN_OR_RETURN(const std::optional<HadamardKind> had,
                          ReadHadamardDescriptor(model.extra, l, "ssm_out"));
    if (had) {
      return Status(StatusCode::kUnsupported,
                    "reorder: block " + std::to_string(l) + " has an out_proj-input Hadamard");
    }
    SSMQ_ASSIGN_OR_RETURN(const std::vector<int32_t> ch,
                          ReadI32(model, LayerTensorName(l, "perm.x_channels"),
                                  static_cast<size_t>(hp.d_inner)));
    SSMQ_ASSIGN_OR_RETURN(const std::vector<int32_t> heads,
                          ReadI32(model, LayerTensorName(l, "perm.heads"),
                                  static_cast<size_t>(hp.n_heads)));
    if (!IsPermutation(ch) || !IsPermutation(heads)) {
      return Status(StatusCode::kBadValue, "reorder: layer " + std::to_string(l) +
                                               " permutation tensors are not permutations");
    }
    SSMQ_RETURN_IF_ERROR(PermuteLayer(model, l, Inverse(ch), Inverse(heads)));
    for (const char* suffix : {"perm.x_channels", "perm.heads", "x_head_groups", "x_dim_groups"}) {
      model.Erase(LayerTensorName(l, suffix));
    }
  }
  return Status::Ok();
}

}  // namespace ssmq
