// Hugging Face import of the two fixture checkpoints: hyper-parameters equal
// the configs, tensor bytes equal the safetensors bytes, and broken or
// unsupported checkpoints (edited copies of the fixtures) get clear errors.
#include "convert/hf_import.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "convert/safetensors.h"
#include "model/arch.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ssmq::testing::FixtureModelDir;
using ssmq::testing::MakeTempDir;
using ssmq::testing::ReadFileText;

// ---- helpers ----

std::string CopyFixture(const std::string& name) {
  const std::string dir = MakeTempDir(name);
  fs::copy(FixtureModelDir(name), dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  return dir;
}

json ReadJson(const std::string& path) { return json::parse(ReadFileText(path)); }
void WriteJson(const std::string& path, const json& j) { std::ofstream(path) << j.dump(2); }

struct OwnedTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<OwnedTensor> ReadAll(const std::string& path) {
  auto f = SafetensorsFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  std::vector<OwnedTensor> out;
  for (const auto& t : (*f)->tensors())
    out.push_back({t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data.begin(), t.data.end())});
  return out;
}

void WriteAll(const std::string& path, const std::vector<OwnedTensor>& ts) {
  std::vector<SafetensorsWriteTensor> w;
  for (const auto& t : ts) w.push_back({t.name, t.dtype, t.shape, t.bytes});
  ASSERT_TRUE(WriteSafetensors(path, w, {{"format", "pt"}}).ok());
}

std::vector<uint8_t> BytesOf(const ModelTensor& t) { return {t.data.begin(), t.data.end()}; }

void ExpectSameHParams(const HParams& a, const HParams& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.d_model, b.d_model);
  EXPECT_EQ(a.n_layer, b.n_layer);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.d_inner, b.d_inner);
  EXPECT_EQ(a.d_state, b.d_state);
  EXPECT_EQ(a.d_conv, b.d_conv);
  EXPECT_EQ(a.dt_rank, b.dt_rank);
  EXPECT_EQ(a.n_groups, b.n_groups);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.chunk_size, b.chunk_size);
  EXPECT_EQ(a.norm_group_size, b.norm_group_size);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.dt_limit_min, b.dt_limit_min);
  EXPECT_EQ(a.dt_limit_max, b.dt_limit_max);
  EXPECT_EQ(a.residual_in_fp32, b.residual_in_fp32);
  EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
  EXPECT_EQ(a.conv_bias, b.conv_bias);
  EXPECT_EQ(a.proj_bias, b.proj_bias);
}

float F32At(const ModelTensor& t, size_t i) {
  float f;
  std::memcpy(&f, t.data.data() + 4 * i, 4);
  return f;
}
uint16_t U16At(const ModelTensor& t, size_t i) {
  uint16_t h;
  std::memcpy(&h, t.data.data() + 2 * i, 2);
  return h;
}

// ---- the fixtures ----

