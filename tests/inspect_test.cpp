// ssmq inspect / ssmq diff: golden text and JSON outputs on files converted
// from the fixture checkpoints, --validate against bit flips and truncation,
// --dump read back by our safetensors reader, and the numbers behind
// --stats / bits per weight / permutations checked against independent math.
//
// SSMQ_UPDATE_GOLDEN=1 rewrites tests/data/inspect_golden/*.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "convert/hf_import.h"
#include "convert/safetensors.h"
#include "format/quant.h"
#include "format/ssmq_file.h"
#include "inspect/diff.h"
#include "inspect/dump.h"
#include "inspect/stats.h"
#include "inspect/summary.h"
#include "inspect/transforms.h"
#include "inspect/validate.h"
#include "model/model_io.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

using testing::ReadFileBytes;
using testing::ReadFileText;

std::vector<uint8_t> ToBytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Replaces `name` (f32 [rows, cols]) by its Q8 or Q4 quantization plus
// "<name>.scale" (and "<name>.zero").
void QuantizeInModel(Model& m, const std::string& name, TensorType type, const QuantInfo& q) {
  const ModelTensor* t = m.Find(name);
  ASSERT_NE(t, nullptr) << name;
  const std::vector<int64_t> shape = t->shape;
  const uint64_t rows = static_cast<uint64_t>(shape[0]), cols = static_cast<uint64_t>(shape[1]);
  Result<std::vector<float>> values = m.ReadAsF32(name);
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  Result<QuantizedTensor> qt = type == TensorType::kQ8 ? QuantizeQ8(*values, rows, cols, q)
                                                       : QuantizeQ4(*values, rows, cols, q);
  ASSERT_TRUE(qt.ok()) << qt.status().ToString();
  ModelTensor codes = ModelTensor::Owned(name, type, shape, qt->codes);
  codes.quant = q;
  m.SetTensor(std::move(codes));
  std::vector<int64_t> scale_shape = {shape[0]};
  if (q.granularity == ScaleGranularity::kPerGroup)
    scale_shape.push_back(static_cast<int64_t>((cols + q.group_size - 1) / q.group_size));
  if (q.granularity == ScaleGranularity::kPerTensor) scale_shape = {1};
  m.SetTensor(ModelTensor::Owned(name + ".scale", TensorType::kF32, scale_shape,
                                 ToBytes(qt->scales)));
  if (q.has_zero_point)
    m.SetTensor(ModelTensor::Owned(name + ".zero", TensorType::kU8, scale_shape, qt->zeros));
}

// The converted fixture files, built once for the whole suite.
struct Files {
  std::string dir;
  std::string m1_f32, m2_f16, m1_quant;
};

