// safetensors reader/writer: the fixture shards read with the values the
// bytes hold, hand-made broken files each rejected with its own code, and a
// write -> read round trip.
#include "convert/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace ssmq {
namespace {

using ssmq::testing::FixtureModelDir;
using ssmq::testing::MakeTempDir;
using ssmq::testing::ReadFileBytes;
using ssmq::testing::WriteFileBytes;

float F32At(const SafetensorsTensor& t, size_t i) {
  float f;
  std::memcpy(&f, t.data.data() + 4 * i, 4);
  return f;
}

// A file with header length `n` (default: the text's length), JSON text and data bytes.
std::vector<uint8_t> MakeFile(const std::string& header, size_t data_bytes, std::optional<uint64_t> n = {}) {
  const uint64_t len = n.value_or(header.size());
  std::vector<uint8_t> out;
  out.reserve(8 + header.size() + data_bytes);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(len >> (8 * i)));
  for (char c : header) out.push_back(static_cast<uint8_t>(c));
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<uint8_t>(i));
  return out;
}

StatusCode OpenCode(const std::vector<uint8_t>& bytes) {
  auto r = SafetensorsFile::OpenBuffer(bytes, "test.safetensors");
  return r.ok() ? StatusCode::kOk : r.status().code();
}

TEST(Safetensors, ReadsFixtureShard) {
  auto r = SafetensorsFile::Open(FixtureModelDir("mamba1-tiny") + "/model-00001-of-00003.safetensors");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const SafetensorsFile& f = **r;
  EXPECT_EQ(f.tensors().size(), 20u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  // Tensors come in data order: the embedding is first at offset 0.
  EXPECT_EQ(f.tensors()[0].name, "backbone.embeddings.weight");

  const SafetensorsTensor* emb = f.Find("backbone.embeddings.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, "F32");
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{2048, 384}));
  EXPECT_EQ(emb->data.size(), 2048u * 384u * 4u);
  EXPECT_FLOAT_EQ(F32At(*emb, 0), -0.10320107638835907f);
  EXPECT_FLOAT_EQ(F32At(*emb, 1), -0.024874640628695488f);
  EXPECT_FLOAT_EQ(F32At(*emb, 2), -0.25207197666168213f);

  const SafetensorsTensor* conv = f.Find("backbone.layers.0.mixer.conv1d.weight");
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->shape, (std::vector<int64_t>{768, 1, 4}));
  EXPECT_FLOAT_EQ(F32At(*conv, 1), -0.4975796937942505f);
  EXPECT_EQ(f.Find("backbone.norm_f.weight"), nullptr);  // lives in shard 3
}

TEST(Safetensors, ReadsBf16Fixture) {
  auto r = SafetensorsFile::Open(FixtureModelDir("mamba2-tiny") + "/model.safetensors");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const SafetensorsTensor* a = (*r)->Find("backbone.layers.0.mixer.A_log");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, "BF16");
  EXPECT_EQ(a->shape, std::vector<int64_t>{16});
  uint16_t h[3];
  std::memcpy(h, a->data.data(), 6);
  EXPECT_EQ(h[0], 0x3db2);  // 0.0869140625
  EXPECT_EQ(h[1], 0x3f50);  // 0.8125
  EXPECT_EQ(h[2], 0x3f8b);  // 1.0859375
}

TEST(Safetensors, MissingFileIsNotFound) {
  auto r = SafetensorsFile::Open(MakeTempDir("st") + "/nope.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST(Safetensors, ValidMinimalFile) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"U8","shape":[],"data_offsets":[8,9]}})";
  auto r = SafetensorsFile::OpenBuffer(MakeFile(h, 9), "x");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->tensors().size(), 2u);
  EXPECT_EQ((*r)->Find("b")->data.size(), 1u);
  EXPECT_EQ((*r)->Find("b")->data[0], 8);
  // Empty header object, empty buffer: valid.
  EXPECT_EQ(OpenCode(MakeFile("{}", 0)), StatusCode::kOk);
  // Header padded with trailing spaces (as the reference writer does): valid.
  EXPECT_EQ(OpenCode(MakeFile("{}      ", 0)), StatusCode::kOk);
}