TEST(HfImport, Mamba1Fixture) {
  auto r = ImportHfDirectory(FixtureModelDir("mamba1-tiny"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Model& m = *r;
  EXPECT_EQ(m.hp.arch, Arch::kMamba1);
  EXPECT_EQ(m.hp.d_model, 384);
  EXPECT_EQ(m.hp.n_layer, 6);
  EXPECT_EQ(m.hp.vocab_size, 2048);
  EXPECT_EQ(m.hp.d_inner, 768);
  EXPECT_EQ(m.hp.d_state, 16);
  EXPECT_EQ(m.hp.dt_rank, 24);
  EXPECT_EQ(m.hp.d_conv, 4);
  EXPECT_DOUBLE_EQ(m.hp.norm_eps, 1e-5);
  EXPECT_TRUE(m.hp.tied_embeddings);
  EXPECT_TRUE(m.hp.conv_bias);
  EXPECT_FALSE(m.hp.proj_bias);
  EXPECT_TRUE(m.hp.residual_in_fp32);
  EXPECT_TRUE(m.Validate().ok());

  // 62 checkpoint tensors, no lm_head; ours in ExpectedTensors order.
  const auto specs = ExpectedTensors(m.hp);
  ASSERT_EQ(m.tensors().size(), 62u);
  ASSERT_EQ(specs.size(), 62u);
  for (size_t i = 0; i < specs.size(); ++i) EXPECT_EQ(m.tensors()[i].name, specs[i].name);
  EXPECT_EQ(m.Find("output.weight"), nullptr);

  const ModelTensor* emb = m.Find("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, TensorType::kF32);
  EXPECT_TRUE(emb->keepalive);  // views the mapping
  EXPECT_FLOAT_EQ(F32At(*emb, 0), -0.10320107638835907f);
  EXPECT_FLOAT_EQ(F32At(*emb, 2), -0.25207197666168213f);

  const ModelTensor* conv = m.Find("blk.0.ssm_conv1d.weight");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->shape, (std::vector<int64_t>{768, 4}));  // squeezed from [768, 1, 4]
  EXPECT_FLOAT_EQ(F32At(*conv, 0), 0.11433524638414383f);
  EXPECT_FLOAT_EQ(F32At(*conv, 1), -0.4975796937942505f);

  const ModelTensor* a_log = m.Find("blk.0.ssm_a_log");
  ASSERT_NE(a_log, nullptr);
  EXPECT_EQ(a_log->shape, (std::vector<int64_t>{768, 16}));
  EXPECT_FLOAT_EQ(F32At(*a_log, 1), 0.6945037841796875f);

  // From the third shard.
  const ModelTensor* out5 = m.Find("blk.5.ssm_out.weight");
  ASSERT_NE(out5, nullptr);
  EXPECT_EQ(out5->shape, (std::vector<int64_t>{384, 768}));
  EXPECT_FLOAT_EQ(F32At(*out5, 0), -0.01741607114672661f);
  EXPECT_FLOAT_EQ(F32At(*out5, 1), 0.036633674055337906f);

  EXPECT_EQ(m.tokenizer_json, ReadFileText(FixtureModelDir("mamba1-tiny") + "/tokenizer.json"));
  EXPECT_EQ(*m.extra.GetInt(keys::kBosId), 0);
  EXPECT_EQ(*m.extra.GetInt(keys::kEosId), 0);
  EXPECT_EQ(*m.extra.GetInt(keys::kPadId), 0);
  EXPECT_EQ(*m.extra.GetString(keys::kName), "mamba1-tiny");
}

TEST(HfImport, Mamba2Fixture) {
  auto r = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Model& m = *r;
  EXPECT_EQ(m.hp.arch, Arch::kMamba2);
  EXPECT_EQ(m.hp.d_model, 256);
  EXPECT_EQ(m.hp.n_layer, 6);
  EXPECT_EQ(m.hp.vocab_size, 2048);
  EXPECT_EQ(m.hp.d_inner, 512);
  EXPECT_EQ(m.hp.d_state, 64);
  EXPECT_EQ(m.hp.n_heads, 16);
  EXPECT_EQ(m.hp.head_dim, 32);
  EXPECT_EQ(m.hp.n_groups, 2);
  EXPECT_EQ(m.hp.chunk_size, 64);
  EXPECT_EQ(m.hp.d_conv, 4);
  EXPECT_EQ(m.hp.norm_group_size, 512);  // transformers normalizes over all of d_inner
  EXPECT_EQ(m.hp.dt_limit_min, 0.0);
  EXPECT_TRUE(std::isinf(m.hp.dt_limit_max) && m.hp.dt_limit_max > 0);
  EXPECT_FALSE(m.hp.tied_embeddings);
  EXPECT_TRUE(m.hp.conv_bias);
  EXPECT_EQ(m.hp.in_proj_dim(), 1296);
  EXPECT_EQ(m.hp.conv_dim(), 768);
  EXPECT_EQ(m.tensors().size(), ExpectedTensors(m.hp).size());

  const ModelTensor* a_log = m.Find("blk.0.ssm_a_log");
  ASSERT_NE(a_log, nullptr);
  EXPECT_EQ(a_log->type, TensorType::kBF16);
  EXPECT_EQ(a_log->shape, std::vector<int64_t>{16});
  EXPECT_EQ(U16At(*a_log, 0), 0x3db2);
  EXPECT_EQ(U16At(*a_log, 2), 0x3f8b);
  auto a_f32 = m.ReadAsF32("blk.0.ssm_a_log");
  ASSERT_TRUE(a_f32.ok());
  EXPECT_EQ((*a_f32)[0], 0.0869140625f);
  EXPECT_EQ((*a_f32)[1], 0.8125f);
  EXPECT_EQ((*a_f32)[2], 1.0859375f);

  const ModelTensor* out = m.Find("output.weight");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->shape, (std::vector<int64_t>{2048, 256}));
  EXPECT_EQ(U16At(*out, 0), 0xbddf);
  const ModelTensor* conv3 = m.Find("blk.3.ssm_conv1d.weight");
  ASSERT_NE(conv3, nullptr);
  EXPECT_EQ(conv3->shape, (std::vector<int64_t>{768, 4}));
  EXPECT_EQ(U16At(*conv3, 1), 0x3e92);
  EXPECT_EQ(m.Find("blk.0.ssm_in.weight")->shape, (std::vector<int64_t>{1296, 256}));
  EXPECT_EQ(m.Find("blk.0.ssm_d")->shape, std::vector<int64_t>{16});
  EXPECT_EQ(m.Find("blk.0.ssm_dt.bias")->shape, std::vector<int64_t>{16});
  EXPECT_EQ(m.Find("blk.0.ssm_norm.weight")->shape, std::vector<int64_t>{512});
  EXPECT_EQ(*m.extra.GetInt(keys::kEosId), 0);
}

TEST(HfImport, Mamba2GroupedNormOption) {
  HfImportOptions opts;
  opts.mamba2_norm = NormGrouping::kGrouped;
  uint64_t last_done = 0, last_total = 0;
  opts.progress = [&](uint64_t done, uint64_t total) {
    last_done = done;
    last_total = total;
  };
  auto r = ImportHfDirectory(FixtureModelDir("mamba2-tiny"), opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->hp.norm_group_size, 256);
  EXPECT_EQ(last_done, r->tensors().size());
  EXPECT_EQ(last_total, r->tensors().size());
}

TEST(HfImport, TensorsOutliveTheImporter) {
  Model copy;
  {
    auto r = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
    ASSERT_TRUE(r.ok());
    copy = *r;  // a copy shares the mappings through keepalive
  }
  EXPECT_EQ(U16At(*copy.Find("output.weight"), 0), 0xbddf);
}

// ---- broken checkpoints ----

TEST(HfImport, MissingShardNamesShardAndTensor) {
  const std::string dir = CopyFixture("mamba1-tiny");
  fs::remove(dir + "/model-00002-of-00003.safetensors");
  auto r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("model-00002-of-00003.safetensors"), std::string::npos);
  // Names a tensor that the index places in that shard.
  const json wm = ReadJson(dir + "/model.safetensors.index.json")["weight_map"];
  bool names_one = false;
  for (auto it = wm.begin(); it != wm.end(); ++it)
    if (it.value() == "model-00002-of-00003.safetensors" &&
        r.status().message().find("'" + it.key() + "'") != std::string::npos)
      names_one = true;
  EXPECT_TRUE(names_one) << r.status().message();
}