const Files& GetFiles() {
  static const Files files = [] {
    Files f;
    f.dir = testing::MakeTempDir("inspect");
    f.m1_f32 = f.dir + "/m1_f32.ssmq";
    f.m2_f16 = f.dir + "/m2_f16.ssmq";
    f.m1_quant = f.dir + "/m1_quant.ssmq";

    Result<Model> m1 = ImportHfDirectory(testing::FixtureModelDir("mamba1-tiny"));
    EXPECT_TRUE(m1.ok()) << m1.status().ToString();
    if (!m1.ok()) return f;
    EXPECT_TRUE(SaveModel(*m1, f.m1_f32).ok());

    Result<Model> m2 = ImportHfDirectory(testing::FixtureModelDir("mamba2-tiny"));
    EXPECT_TRUE(m2.ok()) << m2.status().ToString();
    if (m2.ok()) {
      EXPECT_TRUE(CastFloatTensors(*m2, TensorType::kF16).ok());
      EXPECT_TRUE(SaveModel(*m2, f.m2_f16).ok());
    }

    // A mixed file: q8 per-channel, q4 per-group symmetric, q4 with zero points,
    // a permutation with groups and a Hadamard descriptor.
    Model& q = *m1;
    QuantizeInModel(q, "blk.0.ssm_in.weight", TensorType::kQ8,
                    {ScaleGranularity::kPerChannel, 0, false});
    QuantizeInModel(q, "blk.0.ssm_out.weight", TensorType::kQ4,
                    {ScaleGranularity::kPerGroup, 32, false});
    QuantizeInModel(q, "blk.1.ssm_in.weight", TensorType::kQ4,
                    {ScaleGranularity::kPerGroup, 64, true});
    std::vector<int32_t> perm(768);
    for (int i = 0; i < 768; ++i) perm[i] = i;
    for (int g = 0; g < 12; ++g) std::swap(perm[g * 64], perm[g * 64 + 63]);  // 24 entries move
    std::vector<uint8_t> perm_bytes(perm.size() * 4);
    std::memcpy(perm_bytes.data(), perm.data(), perm_bytes.size());
    q.SetTensor(ModelTensor::Owned("blk.0.perm.ssm_out", TensorType::kI32, {768}, perm_bytes));
    q.extra.Set("blk.0.perm.ssm_out.groups", MetaValue::ArrayU64(std::vector<uint64_t>(12, 64)));
    q.extra.Set("blk.0.hadamard.ssm_out.size", MetaValue::U32(768));
    q.extra.Set("blk.0.hadamard.ssm_out.base", MetaValue::U32(12));
    q.extra.Set("blk.0.hadamard.ssm_out.kind", MetaValue::String("orthonormal"));
    q.extra.Set("quant.scheme", MetaValue::String("mixed"));
    q.extra.Set("quant.recipe", MetaValue::String("inspect_test: q8 blk.0.ssm_in, q4 others"));
    q.extra.Set("quant.group_size", MetaValue::U32(32));
    q.extra.Set("quant.rounding", MetaValue::String("nearest_even"));
    q.extra.Set("quant.calib.samples", MetaValue::U32(64));
    q.extra.Set("quant.calib.seqlen", MetaValue::U32(256));
    q.extra.Set("quant.calib.seed", MetaValue::U64(1234));
    Status st = SaveModel(q, f.m1_quant);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return f;
  }();
  return files;
}

std::string GoldenDir() { return testing::TestDir() + "/data/inspect_golden"; }

// Runs `ssmq ARGS` inside the files' directory (relative names keep the
// output free of absolute paths); returns stdout, sets *exit_code.
std::string RunSsmq(const std::string& args, int* exit_code = nullptr) {
  std::string out;
  const int code = testing::RunCommand(
      "cd '" + GetFiles().dir + "' && '" + testing::SsmqBinary() + "' " + args + " 2>/dev/null",
      &out);
  if (exit_code) *exit_code = code;
  return out;
}

void ExpectGolden(const std::string& golden_name, const std::string& actual) {
  const std::string path = GoldenDir() + "/" + golden_name;
  const char* update = std::getenv("SSMQ_UPDATE_GOLDEN");
  if (update && std::string(update) == "1") {
    std::filesystem::create_directories(GoldenDir());
    testing::WriteFileBytes(path, std::vector<uint8_t>(actual.begin(), actual.end()));
    return;
  }
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " missing; run with SSMQ_UPDATE_GOLDEN=1";
  EXPECT_EQ(ReadFileText(path), actual) << "golden " << golden_name
                                        << " differs; SSMQ_UPDATE_GOLDEN=1 rewrites it";
}

struct GoldenCase {
  const char* golden;
  const char* args;
  int exit_code;
};

class InspectGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(InspectGolden, MatchesGolden) {
  const GoldenCase& c = GetParam();
  int code = -1;
  const std::string out = RunSsmq(c.args, &code);
  EXPECT_EQ(code, c.exit_code) << c.args;
  ASSERT_FALSE(out.empty()) << c.args;
  if (std::string(c.golden).ends_with(".json")) {
    nlohmann::json parsed;
    EXPECT_NO_THROW(parsed = nlohmann::json::parse(out)) << c.args;
  }
  ExpectGolden(c.golden, out);
}

