// ssmq synth: the preset table against the published shapes, the written
// checkpoint through our importer (shapes, scales, tokenizer), determinism
// for a seed, atomic replacement and typed errors. The release build writes
// the real 130m presets (all 24 layers); sanitizer builds write 2 layers of
// them (same tensor shapes per layer) to stay cheap.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "convert/gguf_export.h"
#include "convert/gguf_file.h"
#include "convert/hf_import.h"
#include "convert/synth.h"
#include "model/arch.h"
#include "model/model_io.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace ssmq {
namespace {

namespace fs = std::filesystem;
using testing::HeavyTestsEnabled;
using testing::MakeTempDir;

// The published shapes, written out independently of the preset table.
struct Published {
  const char* name;
  int64_t d_model, n_layer, vocab, d_inner, d_state, dt_rank, n_heads, in_proj_rows, conv_dim;
};
constexpr Published kPublished[] = {
    {"mamba-130m", 768, 24, 50280, 1536, 16, 48, 0, 3072, 1536},
    {"mamba-370m", 1024, 48, 50280, 2048, 16, 64, 0, 4096, 2048},
    {"mamba-790m", 1536, 48, 50280, 3072, 16, 96, 0, 6144, 3072},
    {"mamba-1.4b", 2048, 48, 50280, 4096, 16, 128, 0, 8192, 4096},
    // mamba2 in_proj rows: z + xBC + dt = 2*d_inner + 2*d_state + n_heads (n_groups 1)
    {"mamba2-130m", 768, 24, 50288, 1536, 128, 0, 24, 3352, 1792},
    {"mamba2-370m", 1024, 48, 50288, 2048, 128, 0, 32, 4384, 2304},
    {"mamba2-780m", 1536, 48, 50288, 3072, 128, 0, 48, 6448, 3328},
    {"mamba2-1.3b", 2048, 48, 50288, 4096, 128, 0, 64, 8512, 4352},
};

uint64_t ParamCount(const HParams& hp) {
  uint64_t n = 0;
  for (const TensorSpec& s : ExpectedTensors(hp)) {
    uint64_t m = 1;
    for (int64_t d : s.shape) m *= static_cast<uint64_t>(d);
    n += m;
  }
  return n;
}

TEST(SynthPresets, MatchPublishedShapes) {
  ASSERT_EQ(SynthPresets().size(), std::size(kPublished));
  for (const Published& want : kPublished) {
    SCOPED_TRACE(want.name);
    Result<SynthPreset> p = FindSynthPreset(want.name);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    const HParams hp = SynthHParams(*p);
    ASSERT_TRUE(hp.Validate().ok()) << hp.Validate().ToString();
    EXPECT_EQ(hp.d_model, want.d_model);
    EXPECT_EQ(hp.n_layer, want.n_layer);
    EXPECT_EQ(hp.vocab_size, want.vocab);
    EXPECT_EQ(hp.d_inner, want.d_inner);
    EXPECT_EQ(hp.d_state, want.d_state);
    EXPECT_EQ(hp.d_conv, 4);
    EXPECT_EQ(hp.in_proj_dim(), want.in_proj_rows);
    EXPECT_EQ(hp.conv_dim(), want.conv_dim);
    EXPECT_TRUE(hp.tied_embeddings);
    EXPECT_TRUE(hp.conv_bias);
    EXPECT_FALSE(hp.proj_bias);
    if (hp.arch == Arch::kMamba1) {
      EXPECT_EQ(hp.dt_rank, want.dt_rank);
    } else {
      EXPECT_EQ(hp.n_heads, want.n_heads);
      EXPECT_EQ(hp.head_dim, 64);
      EXPECT_EQ(hp.n_groups, 1);
      EXPECT_EQ(hp.chunk_size, 256);
    }
    // The plan has every tensor the architecture needs, under names our importer maps back.
    const std::vector<TensorSpec> specs = ExpectedTensors(hp);
    const std::vector<SynthTensor> plan = SynthTensorPlan(hp);
    ASSERT_EQ(plan.size(), specs.size());
    for (size_t i = 0; i < plan.size(); ++i) {
      EXPECT_EQ(MapHfTensorName(hp.arch, plan[i].hf_name), specs[i].name) << plan[i].hf_name;
      std::vector<int64_t> shape = plan[i].shape;
      if (specs[i].role == TensorRole::kConvW) {
        ASSERT_EQ(shape.size(), 3u);
        EXPECT_EQ(shape[1], 1);
        shape.erase(shape.begin() + 1);
      }
      EXPECT_EQ(shape, specs[i].shape) << plan[i].hf_name;
    }
  }
  // Parameter counts of the 370m shapes, as measured independently on the
  // llama.cpp side (shared/research/llamacpp-realshape.md, vocab 50288 there):
  // mamba1 371,524,608 - 8 * 1024 rows; mamba2 419,841,536 minus its untied output.
  EXPECT_EQ(ParamCount(SynthHParams(*FindSynthPreset("mamba-370m"))), 371524608u - 8u * 1024u);
  EXPECT_EQ(ParamCount(SynthHParams(*FindSynthPreset("mamba2-370m"))), 419841536u - 50288u * 1024u);
}

TEST(SynthPresets, LookupAndTypedErrors) {
  EXPECT_EQ(std::string(FindSynthPreset("370m", Arch::kMamba2)->name), "mamba2-370m");
  EXPECT_EQ(std::string(FindSynthPreset("370m", Arch::kMamba1)->name), "mamba-370m");
  EXPECT_EQ(std::string(FindSynthPreset("mamba-1.4b", Arch::kMamba1)->name), "mamba-1.4b");
  EXPECT_EQ(FindSynthPreset("mamba-999m").status().code(), StatusCode::kNotFound);
  EXPECT_NE(FindSynthPreset("mamba-999m").status().message().find("mamba2-1.3b"), std::string::npos)
      << "the error lists the presets";
  EXPECT_EQ(FindSynthPreset("370m").status().code(), StatusCode::kNotFound);  // size alone needs --arch
  EXPECT_EQ(FindSynthPreset("mamba2-130m", Arch::kMamba1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSynthArch("rwkv").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseSynthArch("mamba2"), Arch::kMamba2);
  SynthOptions bad;
  bad.dtype = TensorType::kQ8;
  EXPECT_EQ(WriteSynthCheckpoint(*FindSynthPreset("mamba-130m"), MakeTempDir("synth_bad") + "/x", bad)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST(SynthTokenizer, ExactVocabularyAndRoundTrip) {
  for (int64_t vocab : {int64_t{50280}, int64_t{50288}}) {
    Result<std::string> json = SynthTokenizerJson(vocab);
    ASSERT_TRUE(json.ok()) << json.status().ToString();
    const nlohmann::json parsed = nlohmann::json::parse(*json);
    EXPECT_EQ(parsed["model"]["vocab"].size(), static_cast<size_t>(vocab));
    EXPECT_EQ(parsed["model"]["merges"].size(), static_cast<size_t>(vocab - 257));
    EXPECT_EQ(parsed["model"]["vocab"]["<|endoftext|>"], 0);
    EXPECT_EQ(parsed["model"]["vocab"]["\xc4\xa0\xc4\xa0"], 257);  // "ĠĠ" ("Ġ" is the space): the first merge
    EXPECT_EQ(parsed["model"]["vocab"]["\xc4\xa0" "e"], 258);        // "Ġe"
    Result<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromJson(*json);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    EXPECT_EQ((*tok)->vocab_size(), vocab);
    const std::string text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\xc3\xa9\xe2\x82\xac";
    const std::vector<int32_t> ids = (*tok)->Encode(text);
    EXPECT_EQ((*tok)->Decode(ids), text);
    EXPECT_LT(ids.size(), text.size());  // two-byte merges apply
    for (int32_t id : ids) EXPECT_LT(id, vocab);
    EXPECT_EQ((*tok)->Encode("<|endoftext|>"), std::vector<int32_t>{0});
  }
  EXPECT_EQ(SynthTokenizerJson(100).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*SynthTokenizerJson(50280), *SynthTokenizerJson(50280));
}

struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
};
Stats StatsOf(const std::vector<float>& v) {
  Stats s;
  double sum = 0, sq = 0;
  s.min = s.max = v[0];
  for (float x : v) {
    sum += x;
    sq += static_cast<double>(x) * x;
    s.min = std::min<double>(s.min, x);
    s.max = std::max<double>(s.max, x);
  }
  s.mean = sum / static_cast<double>(v.size());
  s.std = std::sqrt(sq / static_cast<double>(v.size()) - s.mean * s.mean);
  return s;
}

// Writes `preset` (n_layer layers, or the preset's when 0) and checks it
// through the importer: hyper-parameters, shapes, value ranges, tokenizer.
void CheckWrittenCheckpoint(const char* preset_name, int64_t n_layer, bool round_trip) {
  SCOPED_TRACE(preset_name);
  const SynthPreset preset = *FindSynthPreset(preset_name);
  const std::string dir = MakeTempDir("synth") + "/" + preset_name;
  SynthOptions opts;
  opts.seed = 7;
  if (n_layer > 0) opts.n_layer = n_layer;
  uint64_t last_done = 0, last_total = 0;
  opts.progress = [&](uint64_t d, uint64_t t) { last_done = d, last_total = t; };
  Result<SynthSummary> summary = WriteSynthCheckpoint(preset, dir, opts);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(summary->weight_bytes, summary->n_params * 2);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(fs::path(dir) / f)) << f;
  for (const auto& e : fs::directory_iterator(fs::path(dir).parent_path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();

  Result<Model> imported = ImportHfDirectory(dir);
  ASSERT_TRUE(imported.ok()) << imported.status().ToString();
  const Model& m = *imported;
  HParams want = SynthHParams(preset);
  if (n_layer > 0) want.n_layer = n_layer;
  EXPECT_EQ(m.hp.arch, preset.arch);
  EXPECT_EQ(m.hp.d_model, want.d_model);
  EXPECT_EQ(m.hp.n_layer, want.n_layer);
  EXPECT_EQ(m.hp.vocab_size, preset.vocab_size);
  EXPECT_EQ(m.hp.d_inner, want.d_inner);
  EXPECT_EQ(m.hp.d_state, want.d_state);
  EXPECT_EQ(m.hp.dt_rank, want.dt_rank);
  EXPECT_EQ(m.hp.n_heads, want.n_heads);
  EXPECT_EQ(m.hp.n_groups, want.n_groups);
  EXPECT_EQ(m.hp.chunk_size, want.chunk_size);
  EXPECT_TRUE(m.hp.tied_embeddings);
  EXPECT_EQ(m.Find("output.weight"), nullptr);
  const std::vector<TensorSpec> specs = ExpectedTensors(want);
  ASSERT_EQ(m.tensors().size(), specs.size());
  for (const TensorSpec& s : specs) {
    const ModelTensor* t = m.Find(s.name);
    ASSERT_NE(t, nullptr) << s.name;
    EXPECT_EQ(t->shape, s.shape) << s.name;
    EXPECT_EQ(t->type, TensorType::kF16) << s.name;
  }

  // Scales (f16 rounding: relative 2^-11).
  const double tol = 1.0 + 1.0 / 1024;
  auto read = [&](const std::string& name) {
    Result<std::vector<float>> v = m.ReadAsF32(name);
    EXPECT_TRUE(v.ok()) << name;
    return v.ok() ? *v : std::vector<float>{0.0f};
  };
  const Stats embd = StatsOf(read("token_embd.weight"));
  EXPECT_NEAR(embd.std, 0.02, 0.0005);
  EXPECT_NEAR(embd.mean, 0.0, 1e-4);
  EXPECT_GT(embd.max, 4 * 0.02);  // a normal, not a uniform
  const int64_t last = want.n_layer - 1;
  auto check_uniform = [&](const std::string& name, double bound) {
    SCOPED_TRACE(name);
    const Stats s = StatsOf(read(name));
    EXPECT_LE(s.max, bound * tol);
    EXPECT_GE(s.min, -bound * tol);
    EXPECT_GT(s.max, 0.95 * bound);
    EXPECT_NEAR(s.std, bound / std::sqrt(3.0), 0.05 * bound);
  };
  for (int64_t layer : {int64_t{0}, last}) {
    const std::string b = "blk." + std::to_string(layer) + ".";
    check_uniform(b + "ssm_in.weight", 1.0 / std::sqrt(static_cast<double>(want.d_model)));
    check_uniform(b + "ssm_out.weight",
                  1.0 / std::sqrt(static_cast<double>(want.d_inner)) / std::sqrt(static_cast<double>(want.n_layer)));
    check_uniform(b + "ssm_conv1d.weight", 0.5);
    check_uniform(b + "ssm_conv1d.bias", 0.5);
    if (want.arch == Arch::kMamba1) {
      check_uniform(b + "ssm_x.weight", 1.0 / std::sqrt(static_cast<double>(want.d_inner)));
      check_uniform(b + "ssm_dt.weight", 1.0 / std::sqrt(static_cast<double>(want.dt_rank)));
    }
    // dt = softplus(bias) is log-uniform in [1e-3, 1e-1].
    std::vector<float> dt_bias = read(b + "ssm_dt.bias");
    double log_sum = 0;
    for (float x : dt_bias) {
      const double dt = std::log1p(std::exp(static_cast<double>(x)));
      EXPECT_GE(dt, 1e-3 / tol);
      EXPECT_LE(dt, 1e-1 * tol);
      log_sum += std::log(dt);
    }
    // mean of log(dt): log(1e-2) +- 4 standard errors (sd of U(log 1e-3, log 1e-1) is log(100)/sqrt(12))
    EXPECT_NEAR(log_sum / static_cast<double>(dt_bias.size()), std::log(1e-2),
                4.0 * std::log(100.0) / std::sqrt(12.0 * static_cast<double>(dt_bias.size())));
    const std::vector<float> a_log = read(b + "ssm_a_log");
    if (want.arch == Arch::kMamba1) {
      for (size_t i = 0; i < a_log.size(); ++i)
        EXPECT_NEAR(a_log[i], std::log(static_cast<double>(i % 16 + 1)), 2e-3) << i;
    } else {
      for (float x : a_log) {
        EXPECT_GE(std::exp(x), 1.0 / tol);
        EXPECT_LE(std::exp(x), 16.0 * tol);
      }
      const Stats s = StatsOf(a_log);
      EXPECT_GT(s.max - s.min, 0.5);  // drawn, not constant
    }
    for (const char* ones : {"ssm_d", "norm.weight", "ssm_norm.weight"}) {
      if (!m.Find(b + ones)) continue;
      for (float x : read(b + ones)) ASSERT_EQ(x, 1.0f) << ones;
    }
  }
  for (float x : read("output_norm.weight")) ASSERT_EQ(x, 1.0f);

  // The tokenizer has exactly vocab_size entries and round-trips text.
  Result<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromJson(m.tokenizer_json);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->vocab_size(), preset.vocab_size);
  Result<int64_t> eos = m.extra.GetInt(keys::kEosId);
  ASSERT_TRUE(eos.ok());
  EXPECT_EQ(*eos, 0);

  // .ssmq round trip and GGUF export (llama.cpp needs the whole vocabulary).
  if (round_trip) {
    const std::string ssmq_path = dir + ".ssmq";
    ASSERT_TRUE(SaveModel(m, ssmq_path).ok());
    Result<Model> loaded = LoadModel(ssmq_path);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_EQ(loaded->hp.vocab_size, preset.vocab_size);
    const std::string gguf_path = dir + ".gguf";
    Status st = ExportGgufFile(*loaded, gguf_path, {GgufExportType::kQ8_0});
    ASSERT_TRUE(st.ok()) << st.ToString();
    Result<std::unique_ptr<gguf::GgufFile>> g = gguf::GgufFile::Open(gguf_path);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    const MetaValue* tokens = (*g)->metadata().Find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr);
    EXPECT_EQ(std::get<std::vector<std::string>>(tokens->v).size(), static_cast<size_t>(preset.vocab_size));
    const MetaValue* merges = (*g)->metadata().Find("tokenizer.ggml.merges");
    ASSERT_NE(merges, nullptr);
    EXPECT_EQ(std::get<std::vector<std::string>>(merges->v).size(), static_cast<size_t>(preset.vocab_size - 257));
  }
}

TEST(SynthCheckpoint, Mamba1_130m) { CheckWrittenCheckpoint("mamba-130m", HeavyTestsEnabled() ? 0 : 2, false); }
TEST(SynthCheckpoint, Mamba2_130m) { CheckWrittenCheckpoint("mamba2-130m", HeavyTestsEnabled() ? 0 : 2, false); }
// Two layers through .ssmq and GGUF (the CLI test converts a Mamba2 one with the binary).
TEST(SynthCheckpoint, Mamba1_130m_TwoLayersToSsmqAndGguf) { CheckWrittenCheckpoint("mamba-130m", 2, true); }

TEST(SynthCheckpoint, DeterministicForASeed) {
  const SynthPreset preset = *FindSynthPreset("mamba2-130m");
  const std::string root = MakeTempDir("synth_seed");
  auto write = [&](const std::string& name, uint64_t seed, TensorType type) {
    SynthOptions opts;
    opts.seed = seed;
    opts.n_layer = 1;
    opts.dtype = type;
    Result<SynthSummary> s = WriteSynthCheckpoint(preset, root + "/" + name, opts);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return testing::ReadFileBytes(root + "/" + name + "/model.safetensors");
  };
  const std::vector<uint8_t> a = write("a", 1, TensorType::kF16);
  const std::vector<uint8_t> b = write("b", 1, TensorType::kF16);
  const std::vector<uint8_t> c = write("c", 2, TensorType::kF16);
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == c);
  EXPECT_EQ(a.size(), c.size());
  EXPECT_EQ(testing::ReadFileText(root + "/a/tokenizer.json"), testing::ReadFileText(root + "/c/tokenizer.json"));
  // bf16 holds the same draws as f16 (both are roundings of the same f32 values).
  write("bf16", 1, TensorType::kBF16);
  Result<Model> f16 = ImportHfDirectory(root + "/a");
  Result<Model> bf16 = ImportHfDirectory(root + "/bf16");
  ASSERT_TRUE(f16.ok() && bf16.ok());
  EXPECT_EQ(bf16->Find("blk.0.ssm_in.weight")->type, TensorType::kBF16);
  for (const char* name : {"blk.0.ssm_in.weight", "token_embd.weight"}) {
    const std::vector<float> h = *f16->ReadAsF32(name);
    const std::vector<float> g = *bf16->ReadAsF32(name);
    ASSERT_EQ(h.size(), g.size());
    for (size_t i = 0; i < h.size(); i += 997) EXPECT_NEAR(g[i], h[i], std::fabs(h[i]) / 128 + 1e-7) << name;
  }
}

TEST(SynthCheckpoint, ExistingOutputNeedsForce) {
  const SynthPreset preset = *FindSynthPreset("mamba-130m");
  const std::string dir = MakeTempDir("synth_force") + "/out";
  fs::create_directories(dir);
  testing::WriteFileBytes(dir + "/keep.txt", {'x'});
  SynthOptions opts;
  opts.n_layer = 1;
  Result<SynthSummary> s = WriteSynthCheckpoint(preset, dir, opts);
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(fs::exists(dir + "/keep.txt"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  opts.force = true;
  s = WriteSynthCheckpoint(preset, dir + "/", opts);  // trailing slash
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_FALSE(fs::exists(dir + "/keep.txt"));
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(fs::path(dir).parent_path())) ++entries, (void)e;
  EXPECT_EQ(entries, 1u) << "no temporary or old directories left behind";
}

TEST(SynthCli, SynthThenConvert) {
  const std::string root = MakeTempDir("synth_cli");
  const std::string bin = testing::SsmqBinary();
  std::string out;
  ASSERT_EQ(testing::RunCommand(bin + " synth --arch mamba2 --preset 130m --layers 2 --seed 3 --json -o " + root +
                                    "/m2 2>&1",
                                &out),
            0)
      << out;
  EXPECT_NE(out.find("\"preset\":\"mamba2-130m\""), std::string::npos) << out;
  ASSERT_EQ(testing::RunCommand(bin + " convert " + root + "/m2 -o " + root + "/m2.ssmq 2>&1", &out), 0) << out;
  Result<Model> m = LoadModel(root + "/m2.ssmq");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->hp.n_layer, 2);
  EXPECT_EQ(m->hp.vocab_size, 50288);

  EXPECT_NE(testing::RunCommand(bin + " synth --arch mamba --preset mamba-999m -o " + root + "/x 2>&1", &out), 0);
  EXPECT_NE(out.find("unknown preset 'mamba-999m'"), std::string::npos) << out;
  EXPECT_NE(testing::RunCommand(bin + " synth --arch rwkv --preset 130m -o " + root + "/x 2>&1", &out), 0);
  EXPECT_NE(out.find("unknown architecture 'rwkv'"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(root + "/x"));
}

}  // namespace
}  // namespace ssmq