TEST(HfImport, TensorListedButAbsentFromShard) {
  const std::string dir = CopyFixture("mamba1-tiny");
  json index = ReadJson(dir + "/model.safetensors.index.json");
  index["weight_map"]["backbone.layers.0.mixer.in_proj.bias"] = "model-00001-of-00003.safetensors";
  WriteJson(dir + "/model.safetensors.index.json", index);
  auto r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("backbone.layers.0.mixer.in_proj.bias"), std::string::npos);
}

// Rewrites the header of a shard in place: `edit` changes the JSON, the data stays.
void EditShardHeader(const std::string& path, const std::function<void(json&)>& edit) {
  std::vector<uint8_t> bytes = ssmq::testing::ReadFileBytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  json header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  edit(header);
  const std::string text = header.dump();
  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + bytes.size() - 8 - n);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(text.size() >> (8 * i)));
  for (char c : text) out.push_back(static_cast<uint8_t>(c));
  out.insert(out.end(), bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n), bytes.end());
  ssmq::testing::WriteFileBytes(path, out);
}

TEST(HfImport, ShardHeaderLyingAboutOffsets) {
  const std::string dir = CopyFixture("mamba2-tiny");
  EditShardHeader(dir + "/model.safetensors", [](json& h) {
    auto& off = h["backbone.layers.0.mixer.D"]["data_offsets"];
    off[1] = off[1].get<uint64_t>() + 2;  // claims one more element: overlaps the next tensor
    h["backbone.layers.0.mixer.D"]["shape"] = {17};
  });
  auto r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOverlap) << r.status().ToString();
  EXPECT_NE(r.status().message().find("model.safetensors"), std::string::npos);
}

