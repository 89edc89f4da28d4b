// End to end through the `ssmq` executable, as a user runs it: convert the
// fixture checkpoints, then run / eval / tokenize with --json, against the
// transformers references in tests/fixtures/reference/*/ref.json.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/test_util.h"

namespace ssmq {
namespace {

using ssmq::testing::FixtureModelDir;
using ssmq::testing::FixtureReferenceDir;
using ssmq::testing::FixturesDir;
using ssmq::testing::MakeTempDir;
using ssmq::testing::ReadFileText;
using ssmq::testing::RunCommand;
using ssmq::testing::SsmqBinary;

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

nlohmann::json Reference(const std::string& model) {
  return nlohmann::json::parse(ReadFileText(FixtureReferenceDir(model) + "/ref.json"));
}

// Runs `ssmq ARGS`, expects exit 0, returns stdout parsed as JSON.
nlohmann::json RunJson(const std::string& args) {
  std::string out;
  const int rc = RunCommand(Quote(SsmqBinary()) + " " + args, &out);
  EXPECT_EQ(rc, 0) << "ssmq " << args << "\n" << out;
  try {
    return nlohmann::json::parse(out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON from ssmq " << args << ": " << out;
    return {};
  }
}

// Converts a fixture once per (model, scheme) for the whole test program.
std::string Converted(const std::string& model, const std::string& scheme) {
  static std::string dir = MakeTempDir("cli");
  const std::string path = dir + "/" + model + "-" + scheme + ".ssmq";
  if (!std::filesystem::exists(path)) {
    RunJson("convert " + Quote(FixtureModelDir(model)) + " -o " + Quote(path) + " --scheme " +
            scheme + " --json");
  }
  return path;
}

class CliFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CliFixture, GreedyRunMatchesReference) {
  const auto ref = Reference(GetParam());
  const std::string prompt = ref["greedy"]["prompt"];
  const int n = ref["greedy"]["max_new_tokens"];
  const auto j = RunJson("run " + Quote(Converted(GetParam(), "f32")) + " -p " + Quote(prompt) +
                         " -n " + std::to_string(n) + " --greedy --json");
  EXPECT_EQ(j["ids"], ref["greedy"]["ids"]);
  EXPECT_EQ(j["text"], ref["greedy"]["text"]);
}

TEST_P(CliFixture, EvalRefWithinTolerance) {
  const auto j = RunJson("eval " + Quote(Converted(GetParam(), "f32")) + " --ref " +
                         Quote(FixtureReferenceDir(GetParam()) + "/ref.safetensors") + " --json");
  for (const char* mode : {"prefill", "step"}) {
    EXPECT_LE(j[mode]["max_abs_diff"].get<double>(), 1e-3) << mode;
    EXPECT_EQ(j[mode]["top1_agreement"].get<double>(), 1.0) << mode;
  }
}

TEST_P(CliFixture, TokenizeMatchesTokenizersVectors) {
  const auto ref = Reference(GetParam());
  const std::string file = Converted(GetParam(), "f32");
  for (const auto& v : ref["tokenizer_vectors"]) {
    const auto j = RunJson("tokenize " + Quote(file) + " --text " + Quote(v["text"]) + " --json");
    EXPECT_EQ(j["ids"], v["ids"]) << v["text"];
  }
}

// The f16 and bf16 files through `ssmq eval --max-windows`: perplexity on the
// first 24 val windows (6,120 of the split's 43,350 scored tokens) within 0.5%
// of the f32 file's on the same windows (the tolerance this test had against
// the reference value over the whole split; the whole-split f32 perplexity is
// pinned to the reference within 0.05% in runtime_test), and their logits
// against the transformers reference logits (`eval --ref`, prefill and step).
// 2 windows under the sanitizers.
TEST_P(CliFixture, PerplexityOfEveryFloatScheme) {
  const int windows = ssmq::testing::HeavyTestsEnabled() ? 24 : 2;
  const std::string args = " --text " + Quote(FixturesDir() + "/data/tinyshakespeare.txt") +
                           " --max-windows " + std::to_string(windows) + " --json";
  const auto f32 = RunJson("eval " + Quote(Converted(GetParam(), "f32")) + args);
  EXPECT_EQ(f32["tokens_scored"], windows * 255);
  EXPECT_EQ(f32["windows"], windows);
  const double want = f32["perplexity"];
  // The same prefix the in-process tests score: its f32 perplexity is pinned
  // there too (quant_weight_test, a8_model_test).
  if (windows == 24) {
    EXPECT_NEAR(want, GetParam() == "mamba1-tiny" ? 51.1571 : 52.6749, want * 1e-3);
  }
  for (const std::string scheme : {"f16", "bf16"}) {
    const auto j = RunJson("eval " + Quote(Converted(GetParam(), scheme)) + args);
    const double ppl = j["perplexity"];
    std::printf("[%s %s] perplexity %.4f (f32 %.4f, %+.3f%%) on the first %d val windows\n",
                GetParam().c_str(), scheme.c_str(), ppl, want, 100.0 * (ppl / want - 1.0), windows);
    EXPECT_EQ(j["tokens_scored"], windows * 255) << scheme;
    EXPECT_NEAR(ppl, want, want * 5e-3) << scheme;
    const auto r = RunJson("eval " + Quote(Converted(GetParam(), scheme)) + " --ref " +
                           Quote(FixtureReferenceDir(GetParam()) + "/ref.safetensors") + " --json");
    std::printf("[%s %s] vs reference logits: max_abs_diff %.3g, top1 %.4f\n", GetParam().c_str(),
                scheme.c_str(), r["max_abs_diff"].get<double>(), r["top1_agreement"].get<double>());
    // Weight rounding moves the logits: mamba1-tiny is an f32 checkpoint
    // (measured: f16 0.0121, bf16 0.0825; f32 1.8e-5), mamba2-tiny a bf16 one,
    // so both casts are exact there (measured 1.2e-5). Top-1 agreed on all
    // 128 positions in every case; the lossy casts may flip 2 near-ties.
    const bool lossy = GetParam() == "mamba1-tiny";
    const double tol = !lossy ? 1e-3 : scheme == "f16" ? 0.05 : 0.25;
    EXPECT_LE(r["max_abs_diff"].get<double>(), tol) << scheme;
    EXPECT_GE(r["top1_agreement"].get<double>(), lossy ? 126.0 / 128 : 1.0) << scheme;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CliFixture, ::testing::Values("mamba1-tiny", "mamba2-tiny"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

// A failed conversion reports the problem and leaves nothing under the
// target name (writes go to a temp file that is renamed at the end).
TEST(CliErrors, FailedConvertLeavesNoOutput) {
  const std::string dir = MakeTempDir("cli_err");
  const std::string out_path = dir + "/out.ssmq";
  std::string out;
  int rc = RunCommand(Quote(SsmqBinary()) + " convert " + Quote(dir + "/missing") + " -o " +
                          Quote(out_path) + " 2>&1",
                      &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("not found"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(out_path));

  // A checkpoint directory whose config names an architecture we do not run.
  const std::string bad = dir + "/bad_model";
  std::filesystem::create_directories(bad);
  for (const auto& e : std::filesystem::directory_iterator(FixtureModelDir("mamba2-tiny")))
    std::filesystem::copy(e.path(), bad / e.path().filename());
  std::string config = ReadFileText(bad + "/config.json");
  const std::string from = "Mamba2ForCausalLM";
  config.replace(config.find(from), from.size(), "LlamaForCausalLM");
  std::filesystem::remove(bad + "/config.json");
  ssmq::testing::WriteFileBytes(bad + "/config.json",
                                std::vector<uint8_t>(config.begin(), config.end()));
  rc = RunCommand(Quote(SsmqBinary()) + " convert " + Quote(bad) + " -o " + Quote(out_path) +
                      " 2>&1",
                  &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("LlamaForCausalLM"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(out_path));
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(CliErrors, BadUsageIsExitCodeTwoOrOne) {
  std::string out;
  EXPECT_NE(RunCommand(Quote(SsmqBinary()) + " run 2>&1", &out), 0);
  EXPECT_NE(RunCommand(Quote(SsmqBinary()) + " eval " + Quote(Converted("mamba2-tiny", "f32")) +
                           " 2>&1",
                       &out),
            0);
  EXPECT_NE(out.find("--text"), std::string::npos) << out;
  EXPECT_NE(RunCommand(Quote(SsmqBinary()) + " eval " + Quote(Converted("mamba2-tiny", "f32")) +
                           " --text " + Quote(FixturesDir() + "/data/tinyshakespeare.txt") +
                           " --max-windows -1 2>&1",
                       &out),
            0);
  EXPECT_NE(out.find("--max-windows"), std::string::npos) << out;
}

}  // namespace
}  // namespace ssmq