INSTANTIATE_TEST_SUITE_P(
    Cli, InspectGolden,
    ::testing::Values(
        GoldenCase{"m1_f32.summary.txt", "inspect m1_f32.ssmq", 0},
        GoldenCase{"m1_f32.summary.json", "inspect m1_f32.ssmq --json", 0},
        GoldenCase{"m1_f32.tensors.txt", "inspect m1_f32.ssmq --tensors", 0},
        GoldenCase{"m1_f32.tensors.json", "inspect m1_f32.ssmq --tensors --json", 0},
        GoldenCase{"m1_f32.stats.txt", "inspect m1_f32.ssmq --stats", 0},
        GoldenCase{"m2_f16.summary.txt", "inspect m2_f16.ssmq", 0},
        GoldenCase{"m2_f16.tensors.json", "inspect m2_f16.ssmq --tensors --json", 0},
        GoldenCase{"m2_f16.stats.json",
                   "inspect m2_f16.ssmq --stats 'blk.0.*' --against m2_f16.ssmq --json", 0},
        GoldenCase{"m1_quant.summary.txt", "inspect m1_quant.ssmq", 0},
        GoldenCase{"m1_quant.summary.json", "inspect m1_quant.ssmq --json", 0},
        GoldenCase{"m1_quant.tensors.txt", "inspect m1_quant.ssmq --tensors", 0},
        GoldenCase{"m1_quant.stats.txt",
                   "inspect m1_quant.ssmq --stats 'blk.[01].ssm_*' --against m1_f32.ssmq", 0},
        GoldenCase{"m1_quant.stats.json",
                   "inspect m1_quant.ssmq --stats 'blk.[01].ssm_*' --against m1_f32.ssmq --json", 0},
        GoldenCase{"m1_quant.validate.txt", "inspect m1_quant.ssmq --validate", 0},
        GoldenCase{"m1_quant.validate.json", "inspect m1_quant.ssmq --validate --json", 0},
        GoldenCase{"m1_quant.histogram.txt",
                   "inspect m1_quant.ssmq --histogram blk.0.ssm_out.weight --bins 16", 0},
        GoldenCase{"diff.m1_f32.m1_quant.txt", "diff m1_f32.ssmq m1_quant.ssmq", 0},
        GoldenCase{"diff.m1_f32.m1_quant.json", "diff m1_f32.ssmq m1_quant.ssmq --json", 0}),
    [](const ::testing::TestParamInfo<GoldenCase>& info) {
      std::string n = info.param.golden;
      for (char& ch : n)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

std::unique_ptr<SsmqFile> Open(const std::string& path) {
  Result<std::unique_ptr<SsmqFile>> f = SsmqFile::OpenMmap(path);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? std::move(f).value() : nullptr;
}

TEST(InspectJson, TensorsArrayHasRequiredFields) {
  const nlohmann::json j = nlohmann::json::parse(RunSsmq("inspect m1_quant.ssmq --tensors --json"));
  auto file = Open(GetFiles().m1_quant);
  ASSERT_TRUE(file);
  ASSERT_EQ(j["tensors"].size(), file->tensors().size());
  for (size_t i = 0; i < file->tensors().size(); ++i) {
    const TensorInfo& t = file->tensors()[i];
    const nlohmann::json& o = j["tensors"][i];
    EXPECT_EQ(o["name"], t.name);
    EXPECT_EQ(o["type"], std::string(TensorTypeName(t.type)));
    EXPECT_EQ(o["shape"].get<std::vector<int64_t>>(), t.shape);
    EXPECT_EQ(o["offset"].get<uint64_t>(), t.offset);
    EXPECT_EQ(o["nbytes"].get<uint64_t>(), t.size);
  }
}

TEST(InspectSummary, BitsPerWeightAndTypes) {
  auto file = Open(GetFiles().m1_quant);
  ASSERT_TRUE(file);
  const inspect::FileSummary s = inspect::BuildSummary(*file, "m1_quant.ssmq");
  EXPECT_EQ(s.architecture, "mamba");
  EXPECT_EQ(s.scheme, "mixed");
  ASSERT_TRUE(s.hparams_error.empty()) << s.hparams_error;
  // in_proj: layer 0 q8 per channel [1536, 384]: 8 + 32/384 bits; layer 1 q4
  // per group of 64 with u8 zeros: 4 + (32 + 8)/64 bits; layers 2..5 f32.
  const double in_proj_elems = 1536.0 * 384;
  const double in_proj_bytes = (in_proj_elems + 1536 * 4) + (in_proj_elems / 2 + 1536 * 6 * 5) +
                               4 * in_proj_elems * 4;
  bool found = false;
  for (const auto& b : s.bits_per_weight) {
    if (b.role != "in_proj") continue;
    found = true;
    EXPECT_EQ(b.tensors, 6u);
    EXPECT_EQ(b.elements, static_cast<uint64_t>(6 * in_proj_elems));
    EXPECT_NEAR(b.bits, 8 * in_proj_bytes / (6 * in_proj_elems), 1e-9);
  }
  EXPECT_TRUE(found);
  ASSERT_FALSE(s.bits_per_weight.empty());
  EXPECT_EQ(s.bits_per_weight.back().role, "all");
  uint64_t total = 0;
  for (const auto& tb : s.bytes_by_type) total += tb.bytes;
  EXPECT_EQ(total, s.tensor_bytes);
}

TEST(InspectTransforms, PermutationAndHadamard) {
  auto file = Open(GetFiles().m1_quant);
  ASSERT_TRUE(file);
  const inspect::TransformsReport r = inspect::BuildTransforms(*file);
  ASSERT_EQ(r.permutations.size(), 1u);
  EXPECT_TRUE(r.permutations[0].valid) << r.permutations[0].problem;
  EXPECT_EQ(r.permutations[0].moved, 24u);
  EXPECT_EQ(r.permutations[0].size, 768u);
  EXPECT_EQ(r.permutations[0].site, "ssm_out");
  EXPECT_EQ(r.permutations[0].group_sizes, std::vector<int64_t>(12, 64));
  ASSERT_EQ(r.hadamards.size(), 1u);
  EXPECT_EQ(r.hadamards[0].layer, 0);
  EXPECT_EQ(r.hadamards[0].site, "ssm_out");
  EXPECT_EQ(r.hadamards[0].size, "768");
  EXPECT_TRUE(r.hadamards[0].problem.empty()) << r.hadamards[0].problem;

  EXPECT_FALSE(inspect::AnalyzePermutation({0, 1, 1}).valid);
  EXPECT_FALSE(inspect::AnalyzePermutation({0, 3, 1}).valid);
  EXPECT_EQ(inspect::AnalyzePermutation({2, 0, 1, 3}).moved, 3u);
}

// --stats --against: SQNR and max error computed independently from the two files.
TEST(InspectStats, ErrorAgainstFloatSource) {
  auto quant = Open(GetFiles().m1_quant);
  auto ref = Open(GetFiles().m1_f32);
  ASSERT_TRUE(quant && ref);
  Result<std::vector<inspect::TensorStatsRow>> rows =
      inspect::BuildStats(*quant, {"blk.0.ssm_out.weight", ref.get()});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_GE(rows->size(), 1u);
  const inspect::TensorStatsRow& row = (*rows)[0];
  ASSERT_EQ(row.name, "blk.0.ssm_out.weight");
  ASSERT_TRUE(row.error.has_value());

  Result<std::vector<float>> q = quant->ReadAsF32(*quant->FindTensor(row.name));
  Result<std::vector<float>> x = ref->ReadAsF32(*ref->FindTensor(row.name));
  ASSERT_TRUE(q.ok() && x.ok());
  double signal = 0, noise = 0, max_err = 0, sum = 0, absmax = 0;
  for (size_t i = 0; i < x->size(); ++i) {
    const double d = (*x)[i] - static_cast<double>((*q)[i]);
    signal += static_cast<double>((*x)[i]) * (*x)[i];
    noise += d * d;
    max_err = std::max(max_err, std::fabs(d));
    sum += (*q)[i];
    absmax = std::max(absmax, std::fabs(static_cast<double>((*q)[i])));
  }
  EXPECT_NEAR(row.error->sqnr_db, 10 * std::log10(signal / noise), 1e-9);
  EXPECT_DOUBLE_EQ(row.error->max_abs_err, max_err);
  EXPECT_NEAR(row.stats.mean, sum / static_cast<double>(x->size()), 1e-12);
  EXPECT_DOUBLE_EQ(row.stats.absmax, absmax);
  // 4-bit symmetric with groups of 32: roughly 6 dB per bit, well under 8-bit quality.
  EXPECT_GT(row.error->sqnr_db, 15.0);
  EXPECT_LT(row.error->sqnr_db, 30.0);
  // Max error is bounded by half a step of the largest scale.
  const TensorInfo* scale_info = quant->FindTensor(row.name + ".scale");
  Result<std::vector<float>> scales = quant->ReadAsF32(*scale_info);
  ASSERT_TRUE(scales.ok());
  EXPECT_LE(row.error->max_abs_err, *std::max_element(scales->begin(), scales->end()) * 0.5 + 1e-6);
}

// --- --validate ---------------------------------------------------------

TEST(InspectValidate, IntactFile) {
  const std::vector<uint8_t> bytes = ReadFileBytes(GetFiles().m1_quant);
  const inspect::ValidationReport r = inspect::ValidateBuffer(bytes, "m1_quant.ssmq");
  EXPECT_TRUE(r.intact());
  for (const auto& p : r.problems) ADD_FAILURE() << p.code << " " << p.tensor << " " << p.message;
}

TEST(InspectValidate, BitFlipInEveryTensorNamesIt) {
  std::vector<uint8_t> bytes = ReadFileBytes(GetFiles().m1_quant);
  auto file = Open(GetFiles().m1_quant);
  ASSERT_TRUE(file);
  std::mt19937_64 rng(7);
  for (const TensorInfo& t : file->tensors()) {
    if (t.stored_size == 0) continue;
    const uint64_t pos = t.offset + rng() % t.stored_size;
    const uint8_t mask = static_cast<uint8_t>(1u << (rng() % 8));
    bytes[pos] ^= mask;
    const inspect::ValidationReport r = inspect::ValidateBuffer(bytes, "x");
    bytes[pos] ^= mask;
    EXPECT_FALSE(r.intact()) << t.name << " flip at " << pos;
    bool named = false;
    for (const auto& p : r.problems) named |= (p.tensor == t.name && p.offset != Status::kNoOffset);
    EXPECT_TRUE(named) << "flip at " << pos << " in " << t.name << " not attributed";
  }
}

TEST(InspectValidate, BitFlipInHeaderAndDirectoryIsReported) {
  std::vector<uint8_t> bytes = ReadFileBytes(GetFiles().m1_quant);
  auto file = Open(GetFiles().m1_quant);
  ASSERT_TRUE(file);
  const FileHeader h = file->header();
  std::vector<uint64_t> positions;
  for (uint64_t i = 0; i < 128; ++i) positions.push_back(i);  // every header byte
  for (uint64_t i = h.directory_offset; i < h.directory_offset + h.directory_size; i += 7)
    positions.push_back(i);
  for (uint64_t i = h.metadata_offset; i < h.metadata_offset + h.metadata_size; i += 997)
    positions.push_back(i);
  for (uint64_t i = h.directory_offset + h.directory_size; i < h.data_offset; i += 5)
    positions.push_back(i);  // padding before the data
  int n = 0;
  for (uint64_t pos : positions) {
    const uint8_t mask = static_cast<uint8_t>(1u << (n++ % 8));
    bytes[pos] ^= mask;
    const inspect::ValidationReport r = inspect::ValidateBuffer(bytes, "x");
    bytes[pos] ^= mask;
    EXPECT_FALSE(r.intact()) << "flip at " << pos << " not reported";
    EXPECT_FALSE(r.problems.empty());
  }
}

TEST(InspectValidate, RandomBitFlipsAnywhereAreReported) {
  std::vector<uint8_t> bytes = ReadFileBytes(GetFiles().m1_quant);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200; ++i) {
    const uint64_t pos = rng() % bytes.size();
    const uint8_t mask = static_cast<uint8_t>(1u << (rng() % 8));
    bytes[pos] ^= mask;
    const inspect::ValidationReport r = inspect::ValidateBuffer(bytes, "x");
    bytes[pos] ^= mask;
    EXPECT_FALSE(r.intact()) << "flip at " << pos << " not reported";
  }
}

TEST(InspectValidate, TruncatedFileIsReportedNotCrashed) {
  const std::vector<uint8_t> bytes = ReadFileBytes(GetFiles().m1_quant);
  auto file = Open(GetFiles().m1_quant);
  ASSERT_TRUE(file);
  const FileHeader h = file->header();
  for (uint64_t size : {uint64_t{0}, uint64_t{3}, uint64_t{64}, uint64_t{127}, uint64_t{128},
                        h.metadata_offset + h.metadata_size / 2, h.directory_offset + 5,
                        h.data_offset, h.data_offset + h.data_size / 2,
                        uint64_t(bytes.size() - 1)}) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(size));
    const inspect::ValidationReport r = inspect::ValidateBuffer(cut, "x");
    EXPECT_FALSE(r.opened) << size;
    ASSERT_EQ(r.problems.size(), 1u) << size;
    EXPECT_FALSE(r.problems[0].message.empty());
  }
  // Through the CLI: exit status 1, the problem printed, no crash.
  const std::string cut_path = GetFiles().dir + "/truncated.ssmq";
  testing::WriteFileBytes(cut_path,
                          std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  int code = -1;
  const std::string out = RunSsmq("inspect truncated.ssmq --validate", &code);
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("truncated"), std::string::npos) << out;
  RunSsmq("inspect truncated.ssmq", &code);
  EXPECT_EQ(code, 1);
}