TEST(HfImport, DtypeWeDoNotRead) {
  const std::string dir = CopyFixture("mamba2-tiny");
  EditShardHeader(dir + "/model.safetensors", [](json& h) {
    h["backbone.layers.0.mixer.D"]["dtype"] = "I64";  // 32 bytes = 4 x I64
    h["backbone.layers.0.mixer.D"]["shape"] = {4};
  });
  auto r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("backbone.layers.0.mixer.D"), std::string::npos);
  EXPECT_NE(r.status().message().find("I64"), std::string::npos);
}

TEST(HfImport, UnknownArchitecture) {
  const std::string dir = CopyFixture("mamba2-tiny");
  json config = ReadJson(dir + "/config.json");
  config["architectures"] = {"FalconMambaForCausalLM"};
  WriteJson(dir + "/config.json", config);
  auto r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("FalconMambaForCausalLM"), std::string::npos);

  config.erase("architectures");
  config["model_type"] = "jamba";
  WriteJson(dir + "/config.json", config);
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("jamba"), std::string::npos);
}

TEST(HfImport, ConfigContradictingTensors) {
  const std::string dir = CopyFixture("mamba1-tiny");
  const json original = ReadJson(dir + "/config.json");
  json config = original;
  config["hidden_size"] = 320;
  WriteJson(dir + "/config.json", config);
  auto r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadConfig);
  EXPECT_NE(r.status().message().find("token_embd.weight"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("[2048, 384]"), std::string::npos);  // actual
  EXPECT_NE(r.status().message().find("[2048, 320]"), std::string::npos);  // expected

  config = original;
  config["state_size"] = 8;
  WriteJson(dir + "/config.json", config);
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadConfig);
  EXPECT_NE(r.status().message().find("blk.0.ssm_x.weight"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("[56, 768]"), std::string::npos);
  EXPECT_NE(r.status().message().find("[40, 768]"), std::string::npos);

  config = original;
  config["num_hidden_layers"] = 5;  // layer 5 tensors left over
  WriteJson(dir + "/config.json", config);
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadConfig);

  config = original;
  config["use_conv_bias"] = false;  // the checkpoint has conv biases
  WriteJson(dir + "/config.json", config);
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadConfig);
  EXPECT_NE(r.status().message().find("conv1d.bias"), std::string::npos);
}

TEST(HfImport, Mamba2UnsupportedFeatures) {
  const std::string dir = CopyFixture("mamba2-tiny");
  const json original = ReadJson(dir + "/config.json");
  json config = original;
  config["rms_norm"] = false;
  WriteJson(dir + "/config.json", config);
  auto r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  WriteJson(dir + "/config.json", original);

  // in_proj with 2 * d_mlp extra rows (mamba_ssm's gated MLP inside the mixer).
  std::vector<OwnedTensor> ts = ReadAll(dir + "/model.safetensors");
  for (auto& t : ts)
    if (t.name == "backbone.layers.0.mixer.in_proj.weight") {
      t.shape[0] += 2 * 64;
      t.bytes.resize(t.bytes.size() + 2 * 64 * 256 * 2, 0);
    }
  WriteAll(dir + "/model.safetensors", ts);
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("d_mlp = 64"), std::string::npos) << r.status().message();

  // A tensor the architecture does not have (an MLP) is not silently dropped.
  ts = ReadAll(FixtureModelDir("mamba2-tiny") + "/model.safetensors");
  ts.push_back({"backbone.layers.0.mlp.fc1.weight", "BF16", {2}, {0, 0, 0, 0}});
  WriteAll(dir + "/model.safetensors", ts);
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("backbone.layers.0.mlp.fc1.weight"), std::string::npos);
}

TEST(HfImport, MissingConfigOrWeights) {
  const std::string empty = MakeTempDir("empty");
  auto r = ImportHfDirectory(empty);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);

  const std::string dir = MakeTempDir("config_only");
  fs::copy(FixtureModelDir("mamba2-tiny") + "/config.json", dir + "/config.json");
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);

  std::ofstream(dir + "/config.json") << "{ not json";
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kParseError);
}

