// Model <-> .ssmq: import -> save -> load keeps hparams, tokenizer, extra
// metadata and every tensor byte; saving is deterministic; the loader
// rejects files whose tensors do not fit the architecture; casts and
// dequantization match format/quant.h exactly.
#include "model/model_io.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "convert/hf_import.h"
#include "model/arch.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

using ssmq::testing::FixtureModelDir;
using ssmq::testing::MakeTempDir;
using ssmq::testing::ReadFileBytes;

std::vector<uint8_t> BytesOf(const ModelTensor& t) { return {t.data.begin(), t.data.end()}; }

void ExpectSameHParams(const HParams& a, const HParams& b) {
  Metadata ma, mb;
  HParamsToMetadata(a, ma);
  HParamsToMetadata(b, mb);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_EQ(ma.entries()[i].key, mb.entries()[i].key);
    EXPECT_EQ(ma.entries()[i].value.ToDisplayString(), mb.entries()[i].value.ToDisplayString())
        << ma.entries()[i].key;
  }
  EXPECT_EQ(a.norm_group_size, b.norm_group_size);
  EXPECT_EQ(a.dt_limit_max, b.dt_limit_max);
  EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
}

void ExpectSameModel(const Model& a, const Model& b) {
  ExpectSameHParams(a.hp, b.hp);
  EXPECT_EQ(a.tokenizer_json, b.tokenizer_json);
  ASSERT_EQ(a.extra.size(), b.extra.size());
  for (size_t i = 0; i < a.extra.size(); ++i) {
    EXPECT_EQ(a.extra.entries()[i].key, b.extra.entries()[i].key);
    EXPECT_EQ(a.extra.entries()[i].value.ToDisplayString(1000), b.extra.entries()[i].value.ToDisplayString(1000));
  }
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    const ModelTensor& x = a.tensors()[i];
    const ModelTensor& y = b.tensors()[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.type, y.type) << x.name;
    EXPECT_EQ(x.shape, y.shape) << x.name;
    EXPECT_EQ(BytesOf(x), BytesOf(y)) << x.name;
  }
}

class RoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(RoundTrip, ImportSaveLoad) {
  auto imported = ImportHfDirectory(FixtureModelDir(GetParam()));
  ASSERT_TRUE(imported.ok()) << imported.status().ToString();
  const std::string dir = MakeTempDir("io");
  const std::string path = dir + "/model.ssmq";
  ASSERT_TRUE(SaveModel(*imported, path).ok());

  OpenOptions verify;
  verify.verify_tensor_checksums = true;
  auto loaded = LoadModel(path, verify);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectSameModel(*imported, *loaded);
  EXPECT_TRUE(loaded->Find("token_embd.weight")->keepalive);  // zero-copy view of the mapping
  EXPECT_EQ(*loaded->extra.GetInt(keys::kBosId), 0);
  EXPECT_EQ(*loaded->extra.GetString(keys::kName), GetParam());

  // Deterministic: saving again, saving the loaded model, and the in-memory writer give the same bytes.
  const std::vector<uint8_t> first = ReadFileBytes(path);
  ASSERT_TRUE(SaveModel(*imported, dir + "/again.ssmq").ok());
  EXPECT_EQ(first, ReadFileBytes(dir + "/again.ssmq"));
  ASSERT_TRUE(SaveModel(*loaded, dir + "/resaved.ssmq").ok());
  EXPECT_EQ(first, ReadFileBytes(dir + "/resaved.ssmq"));
  auto buffer = SaveModelToBuffer(*imported);
  ASSERT_TRUE(buffer.ok());
  EXPECT_EQ(first, *buffer);

  // The loaded model outlives everything else; the file stays mapped.
  Model kept = *loaded;
  loaded = Status(StatusCode::kCancelled, "dropped");
  EXPECT_TRUE(kept.Validate().ok());
  EXPECT_EQ(BytesOf(*kept.Find("blk.5.ssm_out.weight")), BytesOf(*imported->Find("blk.5.ssm_out.weight")));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RoundTrip, ::testing::Values("mamba1-tiny", "mamba2-tiny"),
                         [](const auto& info) { return info.param[5] == '1' ? std::string("mamba1") : std::string("mamba2"); });

