// Quamba2 reorder: the plan on hand-made statistics, and float equivalence
// of the reordered mamba2 fixture (full and grouped gated norm), together with
// both rotations; undo restores the weights; save/load keeps the permutations.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "convert/calibrate.h"
#include "convert/hf_import.h"
#include "convert/reorder.h"
#include "convert/rotate.h"
#include "convert/safetensors.h"
#include "model/arch.h"
#include "model/model_io.h"
#include "runtime_cpu/runtime.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

using testing::FixtureModelDir;
using testing::FixtureReferenceDir;

Model Import(const std::string& name, std::optional<NormGrouping> norm = std::nullopt) {
  HfImportOptions opts;
  opts.mamba2_norm = norm;
  auto model = ImportHfDirectory(FixtureModelDir(name), opts);
  if (!model.ok()) {
    ADD_FAILURE() << model.status().ToString();
    std::abort();
  }
  return std::move(model).value();
}

std::vector<int32_t> RefIds(const std::string& name) { return testing::ReferenceInputIds(name); }

std::vector<float> Logits(const Model& m, const std::vector<int32_t>& ids) {
  auto rt = Runtime::Create(m, 2);
  EXPECT_TRUE(rt.ok()) << rt.status().ToString();
  if (!rt.ok()) return {};
  RecurrentState s = (*rt)->NewState(2);
  std::vector<float> logits;
  EXPECT_TRUE((*rt)->Prefill(ids, 2, static_cast<int64_t>(ids.size()) / 2, s, logits).ok());
  return logits;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

const CalibResult& Calib() {
  static const CalibResult calib = [] {
    CalibOptions opts;
    opts.samples = 8;
    opts.seqlen = 128;
    const std::string text =
        testing::ReadFileText(testing::FixturesDir() + "/data/tinyshakespeare.txt");
    auto c = Calibrate(Import("mamba2-tiny"), text, opts);
    if (!c.ok()) std::abort();
    return std::move(c).value();
  }();
  return calib;
}

std::vector<int32_t> ReadI32(const Model& m, const std::string& name) {
  const ModelTensor* t = m.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  EXPECT_EQ(t->type, TensorType::kI32);
  std::vector<int32_t> v(t->data.size() / 4);
  std::memcpy(v.data(), t->data.data(), t->data.size());
  return v;
}

// 1 SSD group, 8 heads of 4 channels: heads 1, 4, 6 are "loud" (x10). Channel
// statistic of head h, channel p: (h loud ? 10 : 1) * (4 - p) (descending, so sorting reverses).
TEST(ReorderPlan, SortsChannelsAndClustersLoudHeadsLast) {
  HParams hp;
  hp.arch = Arch::kMamba2;
  hp.n_layer = 1;
  hp.n_heads = 8;
  hp.head_dim = 4;
  hp.d_inner = 32;
  hp.n_groups = 1;
  hp.d_state = 2;
  hp.norm_group_size = 32;
  CalibResult calib;
  SiteStats st;
  st.site = ObsSite::kConvOutX;
  st.layer = 0;
  st.cols = 32;
  for (int h = 0; h < 8; ++h) {
    const bool loud = h == 1 || h == 4 || h == 6;
    // Quiet heads have a flat-ish profile, loud ones a steep one.
    for (int p = 0; p < 4; ++p) {
      st.channel_mean_abs.push_back(loud ? 10.0f * float(1 << (3 - p)) : 1.0f + 0.01f * float(3 - p) + 0.001f * h);
    }
  }
  calib.stats.push_back(st);
  ReorderOptions opts;
  opts.n_head_groups = 2;
  opts.n_dim_groups = 2;
  auto plan = PlanMamba2Reorder(hp, calib, opts);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const LayerReorder& lr = (*plan)[0];
  EXPECT_EQ(lr.heads, (std::vector<int32_t>{0, 2, 3, 5, 7, 1, 4, 6}));
  EXPECT_EQ(lr.head_group_ends, (std::vector<int32_t>{5, 8}));
  // Channels ascending inside each head: old channels 3, 2, 1, 0 of the head.
  for (int k = 0; k < 8; ++k) {
    for (int p = 0; p < 4; ++p) EXPECT_EQ(lr.x_channels[k * 4 + p], lr.heads[k] * 4 + (3 - p));
  }
  // Loud profile (1, 2, 4, 8)/norm: the big jump is before the last position.
  EXPECT_EQ(lr.dim_group_ends[2], 3);
  EXPECT_EQ(lr.dim_group_ends[3], 4);
  EXPECT_EQ(lr.dim_group_ends[1], 4);
  hp.arch = Arch::kMamba1;
  EXPECT_EQ(PlanMamba2Reorder(hp, calib).status().code(), StatusCode::kUnsupported);
}

class ReorderFixture : public ::testing::TestWithParam<NormGrouping> {};

TEST_P(ReorderFixture, ReorderedMamba2KeepsLogits) {
  const Model original = Import("mamba2-tiny", GetParam());
  const HParams& hp = original.hp;
  const std::vector<int32_t> ids = RefIds("mamba2-tiny");
  const std::vector<float> ref = Logits(original, ids);

  auto plan = PlanMamba2Reorder(hp, Calib());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  Model reordered = original;
  ASSERT_TRUE(ApplyMamba2Reorder(reordered, *plan).ok());
  const float diff = MaxAbsDiff(ref, Logits(reordered, ids));
  std::printf("[mamba2-tiny, norm group %lld] reorder: max|dlogit| %.3g\n",
              static_cast<long long>(hp.norm_group_size), diff);
  EXPECT_LE(diff, 1e-3f);

  const int64_t hpg = hp.n_heads / hp.n_groups;
  for (int l = 0; l < hp.n_layer; ++l) {
    const std::vector<int32_t> ch = ReadI32(reordered, LayerTensorName(l, "perm.x_channels"));
    const std::vector<int32_t> heads = ReadI32(reordered, LayerTensorName(l, "perm.heads"));
    const std::vector<int32_t> hg = ReadI32(reordered, LayerTensorName(l, "x_head_groups"));
    const std::vector<int32_t> dg = ReadI32(reordered, LayerTensorName(l, "x_dim_groups"));
    ASSERT_EQ(static_cast<int64_t>(ch.size()), hp.d_inner);
    ASSERT_EQ(static_cast<int64_t>(heads.size()), hp.n_heads);
    ASSERT_EQ(static_cast<int64_t>(hg.size()), hp.n_groups * 4);
    ASSERT_EQ(static_cast<int64_t>(dg.size()), hp.n_groups * 16);
    EXPECT_EQ(reordered.Find(LayerTensorName(l, "x_dim_groups"))->shape,
              (std::vector<int64_t>{hp.n_groups, 4, 4}));
    for (int64_t h = 0; h < hp.n_heads; ++h) EXPECT_EQ(h / hpg, heads[h] / hpg);  // inside SSD groups
    // Channels sorted ascending by the statistic inside each new head.
    const std::vector<float>& s = Calib().Find(ObsSite::kConvOutX, l)->channel_mean_abs;
    for (int64_t k = 0; k + 1 < hp.d_inner; ++k) {
      if ((k + 1) % hp.head_dim != 0) {
        EXPECT_LE(s[ch[k]], s[ch[k + 1]]);
      }
    }
    for (int64_t g = 0; g < hp.n_groups; ++g) {
      EXPECT_EQ(hg[g * 4 + 3], hpg);
      for (int i = 0; i < 3; ++i) EXPECT_LE(hg[g * 4 + i], hg[g * 4 + i + 1]);
      for (int j = 0; j < 4; ++j) {
        const int32_t* e = dg.data() + (g * 4 + j) * 4;
        EXPECT_EQ(e[3], hp.head_dim);
        for (int i = 0; i < 3; ++i) EXPECT_LE(e[i], e[i + 1]);
      }
    }
  }

  // The Quamba2 order: reorder, then both rotations (float-equivalent too).
  Model full = reordered;
  ASSERT_TRUE(RotateOutProjInput(full).ok());
  ASSERT_TRUE(RotateResidual(full).ok());
  const float full_diff = MaxAbsDiff(ref, Logits(full, ids));
  std::printf("[mamba2-tiny] reorder + rotations: max|dlogit| %.3g\n", full_diff);
  EXPECT_LE(full_diff, 1e-3f);
  // Reordering after the online rotation is refused.
  EXPECT_EQ(ApplyMamba2Reorder(full, *plan).code(), StatusCode::kInvalidArgument);
  // Reordering twice is refused.
  Model twice = reordered;
  EXPECT_EQ(ApplyMamba2Reorder(twice, *plan).code(), StatusCode::kInvalidArgument);

  // Undo recovers the float model's weights exactly (f32 copies of the bf16 values).
  Model undone = reordered;
  ASSERT_TRUE(UndoMamba2Reorder(undone).ok());
  EXPECT_EQ(undone.Find(LayerTensorName(0, "perm.x_channels")), nullptr);
  for (const char* suffix : {"ssm_in.weight", "ssm_conv1d.weight", "ssm_conv1d.bias", "ssm_a_log",
                             "ssm_d", "ssm_dt.bias", "ssm_norm.weight", "ssm_out.weight"}) {
    const std::string name = LayerTensorName(hp.n_layer - 1, suffix);
    EXPECT_EQ(*original.ReadAsF32(name), *undone.ReadAsF32(name)) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(NormGroupings, ReorderFixture,
                         ::testing::Values(NormGrouping::kFull, NormGrouping::kGrouped));

TEST(Reorder, PermutationTensorsSurviveSaveLoad) {
  Model m = Import("mamba2-tiny");
  ASSERT_TRUE(ReorderMamba2(m, Calib()).ok());
  const std::string path = testing::MakeTempDir("reorder") + "/reordered.ssmq";
  ASSERT_TRUE(SaveModel(m, path).ok());
  auto loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(ReadI32(*loaded, "blk.2.perm.x_channels"), ReadI32(m, "blk.2.perm.x_channels"));
  EXPECT_EQ(ReadI32(*loaded, "blk.2.x_dim_groups"), ReadI32(m, "blk.2.x_dim_groups"));
  const std::vector<int32_t> ids = RefIds("mamba2-tiny");
  EXPECT_LE(MaxAbsDiff(Logits(m, ids), Logits(*loaded, ids)), 1e-6f);
  // A Mamba1 model is refused.
  Model m1 = Import("mamba1-tiny");
  EXPECT_EQ(ReorderMamba2(m1, Calib()).code(), StatusCode::kUnsupported);
}

}  // namespace
}  // namespace ssmq
