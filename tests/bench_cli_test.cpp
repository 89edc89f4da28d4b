// `ssmq bench` through the executable on the converted fixtures (tiny
// lengths), the decode-traffic numbers against an independent count over the
// file's tensor directory, and the memory-bandwidth probe.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "format/ssmq_file.h"
#include "model/model_io.h"
#include "runtime_cpu/membw.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

using ssmq::testing::FixturesDir;
using ssmq::testing::FixtureModelDir;
using ssmq::testing::MakeTempDir;
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

nlohmann::json RunJson(const std::string& args) {
  std::string out;
  const int rc = RunCommand(Quote(SsmqBinary()) + " " + args, &out);
  EXPECT_EQ(rc, 0) << "ssmq " << args << "\n" << out;
  try {
    return nlohmann::json::parse(out);
  } catch (const std::exception&) {
    ADD_FAILURE() << "not JSON from ssmq " << args << ": " << out;
    return {};
  }
}

// The fixture converted once per (model, scheme); A8 schemes calibrate on 2
// short windows (scales only; the speed and the byte counts do not care).
std::string Converted(const std::string& model, const std::string& scheme) {
  static std::string dir = MakeTempDir("bench_cli");
  const std::string path = dir + "/" + model + "-" + scheme + ".ssmq";
  if (!std::filesystem::exists(path)) {
    std::string args = "convert " + Quote(FixtureModelDir(model)) + " -o " + Quote(path) +
                       " --scheme " + scheme + " --json";
    if (scheme == "w8a8" || scheme == "w4a8")
      args += " --calib " + Quote(FixturesDir() + "/data/tinyshakespeare.txt") +
              " --calib-samples 2 --calib-seqlen 32";
    RunJson(args);
  }
  return path;
}

// Independent count of the bytes one decode step reads, for files whose every
// tensor the step uses (no permutations or group tables): all tensors, minus
// the embedding table when untied (the lm head is output.weight), plus one
// embedding row per sequence. Tied: the table is the lm head, counted whole.
uint64_t ExpectedWeightBytes(const std::string& path, int64_t batch) {
  auto file = SsmqFile::OpenMmap(path);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  auto model = LoadModel(path);
  EXPECT_TRUE(model.ok());
  const int64_t vocab = model->hp.vocab_size;
  uint64_t total = 0;
  for (const TensorInfo& t : (*file)->tensors()) {
    total += t.size;
    if (t.name.starts_with("token_embd.weight")) {
      EXPECT_EQ(t.shape[0], vocab) << t.name;
      if (!model->hp.tied_embeddings) total -= t.size;
      total += static_cast<uint64_t>(batch) * (t.size / static_cast<uint64_t>(vocab));
    }
  }
  return total;
}

// Recurrent state read + written per step: ssm (f32, f16 or int8 cache) and conv (f32).
uint64_t ExpectedStateBytes(const std::string& path, int64_t batch, int ssm_elem_bytes) {
  auto model = LoadModel(path);
  EXPECT_TRUE(model.ok());
  const HParams& hp = model->hp;
  const uint64_t per_layer = static_cast<uint64_t>(hp.d_inner * hp.d_state * ssm_elem_bytes +
                                                   hp.conv_dim() * (hp.d_conv - 1) * 4);
  return 2 * static_cast<uint64_t>(batch * hp.n_layer) * per_layer;
}

void ExpectPositiveFinite(const nlohmann::json& j, const char* key) {
  ASSERT_TRUE(j.contains(key)) << key << " missing in " << j.dump();
  const double v = j[key].get<double>();
  EXPECT_TRUE(std::isfinite(v) && v > 0) << key << " = " << v;
}