TEST(Safetensors, BrokenFilesGetTheirCode) {
  const std::string one_f32 = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Case {
    const char* what;
    std::vector<uint8_t> bytes;
    StatusCode code;
  };
  const Case cases[] = {
      {"shorter than the length field", {1, 2, 3}, StatusCode::kTruncated},
      {"header too large", MakeFile(one_f32, 8, 100'000'001), StatusCode::kLimitExceeded},
      {"header length past end", MakeFile(one_f32, 8, one_f32.size() + 9), StatusCode::kTruncated},
      {"header length 2^64-1", MakeFile(one_f32, 8, UINT64_MAX), StatusCode::kLimitExceeded},
      {"bad JSON", MakeFile(R"({"a":{"dtype":"F32",)", 8), StatusCode::kParseError},
      {"not starting with {", MakeFile(" " + one_f32, 8), StatusCode::kParseError},
      {"JSON array", MakeFile("[1,2]", 0), StatusCode::kParseError},
      {"invalid UTF-8", MakeFile("{\"\xff\":1}", 0), StatusCode::kParseError},
      {"unknown dtype", MakeFile(R"({"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", 8),
       StatusCode::kUnknownType},
      {"missing data_offsets", MakeFile(R"({"a":{"dtype":"F32","shape":[2]}})", 8), StatusCode::kParseError},
      {"negative dim", MakeFile(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
       StatusCode::kParseError},
      {"hole between tensors",
       MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12),
       StatusCode::kBadTensorInfo},
      {"first tensor not at 0", MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       StatusCode::kBadTensorInfo},
      {"overlap",
       MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       StatusCode::kOverlap},
      {"buffer not fully indexed", MakeFile(one_f32, 12), StatusCode::kBadTensorInfo},
      {"tensor past the end of the buffer", MakeFile(one_f32, 4), StatusCode::kTruncated},
      {"size != numel * dtype size", MakeFile(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       StatusCode::kBadTensorInfo},
      {"element count overflow",
       MakeFile(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8),
       StatusCode::kBadTensorInfo},
      {"byte size overflow",
       MakeFile(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
       StatusCode::kBadTensorInfo},
      {"duplicate name",
       MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       StatusCode::kDuplicateTensor},
      {"__metadata__ with a number",
       MakeFile(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       StatusCode::kParseError},
  };
  for (const Case& c : cases) EXPECT_EQ(OpenCode(c.bytes), c.code) << c.what;
}

TEST(Safetensors, EndBeforeBeginIsBadTensorInfo) {
  // A single tensor whose end precedes its begin (begin 0 so it is not a hole).
  const std::string h = R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                        R"("b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                        R"("c":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}})";
  auto r = SafetensorsFile::OpenBuffer(MakeFile(h, 1), "x");
  ASSERT_FALSE(r.ok());
  // Sorted by (begin, end): a(0,0) b(0,1) c(1,0): c begins at 1 == previous end, ends before it begins.
  EXPECT_EQ(r.status().code(), StatusCode::kBadTensorInfo) << r.status().ToString();
  EXPECT_NE(r.status().message().find("'c'"), std::string::npos);
}

TEST(Safetensors, ErrorsNameTheTensorAndOffset) {
  auto r = SafetensorsFile::OpenBuffer(
      MakeFile(R"({"weight.x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "file.st");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("weight.x"), std::string::npos);
  EXPECT_NE(r.status().message().find("file.st"), std::string::npos);
  EXPECT_TRUE(r.status().has_offset());
}

TEST(Safetensors, WriteReadRoundTrip) {
  const std::string dir = MakeTempDir("st_rt");
  std::vector<float> f = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
  std::vector<uint8_t> f_bytes(f.size() * 4);
  std::memcpy(f_bytes.data(), f.data(), f_bytes.size());
  std::vector<uint8_t> bf = {0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40};  // bf16 1, -2, 3.140625
  std::vector<int64_t> i64 = {-1, 1LL << 40};
  std::vector<uint8_t> i_bytes(16);
  std::memcpy(i_bytes.data(), i64.data(), 16);
  std::vector<SafetensorsWriteTensor> ts = {
      {"w.f32", "F32", {2, 3}, f_bytes},
      {"w.bf16", "BF16", {3}, bf},
      {"ids", "I64", {1, 2}, i_bytes},
      {"empty", "F16", {0, 4}, {}},
  };
  const std::map<std::string, std::string> md = {{"format", "pt"}, {"note", "round trip"}};
  const std::string path = dir + "/a.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, ts, md).ok());
  auto r = SafetensorsFile::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->metadata(), md);
  ASSERT_EQ((*r)->tensors().size(), 4u);
  for (const auto& w : ts) {
    const SafetensorsTensor* t = (*r)->Find(w.name);
    ASSERT_NE(t, nullptr) << w.name;
    EXPECT_EQ(t->dtype, w.dtype);
    EXPECT_EQ(t->shape, w.shape);
    EXPECT_EQ(std::vector<uint8_t>(t->data.begin(), t->data.end()),
              std::vector<uint8_t>(w.data.begin(), w.data.end()));
  }
  // Data buffer starts 8-aligned; writing again gives the same bytes.
  const std::vector<uint8_t> first = ReadFileBytes(path);
  uint64_t n = 0;
  std::memcpy(&n, first.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_TRUE(WriteSafetensors(dir + "/b.safetensors", ts, md).ok());
  EXPECT_EQ(first, ReadFileBytes(dir + "/b.safetensors"));

  // Writer refuses inconsistent input.
  EXPECT_EQ(WriteSafetensors(dir + "/c.safetensors", {{"x", "F32", {3}, f_bytes}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(dir + "/c.safetensors", {{"x", "Q9", {1}, bf}}).code(), StatusCode::kUnknownType);
  EXPECT_EQ(WriteSafetensors(dir + "/c.safetensors", {{"x", "U8", {1}, {bf.data(), 1}}, {"x", "U8", {1}, {bf.data(), 1}}})
                .code(),
            StatusCode::kDuplicateTensor);
}

}  // namespace
}  // namespace ssmq
