// Golden files under tests/data/golden/ must load forever. (1) The writer
// rebuilds each one byte for byte; (2) each one opens and every value checks.
// Regenerate (only on a deliberate format change, which needs a version bump):
//   SSMQ_UPDATE_GOLDEN=1 ./format_golden_test
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "format/ssmq_file.h"
#include "tests/format_test_files.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

std::string GoldenPath(const std::string& name) { return testing::TestDir() + "/data/golden/" + name; }

std::vector<uint8_t> BasicBytes() { return *testing::MakeGoldenBasicWriter().WriteBuffer(); }
std::vector<uint8_t> ZstdBytes() { return *testing::MakeGoldenZstdWriter().WriteBuffer(); }

struct Golden {
  const char* file;
  std::vector<uint8_t> (*build)();
  bool byte_exact;  // zstd output may legitimately differ between zstd releases
};
const Golden kGoldens[] = {
    {"v1_0_basic.ssmq", BasicBytes, true},
    {"v1_1_extension.ssmq", [] { return testing::GoldenMinorBytes(BasicBytes()); }, true},
    {"v1_0_zstd.ssmq", ZstdBytes, false},
};

TEST(FormatGolden, RewriteIsByteExact) {
  const bool update = std::getenv("SSMQ_UPDATE_GOLDEN") != nullptr;
  for (const Golden& g : kGoldens) {
    const auto built = g.build();
    if (update) {
      std::filesystem::create_directories(testing::TestDir() + "/data/golden");
      testing::WriteFileBytes(GoldenPath(g.file), built);
    }
    ASSERT_TRUE(std::filesystem::exists(GoldenPath(g.file))) << g.file;
    const auto stored = testing::ReadFileBytes(GoldenPath(g.file));
    if (g.byte_exact) {
      ASSERT_EQ(stored.size(), built.size()) << g.file;
      for (size_t i = 0; i < stored.size(); ++i) ASSERT_EQ(stored[i], built[i]) << g.file << " byte " << i;
    }
  }
}

void CheckBasicContents(const SsmqFile& f) {
  const Metadata& md = f.metadata();
  Metadata want;
  testing::AddGoldenMetadata(want);
  ASSERT_EQ(md.size(), want.size());
  for (size_t i = 0; i < md.size(); ++i) {
    EXPECT_EQ(md.entries()[i].key, want.entries()[i].key);
    EXPECT_EQ(md.entries()[i].value.type, want.entries()[i].value.type) << want.entries()[i].key;
    EXPECT_TRUE(md.entries()[i].value.v == want.entries()[i].value.v) << want.entries()[i].key;
  }
  EXPECT_EQ(*md.GetDouble("test.f32"), static_cast<double>(1.0e-40f));
  auto f32 = [&](const char* name) {
    auto r = f.ReadAsF32(*f.FindTensor(name));
    EXPECT_TRUE(r.ok()) << name;
    return r.ok() ? *r : std::vector<float>{};
  };
  EXPECT_EQ(f32("plain.f32"), testing::PatternF32(6, 1));
  const auto f16 = f32("plain.f16");
  EXPECT_EQ(f16[0], 1.0f);
  EXPECT_EQ(f16[1], -2.0f);
  EXPECT_EQ(f16[2], 0x1p-24f);
  EXPECT_EQ(f16[3], 65504.0f);
  EXPECT_TRUE(f16[4] == 0.0f && std::signbit(f16[4]));
  const auto bf16 = f32("plain.bf16");
  EXPECT_EQ(bf16[0], 1.0f);
  EXPECT_EQ(bf16[1], -1.5f);
  EXPECT_TRUE(std::isinf(bf16[2]));
  EXPECT_EQ(f32("plain.i8"), (std::vector<float>{-128, -1, 0, 127}));
  EXPECT_EQ(f32("plain.i32"), (std::vector<float>{3, 0, 2, 1}));
  EXPECT_EQ(f32("plain.u8"), (std::vector<float>{0, 128, 255}));
  auto i64 = f.TensorData(*f.FindTensor("plain.i64"), true);
  ASSERT_TRUE(i64.ok());
  EXPECT_EQ(testing::Peek<int64_t>(std::vector<uint8_t>(i64->begin(), i64->end()), 8), INT64_MAX);
  EXPECT_EQ(f32("plain.scalar"), (std::vector<float>{42.5f}));
  EXPECT_TRUE(f.FindTensor("plain.scalar")->shape.empty());
  EXPECT_EQ(f.FindTensor("plain.empty")->shape, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(f32("plain.empty").empty());
  EXPECT_EQ(f32("blk.0.perm.ssm_out"), (std::vector<float>{5, 4, 3, 2, 1, 0}));
  for (const auto& g : testing::GoldenQuantTensors()) {
    const TensorInfo* t = f.FindTensor(g.name);
    ASSERT_TRUE(t) << g.name;
    EXPECT_EQ(t->type, g.type);
    EXPECT_EQ(t->shape, g.shape);
    EXPECT_EQ(t->quant.granularity, g.q.granularity);
    EXPECT_EQ(t->quant.group_size, g.q.group_size);
    EXPECT_EQ(t->quant.has_zero_point, g.q.has_zero_point);
    const auto v = f32(g.name.c_str());
    const uint64_t cols = static_cast<uint64_t>(g.shape.back());
    ASSERT_EQ(v.size(), t->numel());
    for (uint64_t i = 0; i < v.size(); ++i)
      ASSERT_EQ(v[i], testing::GoldenDequant(g, i / cols, i % cols)) << g.name << "[" << i << "]";
  }
  EXPECT_TRUE(f.ValidateAll().empty());
}

TEST(FormatGolden, BasicLoadsWithEveryValue) {
  auto f = SsmqFile::OpenMmap(GoldenPath("v1_0_basic.ssmq"), OpenOptions{.verify_tensor_checksums = true});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->header().version_major, 1);
  EXPECT_EQ((*f)->header().version_minor, 0);
  EXPECT_EQ((*f)->header().alignment, 64u);
  CheckBasicContents(**f);
}

TEST(FormatGolden, NewerMinorWithUnknownOptionalSectionLoads) {
  auto f = SsmqFile::OpenMmap(GoldenPath("v1_1_extension.ssmq"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->header().version_minor, 1);
  ASSERT_EQ((*f)->extensions().size(), 1u);
  EXPECT_EQ((*f)->extensions()[0].kind, 0x7001u);
  CheckBasicContents(**f);
}

TEST(FormatGolden, ZstdLoadsWithEveryValue) {
  auto f = SsmqFile::OpenMmap(GoldenPath("v1_0_zstd.ssmq"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const TensorInfo* c = (*f)->FindTensor("z.compressible");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->compression, Compression::kZstd);
  EXPECT_EQ(*(*f)->ReadAsF32(*c), testing::ZstdCompressibleValues());
  auto u = (*f)->TensorData(*(*f)->FindTensor("z.incompressible"), true);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(std::vector<uint8_t>(u->begin(), u->end()), testing::ZstdIncompressibleBytes());
  EXPECT_EQ(*(*f)->ReadAsF32(*(*f)->FindTensor("z.plain")), (std::vector<float>{1, 2}));
  EXPECT_EQ(*(*f)->metadata().GetString("general.architecture"), "mamba2");
  EXPECT_TRUE((*f)->ValidateAll().empty());
}

}  // namespace
}  // namespace ssmq