TEST(InspectValidate, CliExitStatusAndTensorName) {
  std::vector<uint8_t> bytes = ReadFileBytes(GetFiles().m1_f32);
  auto file = Open(GetFiles().m1_f32);
  ASSERT_TRUE(file);
  const TensorInfo* t = file->FindTensor("blk.3.ssm_x.weight");
  ASSERT_NE(t, nullptr);
  bytes[t->offset + t->size / 3] ^= 0x10;
  testing::WriteFileBytes(GetFiles().dir + "/flipped.ssmq", bytes);
  int code = -1;
  std::string out = RunSsmq("inspect flipped.ssmq --validate", &code);
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("blk.3.ssm_x.weight"), std::string::npos) << out;
  out = RunSsmq("inspect flipped.ssmq --validate --json", &code);
  EXPECT_EQ(code, 1);
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_FALSE(j["validation"]["intact"].get<bool>());
  ASSERT_GE(j["validation"]["problems"].size(), 1u);
  EXPECT_EQ(j["validation"]["problems"][0]["tensor"], "blk.3.ssm_x.weight");
}

// --- --dump ---------------------------------------------------------------

TEST(InspectDump, SafetensorsF32ReadBackEqualsSource) {
  auto file = Open(GetFiles().m1_quant);
  ASSERT_TRUE(file);
  for (const char* name : {"blk.0.ssm_in.weight", "blk.0.ssm_out.weight", "blk.1.ssm_in.weight",
                           "blk.2.ssm_x.weight", "blk.0.perm.ssm_out"}) {
    const std::string out = GetFiles().dir + "/dump.safetensors";
    int code = -1;
    RunSsmq("inspect m1_quant.ssmq --dump " + std::string(name) + " -o dump.safetensors", &code);
    ASSERT_EQ(code, 0) << name;
    Result<std::shared_ptr<SafetensorsFile>> st = SafetensorsFile::Open(out);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    const SafetensorsTensor* t = (*st)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    const TensorInfo* info = file->FindTensor(name);
    EXPECT_EQ(t->dtype, "F32");
    EXPECT_EQ(t->shape, info->shape);
    Result<std::vector<float>> expected = inspect::ReadTensorValues(*file, *info);
    ASSERT_TRUE(expected.ok());
    ASSERT_EQ(t->data.size(), expected->size() * 4);
    EXPECT_EQ(std::memcmp(t->data.data(), expected->data(), t->data.size()), 0) << name;
  }
}