void ExpectBenchFields(const nlohmann::json& j) {
  for (const char* k : {"load_ms", "prefill_tokens_per_s", "decode_tokens_per_s",
                        "peak_rss_bytes", "roofline_fraction", "weight_bytes_per_token",
                        "state_bytes_per_token", "bandwidth_bytes_per_s", "roofline_tokens_per_s"})
    ExpectPositiveFinite(j, k);
  for (const char* k :
       {"file", "scheme", "threads", "batch", "prompt_len", "gen_len", "anon_huge_page_bytes"})
    EXPECT_TRUE(j.contains(k)) << k;
  // tok/s = fraction x roofline, and the roofline = batch x bandwidth / bytes per step.
  const double bytes = j["weight_bytes_per_token"].get<double>() + j["state_bytes_per_token"].get<double>();
  EXPECT_NEAR(j["roofline_tokens_per_s"].get<double>(),
              j["batch"].get<double>() * j["bandwidth_bytes_per_s"].get<double>() / bytes,
              1e-6 * j["roofline_tokens_per_s"].get<double>());
  // Each repetition's decode against the bandwidth probed right after it; the
  // fraction is their median (with one repetition: decode tok/s / roofline).
  const auto per_rep = j["roofline_fraction_per_rep"].get<std::vector<double>>();
  ASSERT_EQ(per_rep.size(), j["reps"].get<size_t>());
  ASSERT_EQ(j["bandwidth_per_rep_bytes_per_s"].size(), per_rep.size());
  const auto decode_s = j["decode_seconds"].get<std::vector<double>>();
  const auto rep_bw = j["bandwidth_per_rep_bytes_per_s"].get<std::vector<double>>();
  for (size_t r = 0; r < per_rep.size(); ++r) {
    const double tps = j["batch"].get<double>() * j["gen_len"].get<double>() / decode_s[r];
    EXPECT_NEAR(per_rep[r], tps / (j["batch"].get<double>() * rep_bw[r] / bytes), 1e-9);
  }
  std::vector<double> sorted = per_rep;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  EXPECT_NEAR(j["roofline_fraction"].get<double>(),
              n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]), 1e-12);
  if (n == 1) {
    EXPECT_NEAR(j["roofline_fraction"].get<double>(),
                j["decode_tokens_per_s"].get<double>() / j["roofline_tokens_per_s"].get<double>(),
                1e-9);
  }
  EXPECT_GE(j["peak_rss_bytes"].get<double>(), 1 << 20);
  EXPECT_TRUE(j["fits_in_llc"].is_boolean());
  // One untimed warm-up prefill ran before the timed ones (as in llama-bench).
  ExpectPositiveFinite(j, "warmup_prefill_seconds");
}

// Untied mamba2-tiny in f32: measures the bandwidth itself (the only run that
// does, ~1 s), batch 2.
TEST(BenchCli, Mamba2F32JsonFieldsAndWeightBytes) {
  const std::string file = Converted("mamba2-tiny", "f32");
  const auto j = RunJson("bench " + Quote(file) +
                         " --prompt-len 16 --gen-len 4 --batch 2 --threads 1 --json");
  ExpectBenchFields(j);
  EXPECT_EQ(j["bandwidth_source"], "measured");
  EXPECT_EQ(j["scheme"], "f32");
  EXPECT_EQ(j["batch"], 2);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["weight_bytes_per_token"].get<uint64_t>(), ExpectedWeightBytes(file, 2));
  EXPECT_EQ(j["state_bytes_per_token"].get<uint64_t>(), ExpectedStateBytes(file, 2, 4));
  // Unread: the embedding table but the two rows looked up.
  auto f = SsmqFile::OpenMmap(file);
  ASSERT_TRUE(f.ok());
  const TensorInfo* embd = (*f)->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(j["unread_bytes"].get<uint64_t>(),
            embd->size - 2 * (embd->size / static_cast<uint64_t>(embd->shape[0])));
  std::printf("[mamba2-tiny f32, batch 2, 1 thread] prefill %.0f tok/s, decode %.0f tok/s, "
              "roofline %.0f tok/s (%.1f%%), bandwidth %.2f GB/s, peak RSS %.1f MiB\n",
              j["prefill_tokens_per_s"].get<double>(), j["decode_tokens_per_s"].get<double>(),
              j["roofline_tokens_per_s"].get<double>(), 100 * j["roofline_fraction"].get<double>(),
              j["bandwidth_bytes_per_s"].get<double>() / 1e9,
              j["peak_rss_bytes"].get<double>() / (1 << 20));
}