// ---- original state-spaces naming ----

TEST(HfImport, StateSpacesMamba2ImportsToTheSameModel) {
  auto hf = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(hf.ok());

  const std::string dir = MakeTempDir("ss2");
  std::vector<OwnedTensor> ts = ReadAll(FixtureModelDir("mamba2-tiny") + "/model.safetensors");
  for (auto& t : ts)
    if (t.name == "backbone.embeddings.weight") t.name = "backbone.embedding.weight";
  WriteAll(dir + "/model.safetensors", ts);
  const json config = {
      {"d_model", 256},
      {"d_intermediate", 0},
      {"n_layer", 6},
      {"vocab_size", 2048},
      {"ssm_cfg",
       {{"layer", "Mamba2"}, {"d_state", 64}, {"d_conv", 4}, {"expand", 2}, {"headdim", 32},
        {"ngroups", 2}, {"chunk_size", 64}}},
      {"attn_layer_idx", json::array()},
      {"attn_cfg", json::object()},
      {"rms_norm", true},
      {"residual_in_fp32", true},
      {"fused_add_norm", true},
      {"pad_vocab_size_multiple", 8},
      {"tie_embeddings", false},
  };
  WriteJson(dir + "/config.json", config);
  fs::copy(FixtureModelDir("mamba2-tiny") + "/tokenizer.json", dir + "/tokenizer.json");

  // mamba_ssm normalizes per group by default.
  auto ss = ImportHfDirectory(dir);
  ASSERT_TRUE(ss.ok()) << ss.status().ToString();
  EXPECT_EQ(ss->hp.norm_group_size, 256);

  HfImportOptions full;
  full.mamba2_norm = NormGrouping::kFull;
  ss = ImportHfDirectory(dir, full);
  ASSERT_TRUE(ss.ok()) << ss.status().ToString();
  ExpectSameHParams(ss->hp, hf->hp);
  ASSERT_EQ(ss->tensors().size(), hf->tensors().size());
  for (size_t i = 0; i < hf->tensors().size(); ++i) {
    const ModelTensor& a = hf->tensors()[i];
    const ModelTensor& b = ss->tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type);
    EXPECT_EQ(a.shape, b.shape);
    EXPECT_EQ(BytesOf(a), BytesOf(b)) << a.name;
  }
  EXPECT_EQ(ss->tokenizer_json, hf->tokenizer_json);

  // A padded vocabulary is the embedding's row count; D per channel is refused.
  json bad = config;
  bad["ssm_cfg"]["D_has_hdim"] = true;
  WriteJson(dir + "/config.json", bad);
  auto r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  bad = config;
  bad["d_intermediate"] = 512;
  WriteJson(dir + "/config.json", bad);
  r = ImportHfDirectory(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  bad = config;
  bad["vocab_size"] = 2000;  // padded to 2048 rows by pad_vocab_size_multiple
  WriteJson(dir + "/config.json", bad);
  r = ImportHfDirectory(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->hp.vocab_size, 2048);
}

TEST(HfImport, StateSpacesMamba1WithModelPrefix) {
  auto hf = ImportHfDirectory(FixtureModelDir("mamba1-tiny"));
  ASSERT_TRUE(hf.ok());
  const std::string dir = MakeTempDir("ss1");
  std::vector<OwnedTensor> all;
  for (int shard = 1; shard <= 3; ++shard) {
    auto ts = ReadAll(FixtureModelDir("mamba1-tiny") + "/model-0000" + std::to_string(shard) +
                      "-of-00003.safetensors");
    for (auto& t : ts) {
      if (t.name == "backbone.embeddings.weight") t.name = "backbone.embedding.weight";
      t.name = "model." + t.name;  // some exports carry a "model." prefix
      all.push_back(std::move(t));
    }
  }
  WriteAll(dir + "/model.safetensors", all);
  WriteJson(dir + "/config.json", {{"d_model", 384},
                                   {"n_layer", 6},
                                   {"vocab_size", 2048},
                                   {"ssm_cfg", json::object()},
                                   {"rms_norm", true},
                                   {"residual_in_fp32", true},
                                   {"tie_embeddings", true}});
  auto ss = ImportHfDirectory(dir);
  ASSERT_TRUE(ss.ok()) << ss.status().ToString();
  ExpectSameHParams(ss->hp, hf->hp);  // dt_rank "auto" = ceil(384 / 16) = 24
  ASSERT_EQ(ss->tensors().size(), hf->tensors().size());
  for (size_t i = 0; i < hf->tensors().size(); ++i) {
    EXPECT_EQ(ss->tensors()[i].name, hf->tensors()[i].name);
    EXPECT_EQ(BytesOf(ss->tensors()[i]), BytesOf(hf->tensors()[i])) << hf->tensors()[i].name;
  }
  EXPECT_EQ(ss->tokenizer_json, "");
}