TEST(ModelIo, ZstdRoundTrip) {
  auto imported = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(imported.ok());
  SaveOptions opts;
  opts.zstd = true;
  uint64_t progress_calls = 0;
  opts.progress = [&](uint64_t, uint64_t) { ++progress_calls; };
  const std::string path = MakeTempDir("zstd") + "/m.ssmq";
  ASSERT_TRUE(SaveModel(*imported, path, opts).ok());
  auto loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectSameModel(*imported, *loaded);
}

TEST(ModelIo, GroupedNormSurvivesSaveLoad) {
  HfImportOptions o;
  o.mamba2_norm = NormGrouping::kGrouped;
  auto imported = ImportHfDirectory(FixtureModelDir("mamba2-tiny"), o);
  ASSERT_TRUE(imported.ok());
  auto buffer = SaveModelToBuffer(*imported);
  ASSERT_TRUE(buffer.ok());
  auto file = SsmqFile::OpenBuffer(*buffer);
  ASSERT_TRUE(file.ok());
  auto loaded = LoadModelFromFile(std::shared_ptr<SsmqFile>(std::move(file).value()));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->hp.norm_group_size, 256);
}

// A file written around SaveModel's validation.
std::vector<uint8_t> WriteRaw(const Model& m, const std::string& skip, const std::string& reshape) {
  SsmqWriter w;
  HParamsToMetadata(m.hp, w.metadata());
  for (const ModelTensor& t : m.tensors()) {
    if (t.name == skip) continue;
    TensorInfo info;
    info.name = t.name;
    info.type = t.type;
    info.shape = t.shape;
    if (t.name == reshape) info.shape = {t.shape[1], t.shape[0]};
    EXPECT_TRUE(w.AddTensor(info, t.data).ok());
  }
  auto bytes = w.WriteBuffer();
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

TEST(ModelIo, LoaderRejectsMissingOrMisshapedTensors) {
  auto m = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(m.ok());
  const std::string dir = MakeTempDir("bad");

  ssmq::testing::WriteFileBytes(dir + "/missing.ssmq", WriteRaw(*m, "blk.2.ssm_d", ""));
  auto r = LoadModel(dir + "/missing.ssmq");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadShape);
  EXPECT_NE(r.status().message().find("blk.2.ssm_d"), std::string::npos);

  ssmq::testing::WriteFileBytes(dir + "/shape.ssmq", WriteRaw(*m, "", "blk.4.ssm_out.weight"));
  r = LoadModel(dir + "/shape.ssmq");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadShape);
  EXPECT_NE(r.status().message().find("blk.4.ssm_out.weight"), std::string::npos);
  EXPECT_NE(r.status().message().find("[512, 256]"), std::string::npos);

  // SaveModel refuses to write such a model in the first place.
  Model broken = *m;
  broken.Erase("blk.2.ssm_d");
  EXPECT_EQ(SaveModel(broken, dir + "/never.ssmq").code(), StatusCode::kBadShape);

  r = LoadModel(dir + "/does_not_exist.ssmq");
  EXPECT_FALSE(r.ok());
}

// A hostile n_layer (a valid file with only the count patched) is refused
// by name before anything is sized by it: at 2^20 blocks the loader once
// listed ~10 M expected tensor names (8 s, 1 GB) before finding blk.6 missing.
TEST(ModelIo, LoaderRefusesAnNLayerBeyondItsTensors) {
  auto m = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(m.ok());
  const std::string dir = MakeTempDir("nlayer");
  struct Case {
    int64_t n_layer;
    StatusCode code;
    const char* text;
  };
  for (const Case& c : {Case{int64_t{1} << 20, StatusCode::kBadMetadata, "at most 4096"},
                        Case{4096, StatusCode::kBadShape, "holds only"},
                        Case{7, StatusCode::kBadShape, "blk.6."}}) {
    SCOPED_TRACE(c.n_layer);
    Model patched = *m;
    patched.hp.n_layer = c.n_layer;
    ssmq::testing::WriteFileBytes(dir + "/n.ssmq", WriteRaw(patched, "", ""));
    auto r = LoadModel(dir + "/n.ssmq");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), c.code) << r.status().ToString();
    EXPECT_NE(r.status().ToString().find(c.text), std::string::npos) << r.status().ToString();
  }
}