// Tied mamba1-tiny in f16: the embedding table is the lm head (counted
// whole) plus a row per sequence.
TEST(BenchCli, Mamba1F16TiedWeightBytes) {
  const std::string file = Converted("mamba1-tiny", "f16");
  const auto j = RunJson("bench " + Quote(file) +
                         " --prompt-len 8 --gen-len 3 --bandwidth 10 --reps 2 --json");
  ExpectBenchFields(j);
  EXPECT_EQ(j["bandwidth_source"], "given");
  EXPECT_DOUBLE_EQ(j["bandwidth_bytes_per_s"].get<double>(), 10e9);
  EXPECT_EQ(j["scheme"], "f16");
  EXPECT_EQ(j["prefill_seconds"].size(), 2u);
  EXPECT_EQ(j["weight_bytes_per_token"].get<uint64_t>(), ExpectedWeightBytes(file, 1));
  EXPECT_EQ(j["unread_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["state_bytes_per_token"].get<uint64_t>(), ExpectedStateBytes(file, 1, 4));
}

// An A8 file keeps an int8 SSM state cache: 1 byte per state element.
TEST(BenchCli, W8a8Int8State) {
  const std::string file = Converted("mamba1-tiny", "w8a8");
  const auto j = RunJson("bench " + Quote(file) +
                         " --prompt-len 8 --gen-len 3 --batch 3 --bandwidth 10 --json");
  ExpectBenchFields(j);
  EXPECT_EQ(j["scheme"], "w8a8");
  EXPECT_EQ(j["state_bytes_parts"]["int8_state_layers"], 6);
  EXPECT_EQ(j["state_bytes_per_token"].get<uint64_t>(), ExpectedStateBytes(file, 3, 1));
  EXPECT_EQ(j["weight_bytes_per_token"].get<uint64_t>(), ExpectedWeightBytes(file, 3));
}

// --f16-state: the runtime keeps the float state in half (2 bytes per state
// element, read and written); the file and its weights are unchanged.
TEST(BenchCli, F16StateHalvesStateBytes) {
  const std::string file = Converted("mamba2-tiny", "f16");
  const auto j = RunJson("bench " + Quote(file) +
                         " --prompt-len 8 --gen-len 3 --batch 2 --bandwidth 10 --f16-state --json");
  ExpectBenchFields(j);
  EXPECT_EQ(j["f16_state"], true);
  EXPECT_EQ(j["state_bytes_per_token"].get<uint64_t>(), ExpectedStateBytes(file, 2, 2));
  EXPECT_EQ(j["weight_bytes_per_token"].get<uint64_t>(), ExpectedWeightBytes(file, 2));
}

TEST(BenchCli, TextOutputAndMembwOnly) {
  std::string out;
  ASSERT_EQ(RunCommand(Quote(SsmqBinary()) + " bench " + Quote(Converted("mamba2-tiny", "f32")) +
                           " --prompt-len 4 --gen-len 2 --bandwidth 5",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("decode roofline"), std::string::npos) << out;
  EXPECT_NE(out.find("tok/s"), std::string::npos) << out;
  EXPECT_NE(out.find("warm-up prefill"), std::string::npos) << out;
  // --no-warmup: the first prefill is the timed one, no warm-up time.
  const auto cold = RunJson("bench " + Quote(Converted("mamba2-tiny", "f32")) +
                            " --prompt-len 4 --gen-len 2 --bandwidth 5 --no-warmup --json");
  EXPECT_EQ(cold["warmup_prefill_seconds"].get<double>(), 0.0);
  ExpectPositiveFinite(cold, "prefill_tokens_per_s");
  const auto j = RunJson("bench --membw-only --threads 1 --json");
  for (const char* k : {"read_best_bytes_per_s", "read_median_bytes_per_s", "copy_best_bytes_per_s",
                        "triad_best_bytes_per_s", "buffer_bytes"})
    ExpectPositiveFinite(j, k);
  EXPECT_GE(j["read_best_bytes_per_s"].get<double>(), j["read_median_bytes_per_s"].get<double>());
}

TEST(BenchCli, BadArgumentsAreTypedErrors) {
  const std::string file = Converted("mamba2-tiny", "f32");
  std::string out;
  for (const std::string bad : {"--prompt-len 0", "--gen-len 0", "--batch 0", "--reps 0",
                                "--threads -1", "--bandwidth -3"}) {
    EXPECT_EQ(RunCommand(Quote(SsmqBinary()) + " bench " + Quote(file) + " " + bad + " 2>&1", &out),
              2)
        << bad;
    EXPECT_NE(out.find("invalid argument"), std::string::npos) << bad << ": " << out;
  }
  EXPECT_EQ(RunCommand(Quote(SsmqBinary()) + " bench 2>&1", &out), 2) << out;
  EXPECT_EQ(RunCommand(Quote(SsmqBinary()) + " bench /nonexistent.ssmq 2>&1", &out), 1) << out;
  EXPECT_NE(out.find("not found"), std::string::npos) << out;
}

TEST(Membw, ReadCopyTriadPositive) {
  MembwOptions o;
  o.buffer_bytes = 64 << 20;  // small and quick: not a DRAM figure, only the mechanics
  o.passes = 3;
  auto r = MeasureMemoryBandwidth(2, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->n_threads, 2);
  EXPECT_EQ(r->passes, 3);
  for (const BandwidthStats* s : {&r->read, &r->copy, &r->triad}) {
    EXPECT_GT(s->median_bytes_per_s, 0);
    EXPECT_GE(s->best_bytes_per_s, s->median_bytes_per_s);
  }
  auto read = MeasureReadBandwidth(1, o);
  ASSERT_TRUE(read.ok());
  EXPECT_GT(read->best_bytes_per_s, 0);
  o.passes = 0;
  EXPECT_EQ(MeasureReadBandwidth(1, o).status().code(), StatusCode::kInvalidArgument);
  o.passes = 1;
  o.buffer_bytes = 1000;
  EXPECT_EQ(MeasureReadBandwidth(1, o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_GE(DefaultMembwBufferBytes(), uint64_t{64} << 20);
}

}  // namespace
}  // namespace ssmq
