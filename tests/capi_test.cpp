// The C API (include/ssmq.h) against the C++ libraries: open (path and
// memory), metadata, tensors (raw bytes and f32), tokenizer, context feed /
// logits / greedy, state save/restore/reset, and typed errors.
// It links the shared library libssmq (tests/CMakeLists.txt), so it sees
// exactly the exported C symbols another runtime sees.
#include "include/ssmq.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <span>

#include "convert/hf_import.h"
#include "convert/recipe.h"
#include "runtime_cpu/runtime.h"
#include "model/model_io.h"
#include "tests/test_util.h"

namespace {

using ssmq::testing::FixtureModelDir;
using ssmq::testing::FixtureReferenceDir;

// mamba1-tiny as an f32 .ssmq file (made once per test run).
const std::string& Mamba1File() {
  static const std::string path = [] {
    const std::string dir = ssmq::testing::MakeTempDir("capi");
    auto m = ssmq::ImportHfDirectory(FixtureModelDir("mamba1-tiny"));
    EXPECT_TRUE(m.ok());
    EXPECT_TRUE(ssmq::SaveModel(*m, dir + "/m1.ssmq").ok());
    return dir + "/m1.ssmq";
  }();
  return path;
}

struct ModelPtr {
  ssmq_model* m = nullptr;
  ~ModelPtr() { ssmq_model_free(m); }
};
struct CtxPtr {
  ssmq_context* c = nullptr;
  ~CtxPtr() { ssmq_context_free(c); }
};

TEST(CApi, MetadataTensorsAndTokenizer) {
  ModelPtr mp;
  ASSERT_EQ(ssmq_model_open(Mamba1File().c_str(), &mp.m), SSMQ_OK) << ssmq_last_error();
  ssmq_model_info info;
  ASSERT_EQ(ssmq_model_get_info(mp.m, &info), SSMQ_OK);
  EXPECT_STREQ(info.architecture, "mamba");
  EXPECT_EQ(info.d_model, 384);
  EXPECT_EQ(info.n_layer, 6);
  EXPECT_EQ(info.vocab_size, 2048);
  EXPECT_EQ(info.dt_rank, 24);
  EXPECT_EQ(info.tokenizer_vocab_size, 2048);

  int64_t d_model = 0;
  EXPECT_EQ(ssmq_model_metadata_int(mp.m, "mamba.d_model", &d_model), SSMQ_OK);
  EXPECT_EQ(d_model, 384);
  const char* arch = nullptr;
  EXPECT_EQ(ssmq_model_metadata_string(mp.m, "general.architecture", &arch), SSMQ_OK);
  EXPECT_STREQ(arch, "mamba");
  EXPECT_EQ(ssmq_model_metadata_int(mp.m, "general.architecture", &d_model), SSMQ_ERR_TYPE_MISMATCH);
  EXPECT_EQ(ssmq_model_metadata_int(mp.m, "no.such.key", &d_model), SSMQ_ERR_NOT_FOUND);
  EXPECT_NE(std::string(ssmq_last_error()).find("no.such.key"), std::string::npos);
  EXPECT_GT(ssmq_model_metadata_count(mp.m), 10u);
  EXPECT_NE(ssmq_model_metadata_key(mp.m, 0), nullptr);
  EXPECT_EQ(ssmq_model_metadata_key(mp.m, 100000), nullptr);

  size_t idx = 0;
  ASSERT_EQ(ssmq_model_find_tensor(mp.m, "blk.0.ssm_d", &idx), SSMQ_OK);
  ssmq_tensor_info ti;
  ASSERT_EQ(ssmq_model_tensor_info(mp.m, idx, &ti), SSMQ_OK);
  EXPECT_STREQ(ti.name, "blk.0.ssm_d");
  EXPECT_STREQ(ti.type_name, "f32");
  EXPECT_EQ(ti.rank, 1u);
  EXPECT_EQ(ti.shape[0], 768);
  const void* raw = nullptr;
  size_t n_bytes = 0;
  ASSERT_EQ(ssmq_model_tensor_data(mp.m, idx, &raw, &n_bytes), SSMQ_OK);
  EXPECT_EQ(n_bytes, 768u * 4);
  std::vector<float> f(768);
  size_t written = 0;
  ASSERT_EQ(ssmq_model_tensor_to_f32(mp.m, idx, f.data(), f.size(), &written), SSMQ_OK);
  EXPECT_EQ(written, 768u);
  EXPECT_EQ(std::memcmp(raw, f.data(), n_bytes), 0);
  auto hf = ssmq::ImportHfDirectory(FixtureModelDir("mamba1-tiny"));
  EXPECT_EQ(f, *hf->ReadAsF32("blk.0.ssm_d"));
  EXPECT_EQ(ssmq_model_tensor_to_f32(mp.m, idx, f.data(), 10, &written), SSMQ_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(ssmq_model_find_tensor(mp.m, "nope", &idx), SSMQ_ERR_NOT_FOUND);

  const auto ref = nlohmann::json::parse(ssmq::testing::ReadFileText(FixtureReferenceDir("mamba1-tiny") + "/ref.json"));
  for (const auto& v : ref["tokenizer_vectors"]) {
    const std::string text = v["text"];
    std::vector<int32_t> ids(512);
    size_t n = 0;
    ASSERT_EQ(ssmq_tokenize(mp.m, text.data(), text.size(), ids.data(), ids.size(), &n), SSMQ_OK);
    ids.resize(n);
    EXPECT_EQ(ids, v["ids"].get<std::vector<int32_t>>());
    std::vector<char> back(text.size() + 1);
    size_t len = 0;
    ASSERT_EQ(ssmq_detokenize(mp.m, ids.data(), ids.size(), back.data(), back.size(), &len), SSMQ_OK);
    EXPECT_EQ(std::string(back.data(), len), text);
  }
  size_t n = 0;
  EXPECT_EQ(ssmq_tokenize(mp.m, "hello world", 11, nullptr, 0, &n), SSMQ_ERR_BUFFER_TOO_SMALL);
  EXPECT_GT(n, 0u);
}

TEST(CApi, GreedyAndStateSaveRestoreMatchTheReference) {
  const auto ref = nlohmann::json::parse(ssmq::testing::ReadFileText(FixtureReferenceDir("mamba1-tiny") + "/ref.json"));
  const std::vector<uint8_t> bytes = ssmq::testing::ReadFileBytes(Mamba1File());
  ModelPtr mp;
  ASSERT_EQ(ssmq_model_open_memory(bytes.data(), bytes.size(), &mp.m), SSMQ_OK) << ssmq_last_error();
  CtxPtr cp;
  ASSERT_EQ(ssmq_context_create(mp.m, 0, &cp.c), SSMQ_OK) << ssmq_last_error();
  ssmq_model_free(mp.m);  // the context keeps what it needs alive
  mp.m = nullptr;

  std::vector<int32_t> ids = ref["greedy"]["prompt_ids"];
  const std::vector<int32_t> want = ref["greedy"]["ids"];
  int32_t tok = 0;
  EXPECT_EQ(ssmq_context_greedy_token(cp.c, &tok), SSMQ_ERR_INVALID_ARGUMENT);  // nothing fed yet
  ASSERT_EQ(ssmq_context_feed(cp.c, ids.data(), ids.size()), SSMQ_OK);
  std::vector<uint8_t> saved(ssmq_context_state_size(cp.c));
  while (ids.size() < want.size()) {
    ASSERT_EQ(ssmq_context_greedy_token(cp.c, &tok), SSMQ_OK);
    ids.push_back(tok);
    if (ids.size() == 10) {
      ASSERT_EQ(ssmq_context_state_save(cp.c, saved.data(), saved.size()), SSMQ_OK);
    }
    ASSERT_EQ(ssmq_context_feed(cp.c, &tok, 1), SSMQ_OK);
  }
  EXPECT_EQ(ids, want);
  size_t n_vocab = 0;
  EXPECT_NE(ssmq_context_logits(cp.c, &n_vocab), nullptr);
  EXPECT_EQ(n_vocab, 2048u);

  // Restore the state saved after 10 ids (before feeding the 10th) and continue.
  ASSERT_EQ(ssmq_context_state_restore(cp.c, saved.data(), saved.size()), SSMQ_OK);
  std::vector<int32_t> resumed(want.begin(), want.begin() + 10);
  tok = resumed.back();
  ASSERT_EQ(ssmq_context_feed(cp.c, &tok, 1), SSMQ_OK);
  while (resumed.size() < want.size()) {
    ASSERT_EQ(ssmq_context_greedy_token(cp.c, &tok), SSMQ_OK);
    resumed.push_back(tok);
    ASSERT_EQ(ssmq_context_feed(cp.c, &tok, 1), SSMQ_OK);
  }
  EXPECT_EQ(resumed, want);
  EXPECT_EQ(ssmq_context_state_restore(cp.c, saved.data(), saved.size() - 4), SSMQ_ERR_TRUNCATED);
  saved[0] ^= 0xFF;
  EXPECT_EQ(ssmq_context_state_restore(cp.c, saved.data(), saved.size()), SSMQ_ERR_BAD_MAGIC);

  // Reset: the same prompt gives the same first token.
  ASSERT_EQ(ssmq_context_reset(cp.c), SSMQ_OK);
  EXPECT_EQ(ssmq_context_logits(cp.c, nullptr), nullptr);
  std::vector<int32_t> prompt = ref["greedy"]["prompt_ids"];
  ASSERT_EQ(ssmq_context_feed(cp.c, prompt.data(), prompt.size()), SSMQ_OK);
  ASSERT_EQ(ssmq_context_greedy_token(cp.c, &tok), SSMQ_OK);
  EXPECT_EQ(tok, want[prompt.size()]);
  const int32_t bad = 5000;
  EXPECT_EQ(ssmq_context_feed(cp.c, &bad, 1), SSMQ_ERR_INVALID_ARGUMENT);
}

// A w8a8 file runs through the C API on the same integer path as the C++
// runtime (identical logits), and its int8 state survives save/restore.
TEST(CApi, W8A8ModelMatchesTheRuntimeAndSavesItsInt8State) {
  const std::string dir = ssmq::testing::MakeTempDir("capi_a8");
  ssmq::Model m = ssmq::testing::FixtureModel("mamba2-tiny");
  const std::string text =
      ssmq::testing::ReadFileText(ssmq::testing::FixturesDir() + "/data/tinyshakespeare.txt");
  ssmq::QuantRecipeOptions q;
  q.scheme = "w8a8";
  q.calib_text = text;
  q.calib.samples = 4;
  ASSERT_TRUE(ssmq::ApplyQuantRecipe(m, q).ok());
  ASSERT_TRUE(ssmq::SaveModel(m, dir + "/a8.ssmq").ok());
  auto loaded = ssmq::LoadModel(dir + "/a8.ssmq");
  ASSERT_TRUE(loaded.ok());
  auto rt = ssmq::Runtime::Create(*loaded, 1);
  ASSERT_TRUE(rt.ok());
  const std::vector<int32_t> ids = ssmq::testing::ReferenceInputIds("mamba2-tiny");
  const std::vector<int32_t> first(ids.begin(), ids.begin() + 32);
  ssmq::RecurrentState st = (*rt)->NewState(1);
  std::vector<float> want, after;
  ASSERT_TRUE((*rt)->Prefill(first, 1, 32, st, want).ok());
  ASSERT_TRUE((*rt)->Step(std::span(ids).subspan(32, 1), st, after).ok());

  ModelPtr mp;
  ASSERT_EQ(ssmq_model_open((dir + "/a8.ssmq").c_str(), &mp.m), SSMQ_OK) << ssmq_last_error();
  CtxPtr cp;
  ASSERT_EQ(ssmq_context_create(mp.m, 1, &cp.c), SSMQ_OK) << ssmq_last_error();
  ASSERT_EQ(ssmq_context_feed(cp.c, first.data(), first.size()), SSMQ_OK);
  size_t n_vocab = 0;
  const float* logits = ssmq_context_logits(cp.c, &n_vocab);
  ASSERT_NE(logits, nullptr);
  const int64_t V = loaded->hp.vocab_size;
  EXPECT_EQ(std::vector<float>(logits, logits + V), std::vector<float>(want.end() - V, want.end()));
  std::vector<uint8_t> saved(ssmq_context_state_size(cp.c));
  ASSERT_EQ(ssmq_context_state_save(cp.c, saved.data(), saved.size()), SSMQ_OK);
  ASSERT_EQ(ssmq_context_feed(cp.c, &ids[32], 1), SSMQ_OK);
  ASSERT_EQ(ssmq_context_reset(cp.c), SSMQ_OK);
  ASSERT_EQ(ssmq_context_state_restore(cp.c, saved.data(), saved.size()), SSMQ_OK);
  ASSERT_EQ(ssmq_context_feed(cp.c, &ids[32], 1), SSMQ_OK);
  logits = ssmq_context_logits(cp.c, &n_vocab);
  EXPECT_EQ(std::vector<float>(logits, logits + V), after);
}

TEST(CApi, ErrorsAreCodesWithMessages) {
  ssmq_model* m = nullptr;
  const ssmq_status missing = ssmq_model_open("/nonexistent/file.ssmq", &m);
  EXPECT_TRUE(missing == SSMQ_ERR_IO || missing == SSMQ_ERR_NOT_FOUND) << missing;
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(std::string(ssmq_last_error()), "");
  const char junk[] = "definitely not an ssmq file, just some bytes here........................................";
  const ssmq_status st = ssmq_model_open_memory(junk, sizeof junk, &m);
  EXPECT_NE(st, SSMQ_OK);
  EXPECT_EQ(m, nullptr);
  EXPECT_EQ(ssmq_model_open(nullptr, &m), SSMQ_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(ssmq_status_name(SSMQ_ERR_TRUNCATED), "truncated");
  EXPECT_STREQ(ssmq_status_name(SSMQ_ERR_BUFFER_TOO_SMALL), "buffer_too_small");
  EXPECT_STREQ(ssmq_version(), "0.1.0");
  ssmq_model_free(nullptr);
  ssmq_context_free(nullptr);
}

}  // namespace