// ---- the tables ----

TEST(Arch, MapHfTensorName) {
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.layers.3.mixer.in_proj.weight"), "blk.3.ssm_in.weight");
  EXPECT_EQ(MapHfTensorName(Arch::kMamba2, "model.backbone.layers.12.mixer.dt_bias"), "blk.12.ssm_dt.bias");
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.layers.0.mixer.dt_proj.bias"), "blk.0.ssm_dt.bias");
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.embedding.weight"), "token_embd.weight");
  EXPECT_EQ(MapHfTensorName(Arch::kMamba2, "backbone.embeddings.weight"), "token_embd.weight");
  EXPECT_EQ(MapHfTensorName(Arch::kMamba2, "backbone.norm_f.weight"), "output_norm.weight");
  EXPECT_EQ(MapHfTensorName(Arch::kMamba2, "lm_head.weight"), "output.weight");
  EXPECT_EQ(MapHfTensorName(Arch::kMamba2, "backbone.layers.1.mixer.norm.weight"), "blk.1.ssm_norm.weight");
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.layers.1.mixer.norm.weight"), std::nullopt);
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.layers.0.mixer.dt_bias"), std::nullopt);
  EXPECT_EQ(MapHfTensorName(Arch::kMamba2, "backbone.layers.0.mixer.x_proj.weight"), std::nullopt);
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.layers.x.norm.weight"), std::nullopt);
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.layers.01.norm.weight"), std::nullopt);
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.layers.-1.norm.weight"), std::nullopt);
  EXPECT_EQ(MapHfTensorName(Arch::kMamba1, "backbone.layers.0.mlp.fc1.weight"), std::nullopt);
}

TEST(Arch, ExpectedTensorsFollowHParams) {
  HParams hp;
  hp.arch = Arch::kMamba2;
  hp.d_model = 8;
  hp.n_layer = 2;
  hp.vocab_size = 10;
  hp.d_inner = 16;
  hp.d_state = 4;
  hp.d_conv = 4;
  hp.n_groups = 2;
  hp.head_dim = 4;
  hp.n_heads = 4;
  hp.norm_group_size = 16;
  hp.tied_embeddings = true;
  hp.proj_bias = true;
  hp.conv_bias = false;
  ASSERT_TRUE(hp.Validate().ok());
  const auto specs = ExpectedTensors(hp);
  // 1 + 2 * (norm, in w, in b, conv w, dt bias, a_log, d, ssm_norm, out w, out b) + output_norm.
  ASSERT_EQ(specs.size(), 1u + 2u * 10u + 1u);
  EXPECT_EQ(specs[0].name, "token_embd.weight");
  EXPECT_EQ(specs.back().name, "output_norm.weight");
  EXPECT_EQ(specs[2].name, "blk.0.ssm_in.weight");
  EXPECT_EQ(specs[2].shape, (std::vector<int64_t>{2 * 16 + 2 * 2 * 4 + 4, 8}));
  EXPECT_TRUE(specs[2].is_matmul_weight);
  EXPECT_EQ(specs[2].layer, 0);
  EXPECT_EQ(specs[4].name, "blk.0.ssm_conv1d.weight");
  EXPECT_EQ(specs[4].shape, (std::vector<int64_t>{16 + 2 * 2 * 4, 4}));
  EXPECT_EQ(specs[5].role, TensorRole::kDtProjB);
  EXPECT_EQ(specs[5].shape, std::vector<int64_t>{4});
  hp.n_heads = 3;
  EXPECT_EQ(hp.Validate().code(), StatusCode::kBadConfig);
}

}  // namespace
}  // namespace ssmq