TEST(InspectDump, RawBytesEqualStoredBytes) {
  struct Case { std::string file, name, dtype; };
  for (const Case& c : {Case{"m1_quant.ssmq", "blk.0.ssm_out.weight", "U8"},
                        Case{"m1_quant.ssmq", "blk.0.ssm_in.weight", "I8"},
                        Case{"m1_quant.ssmq", "blk.0.perm.ssm_out", "I32"},
                        Case{"m2_f16.ssmq", "blk.2.ssm_in.weight", "F16"}}) {
    int code = -1;
    RunSsmq("inspect " + c.file + " --dump " + c.name + " --raw -o raw.safetensors", &code);
    ASSERT_EQ(code, 0) << c.name;
    auto file = Open(GetFiles().dir + "/" + c.file);
    ASSERT_TRUE(file);
    const TensorInfo* info = file->FindTensor(c.name);
    Result<std::span<const uint8_t>> stored = file->TensorData(*info);
    ASSERT_TRUE(stored.ok());
    Result<std::shared_ptr<SafetensorsFile>> st =
        SafetensorsFile::Open(GetFiles().dir + "/raw.safetensors");
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    const SafetensorsTensor* t = (*st)->Find(c.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, c.dtype);
    ASSERT_EQ(t->data.size(), stored->size());
    EXPECT_EQ(std::memcmp(t->data.data(), stored->data(), stored->size()), 0) << c.name;
  }
}