// chunk_size sizes the prefill scan's scratch by its square and appears in
// no tensor shape: 2^28 once ended in std::bad_alloc at the first prompt.
TEST(ModelIo, LoaderRefusesAnOversizedChunk) {
  auto m = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(m.ok());
  const std::string dir = MakeTempDir("chunk");
  for (int64_t chunk : {int64_t{2049}, int64_t{1} << 28}) {
    Model patched = *m;
    patched.hp.chunk_size = chunk;
    ssmq::testing::WriteFileBytes(dir + "/c.ssmq", WriteRaw(patched, "", ""));
    auto r = LoadModel(dir + "/c.ssmq");
    ASSERT_FALSE(r.ok()) << chunk;
    EXPECT_EQ(r.status().code(), StatusCode::kBadMetadata) << r.status().ToString();
    EXPECT_NE(r.status().ToString().find("chunk_size = " + std::to_string(chunk)),
              std::string::npos)
        << r.status().ToString();
  }
  Model largest = *m;  // the bound itself loads
  largest.hp.chunk_size = kMaxChunkSize;
  ssmq::testing::WriteFileBytes(dir + "/c.ssmq", WriteRaw(largest, "", ""));
  EXPECT_TRUE(LoadModel(dir + "/c.ssmq").ok());
}

TEST(ModelIo, HParamsMetadataRoundTrip) {
  auto m = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(m.ok());
  Metadata md;
  HParamsToMetadata(m->hp, md);
  EXPECT_EQ(*md.GetString(keys::kArchitecture), "mamba2");
  EXPECT_EQ(*md.GetInt("mamba2.n_groups"), 2);
  EXPECT_EQ(md.Find("mamba2.dt_rank"), nullptr);  // mamba1 only
  const double inf = *md.GetDouble("mamba2.dt_limit_max");
  EXPECT_TRUE(std::isinf(inf) && inf > 0);
  auto hp = HParamsFromMetadata(md);
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  ExpectSameHParams(*hp, m->hp);

  Metadata missing = md;
  missing.Erase("mamba2.head_dim");
  auto r = HParamsFromMetadata(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("mamba2.head_dim"), std::string::npos);

  Metadata wrong_type = md;
  wrong_type.Set("mamba2.d_model", MetaValue::String("256"));
  EXPECT_FALSE(HParamsFromMetadata(wrong_type).ok());

  Metadata other = md;
  other.Set(keys::kArchitecture, MetaValue::String("llama"));
  r = HParamsFromMetadata(other);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
}

TEST(ModelIo, CastFloatTensorsMatchesQuantRounding) {
  auto m1 = ImportHfDirectory(FixtureModelDir("mamba1-tiny"));  // f32
  ASSERT_TRUE(m1.ok());
  Model f16 = *m1, bf16 = *m1;
  ASSERT_TRUE(CastFloatTensors(f16, TensorType::kF16).ok());
  ASSERT_TRUE(CastFloatTensors(bf16, TensorType::kBF16).ok());
  for (const ModelTensor& src : m1->tensors()) {
    const ModelTensor* h = f16.Find(src.name);
    const ModelTensor* b = bf16.Find(src.name);
    ASSERT_EQ(h->type, TensorType::kF16);
    ASSERT_EQ(b->type, TensorType::kBF16);
    ASSERT_EQ(h->shape, src.shape);
    const float* x = src.f32();
    for (uint64_t i = 0; i < src.numel(); ++i) {
      uint16_t hv, bv;
      std::memcpy(&hv, h->data.data() + 2 * i, 2);
      std::memcpy(&bv, b->data.data() + 2 * i, 2);
      ASSERT_EQ(hv, F32ToF16(x[i])) << src.name << "[" << i << "]";
      ASSERT_EQ(bv, F32ToBF16(x[i])) << src.name << "[" << i << "]";
    }
  }
  // The cast models are valid and save/load like any other.
  auto buffer = SaveModelToBuffer(f16);
  ASSERT_TRUE(buffer.ok()) << buffer.status().ToString();

  // bf16 -> f32 is exact; bf16 -> f16 rounds once from the exact value.
  auto m2 = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(m2.ok());
  Model to_f32 = *m2, to_f16 = *m2;
  ASSERT_TRUE(CastFloatTensors(to_f32, TensorType::kF32).ok());
  ASSERT_TRUE(CastFloatTensors(to_f16, TensorType::kF16).ok());
  const ModelTensor& src = *m2->Find("blk.0.ssm_in.weight");
  const float* f = to_f32.Find(src.name)->f32();
  ASSERT_NE(f, nullptr);
  for (uint64_t i = 0; i < src.numel(); ++i) {
    uint16_t bv, hv;
    std::memcpy(&bv, src.data.data() + 2 * i, 2);
    std::memcpy(&hv, to_f16.Find(src.name)->data.data() + 2 * i, 2);
    ASSERT_EQ(f[i], BF16ToF32(bv));
    ASSERT_EQ(hv, F32ToF16(BF16ToF32(bv)));
  }
  EXPECT_EQ(CastFloatTensors(to_f16, TensorType::kQ8).code(), StatusCode::kInvalidArgument);
}

