// Offline Hadamard rotations are float-equivalent: the rotated fixture models
// give the logits of the originals (Prefill and Step), the online
// out_proj-input Hadamard descriptor survives save/load and the runtime applies it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "convert/hf_import.h"
#include "convert/rotate.h"
#include "convert/safetensors.h"
#include "model/arch.h"
#include "model/model_io.h"
#include "runtime_cpu/hadamard.h"
#include "runtime_cpu/runtime.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

using testing::FixtureModelDir;
using testing::FixtureReferenceDir;

const Model& Fixture(const std::string& name) { return testing::FixtureModel(name); }

std::vector<int32_t> RefIds(const std::string& name) { return testing::ReferenceInputIds(name); }

std::vector<float> PrefillLogits(const Model& m, const std::vector<int32_t>& ids, int64_t batch) {
  auto rt = Runtime::Create(m, 2);
  EXPECT_TRUE(rt.ok()) << rt.status().ToString();
  if (!rt.ok()) return {};
  RecurrentState s = (*rt)->NewState(batch);
  std::vector<float> logits;
  const Status st = (*rt)->Prefill(ids, batch, static_cast<int64_t>(ids.size()) / batch, s, logits);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return logits;
}

// Prefill of 8 tokens then 6 Steps (batch 2); the logits of every step, concatenated.
std::vector<float> StepLogits(const Model& m, const std::vector<int32_t>& ids) {
  auto rt = Runtime::Create(m, 2);
  EXPECT_TRUE(rt.ok());
  if (!rt.ok()) return {};
  RecurrentState s = (*rt)->NewState(2);
  std::vector<int32_t> prompt;
  for (int b = 0; b < 2; ++b) prompt.insert(prompt.end(), ids.begin() + b * 64, ids.begin() + b * 64 + 8);
  std::vector<float> logits, all;
  EXPECT_TRUE((*rt)->Prefill(prompt, 2, 8, s, logits).ok());
  for (int t = 8; t < 14; ++t) {
    const std::vector<int32_t> step = {ids[t], ids[64 + t]};
    EXPECT_TRUE((*rt)->Step(step, s, logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class RotateTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RotateTest, ResidualRotationKeepsLogits) {
  const Model& original = Fixture(GetParam());
  const std::vector<int32_t> ids = RefIds(GetParam());
  Model rotated = original;
  ASSERT_TRUE(RotateResidual(rotated).ok());
  EXPECT_FALSE(rotated.hp.tied_embeddings);
  ASSERT_NE(rotated.Find("output.weight"), nullptr);
  // Norm weights are folded away.
  auto norm = rotated.ReadAsF32(LayerTensorName(0, "norm.weight"));
  ASSERT_TRUE(norm.ok());
  for (float v : *norm) ASSERT_EQ(v, 1.0f);
  const float prefill = MaxAbsDiff(PrefillLogits(original, ids, 2), PrefillLogits(rotated, ids, 2));
  const float step = MaxAbsDiff(StepLogits(original, ids), StepLogits(rotated, ids));
  std::printf("[%s] residual rotation: prefill max|dlogit| %.3g, step %.3g\n", GetParam().c_str(),
              prefill, step);
  EXPECT_LE(prefill, 1e-3f);
  EXPECT_LE(step, 1e-3f);
  // The rotation really changed the weights (the embedding is no longer the original).
  EXPECT_GT(MaxAbsDiff(*original.ReadAsF32("token_embd.weight"), *rotated.ReadAsF32("token_embd.weight")), 1e-3f);
}

TEST_P(RotateTest, OnlineOutProjHadamardKeepsLogitsAndSurvivesSaveLoad) {
  const Model& original = Fixture(GetParam());
  const std::vector<int32_t> ids = RefIds(GetParam());
  Model rotated = original;
  ASSERT_TRUE(RotateOutProjInput(rotated).ok());
  auto desc = ReadHadamardDescriptor(rotated.extra, 0, "ssm_out");
  ASSERT_TRUE(desc.ok() && desc->has_value());
  EXPECT_EQ((*desc)->size(), original.hp.d_inner);
  const std::vector<float> ref = PrefillLogits(original, ids, 2);
  const float prefill = MaxAbsDiff(ref, PrefillLogits(rotated, ids, 2));
  const float step = MaxAbsDiff(StepLogits(original, ids), StepLogits(rotated, ids));
  std::printf("[%s] out_proj-input Hadamard (base %lld): prefill %.3g, step %.3g\n",
              GetParam().c_str(), static_cast<long long>((*desc)->base), prefill, step);
  EXPECT_LE(prefill, 1e-3f);
  EXPECT_LE(step, 1e-3f);

  // Without the descriptor the runtime would feed the unrotated y: logits differ.
  Model stripped = rotated;
  for (int l = 0; l < stripped.hp.n_layer; ++l) {
    for (const char* f : {"size", "base", "kind"}) {
      stripped.extra.Erase("blk." + std::to_string(l) + ".hadamard.ssm_out." + f);
    }
  }
  EXPECT_GT(MaxAbsDiff(ref, PrefillLogits(stripped, ids, 2)), 1e-2f);

  // Both rotations together, through a saved and reloaded file.
  ASSERT_TRUE(RotateResidual(rotated).ok());
  const std::string path = testing::MakeTempDir("rotate") + "/rotated.ssmq";
  ASSERT_TRUE(SaveModel(rotated, path).ok());
  auto loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_FALSE(loaded->hp.tied_embeddings);
  auto loaded_desc = ReadHadamardDescriptor(loaded->extra, loaded->hp.n_layer - 1, "ssm_out");
  ASSERT_TRUE(loaded_desc.ok() && loaded_desc->has_value());
  const float both = MaxAbsDiff(ref, PrefillLogits(*loaded, ids, 2));
  std::printf("[%s] both rotations, saved + loaded: prefill %.3g\n", GetParam().c_str(), both);
  EXPECT_LE(both, 1e-3f);

  // A second online rotation is refused.
  EXPECT_EQ(RotateOutProjInput(rotated).code(), StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RotateTest, ::testing::Values("mamba1-tiny", "mamba2-tiny"));

TEST(Rotate, FixtureSizesUseTheExpectedKinds) {
  EXPECT_EQ(ChooseHadamard(Fixture("mamba1-tiny").hp.d_model)->base, 12);  // 384 = 12·32
  EXPECT_EQ(ChooseHadamard(Fixture("mamba1-tiny").hp.d_inner)->base, 12);  // 768 = 12·64
  EXPECT_EQ(ChooseHadamard(Fixture("mamba2-tiny").hp.d_model)->base, 1);   // 256 = 2^8
  EXPECT_EQ(ChooseHadamard(Fixture("mamba2-tiny").hp.d_inner)->base, 1);   // 512 = 2^9
}

TEST(Rotate, UnsupportedSizeAndBadDescriptor) {
  Model m = Fixture("mamba1-tiny");
  m.hp.d_model = 100;  // not m·2^k
  EXPECT_EQ(RotateResidual(m).code(), StatusCode::kUnsupported);
  Metadata md;
  md.Set("blk.0.hadamard.ssm_out.size", MetaValue::U32(768));
  EXPECT_EQ(ReadHadamardDescriptor(md, 0, "ssm_out").status().code(), StatusCode::kBadMetadata);
  md.Set("blk.0.hadamard.ssm_out.base", MetaValue::U32(20));
  md.Set("blk.0.hadamard.ssm_out.kind", MetaValue::String("orthonormal"));
  EXPECT_EQ(ReadHadamardDescriptor(md, 0, "ssm_out").status().code(), StatusCode::kBadMetadata);
  md.Set("blk.0.hadamard.ssm_out.base", MetaValue::U32(12));
  auto ok = ReadHadamardDescriptor(md, 0, "ssm_out");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(**ok, (HadamardKind{12, 6}));
  EXPECT_FALSE(ReadHadamardDescriptor(md, 1, "ssm_out")->has_value());
}

}  // namespace
}  // namespace ssmq