TEST(InspectDump, NpyHeaderAndData) {
  int code = -1;
  RunSsmq("inspect m1_f32.ssmq --dump blk.0.ssm_dt.weight -o dt.npy", &code);
  ASSERT_EQ(code, 0);
  const std::vector<uint8_t> npy = ReadFileBytes(GetFiles().dir + "/dt.npy");
  ASSERT_GT(npy.size(), 10u);
  EXPECT_EQ(std::memcmp(npy.data(), "\x93NUMPY\x01\x00", 8), 0);
  const size_t header_len = npy[8] | (npy[9] << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  const std::string header(npy.begin() + 10, npy.begin() + 10 + static_cast<ptrdiff_t>(header_len));
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'shape': (768, 24)"), std::string::npos) << header;
  auto file = Open(GetFiles().m1_f32);
  ASSERT_TRUE(file);
  Result<std::span<const uint8_t>> stored = file->TensorData(*file->FindTensor("blk.0.ssm_dt.weight"));
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(npy.size() - 10 - header_len, stored->size());
  EXPECT_EQ(std::memcmp(npy.data() + 10 + header_len, stored->data(), stored->size()), 0);
}

TEST(InspectDump, Errors) {
  int code = -1;
  RunSsmq("inspect m1_f32.ssmq --dump no.such.tensor -o x.npy", &code);
  EXPECT_EQ(code, 1);
  RunSsmq("inspect m1_f32.ssmq --dump blk.0.ssm_d -o x.bin", &code);
  EXPECT_EQ(code, 2);
}

// --- diff -------------------------------------------------------------------

TEST(InspectDiff, AddedRemovedChangedWithSqnr) {
  auto a = Open(GetFiles().m1_f32);
  auto b = Open(GetFiles().m1_quant);
  ASSERT_TRUE(a && b);
  Result<inspect::DiffReport> d = inspect::DiffFiles(*a, *b, "a", "b");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  int added = 0, removed = 0, changed = 0;
  for (const auto& c : d->tensors) {
    added += c.kind == "added";
    removed += c.kind == "removed";
    if (c.kind == "changed") {
      ++changed;
      ASSERT_TRUE(c.error.has_value()) << c.name;
      EXPECT_GT(c.error->sqnr_db, 15.0) << c.name;
    }
  }
  EXPECT_EQ(changed, 3);   // the three quantized weights
  EXPECT_EQ(added, 5);     // 3 .scale, 1 .zero, 1 perm
  EXPECT_EQ(removed, 0);
  EXPECT_EQ(d->same_tensors, a->tensors().size() - 3);
  Result<inspect::DiffReport> same = inspect::DiffFiles(*a, *a, "a", "a");
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(same->identical());
  int code = -1;
  RunSsmq("diff m1_f32.ssmq m1_quant.ssmq --exit-code", &code);
  EXPECT_EQ(code, 1);
  RunSsmq("diff m1_f32.ssmq m1_f32.ssmq --exit-code", &code);
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace ssmq