TEST(ModelIo, ReadAsF32Dequantizes) {
  // 3 x 8 weights, Q8 per channel and Q4 per group of 4 with zero points.
  std::vector<float> w(24);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.7f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 5));
  Model m;
  QuantInfo q8;
  q8.granularity = ScaleGranularity::kPerChannel;
  auto qa = QuantizeQ8(w, 3, 8, q8);
  ASSERT_TRUE(qa.ok());
  ModelTensor a = ModelTensor::Owned("a", TensorType::kQ8, {3, 8}, qa->codes);
  a.quant = q8;
  m.SetTensor(std::move(a));
  m.SetTensor(ModelTensor::FromF32("a.scale", {3}, qa->scales));

  QuantInfo q4;
  q4.granularity = ScaleGranularity::kPerGroup;
  q4.group_size = 4;
  q4.has_zero_point = true;
  auto qb = QuantizeQ4(w, 3, 8, q4);
  ASSERT_TRUE(qb.ok());
  ModelTensor b = ModelTensor::Owned("b", TensorType::kQ4, {3, 8}, qb->codes);
  b.quant = q4;
  m.SetTensor(std::move(b));
  m.SetTensor(ModelTensor::FromF32("b.scale", {3, 2}, qb->scales));
  m.SetTensor(ModelTensor::Owned("b.zero", TensorType::kU8, {3, 2}, qb->zeros));

  std::vector<float> expect_a(24), expect_b(24);
  ASSERT_TRUE(DequantizeQ8(qa->codes, qa->scales, 3, 8, q8, expect_a).ok());
  ASSERT_TRUE(DequantizeQ4(qb->codes, qb->scales, qb->zeros, 3, 8, q4, expect_b).ok());
  auto got_a = m.ReadAsF32("a");
  auto got_b = m.ReadAsF32("b");
  ASSERT_TRUE(got_a.ok()) << got_a.status().ToString();
  ASSERT_TRUE(got_b.ok()) << got_b.status().ToString();
  EXPECT_EQ(*got_a, expect_a);
  EXPECT_EQ(*got_b, expect_b);
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR((*got_a)[i], w[i], qa->scales[i / 8] / 2 + 1e-6f);

  m.Erase("b.zero");
  EXPECT_EQ(m.ReadAsF32("b").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(m.ReadAsF32("nope").status().code(), StatusCode::kNotFound);
  m.SetTensor(ModelTensor::Owned("ids", TensorType::kI32, {2}, std::vector<uint8_t>(8)));
  EXPECT_EQ(m.ReadAsF32("ids").status().code(), StatusCode::kTypeMismatch);
}

TEST(ModelIo, CopiedModelOwnsItsBytes) {
  Model copy;
  {
    Model m;
    m.SetTensor(ModelTensor::FromF32("x", {3}, {1.0f, 2.0f, 3.0f}));
    copy = m;
    m.FindMutable("x")->owned.assign(12, 0xff);  // scribble over the original
  }
  const ModelTensor* x = copy.Find("x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->data.data(), x->owned.data());
  EXPECT_EQ(x->f32()[2], 3.0f);
  EXPECT_TRUE(copy.Erase("x"));
  EXPECT_EQ(copy.Find("x"), nullptr);
}

}  // namespace
}  // namespace ssmq
