// write -> read round trips: every tensor type, every metadata type, zstd,
// mmap and buffer opens, zero-copy alignment, determinism, atomic writes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "format/ssmq_file.h"
#include "tests/format_test_files.h"
#include "tests/test_util.h"

namespace ssmq {
namespace {

using testing::AsBytes;
using testing::Info;

std::string NumberedName(size_t i) {
  std::string s = "t";
  s += std::to_string(i);
  return s;
}

std::vector<uint8_t> Bytes(const SsmqWriter& w) {
  auto r = w.WriteBuffer();
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : std::vector<uint8_t>{};
}

std::unique_ptr<SsmqFile> Open(const std::vector<uint8_t>& b, OpenOptions o = {}) {
  auto r = SsmqFile::OpenBuffer(b, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

TEST(FormatRoundTrip, EveryPlainTypeIsByteExactAndZeroCopyAligned) {
  struct Case {
    TensorType type;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {
      {TensorType::kF32, {3, 5}}, {TensorType::kF16, {7}},  {TensorType::kBF16, {2, 2, 3}},
      {TensorType::kI8, {9}},     {TensorType::kI32, {4}},  {TensorType::kU8, {1, 1, 1, 1, 1, 1, 1, 3}},
      {TensorType::kI64, {2}},    {TensorType::kF32, {}},   {TensorType::kF32, {0, 3}},
  };
  for (uint32_t alignment : {32u, 64u, 4096u}) {
    SsmqWriter w(alignment);
    std::vector<std::vector<uint8_t>> data;
    for (size_t i = 0; i < cases.size(); ++i) {
      TensorInfo t = Info(NumberedName(i), cases[i].type, cases[i].shape);
      const uint64_t n = *TensorBytes(cases[i].type, t.numel());
      std::vector<uint8_t> d(n);
      for (uint64_t k = 0; k < n; ++k) d[k] = static_cast<uint8_t>(k * 31 + i);
      data.push_back(d);
      ASSERT_TRUE(w.AddTensor(t, data.back()).ok());
    }
    const auto bytes = Bytes(w);
    auto f = Open(bytes, OpenOptions{.verify_tensor_checksums = true});
    ASSERT_TRUE(f);
    EXPECT_EQ(f->header().alignment, alignment);
    EXPECT_EQ(f->header().file_size, bytes.size());
    ASSERT_EQ(f->tensors().size(), cases.size());
    for (size_t i = 0; i < cases.size(); ++i) {
      const TensorInfo& t = f->tensors()[i];  // file order = add order
      EXPECT_EQ(t.name, NumberedName(i));
      EXPECT_EQ(t.type, cases[i].type);
      EXPECT_EQ(t.shape, cases[i].shape);
      EXPECT_EQ(t.offset % alignment, 0u);
      auto view = f->TensorData(t, true);
      ASSERT_TRUE(view.ok()) << view.status().ToString();
      EXPECT_EQ(std::vector<uint8_t>(view->begin(), view->end()), data[i]);
      if (!view->empty()) {
        EXPECT_EQ(view->data(), bytes.data() + t.offset) << "zero-copy view";
      }
    }
    EXPECT_TRUE(f->ValidateAll().empty());
  }
}

TEST(FormatRoundTrip, ReadAsF32ConvertsEveryType) {
  SsmqWriter w;
  ASSERT_TRUE(w.AddTensorCopy(Info("f16", TensorType::kF16, {3}), AsBytes(std::vector<uint16_t>{0x3C00, 0xC000, 0x3800})).ok());
  ASSERT_TRUE(w.AddTensorCopy(Info("bf16", TensorType::kBF16, {2}), AsBytes(std::vector<uint16_t>{0x3F80, 0xC040})).ok());
  ASSERT_TRUE(w.AddTensorCopy(Info("i8", TensorType::kI8, {2}), AsBytes(std::vector<int8_t>{-5, 7})).ok());
  ASSERT_TRUE(w.AddTensorCopy(Info("i32", TensorType::kI32, {2}), AsBytes(std::vector<int32_t>{-70000, 3})).ok());
  ASSERT_TRUE(w.AddTensorCopy(Info("u8", TensorType::kU8, {2}), {0, 200}).ok());
  ASSERT_TRUE(w.AddTensorCopy(Info("i64", TensorType::kI64, {1}), AsBytes(std::vector<int64_t>{-(int64_t{1} << 40)})).ok());
  const auto bytes = Bytes(w);
  auto f = Open(bytes);
  ASSERT_TRUE(f);
  auto get = [&](const char* name) { return *f->ReadAsF32(*f->FindTensor(name)); };
  EXPECT_EQ(get("f16"), (std::vector<float>{1.0f, -2.0f, 0.5f}));
  EXPECT_EQ(get("bf16"), (std::vector<float>{1.0f, -3.0f}));
  EXPECT_EQ(get("i8"), (std::vector<float>{-5.0f, 7.0f}));
  EXPECT_EQ(get("i32"), (std::vector<float>{-70000.0f, 3.0f}));
  EXPECT_EQ(get("u8"), (std::vector<float>{0.0f, 200.0f}));
  EXPECT_EQ(get("i64"), (std::vector<float>{-1099511627776.0f}));
  EXPECT_EQ(f->FindTensor("nope"), nullptr);
}

// Quantize with the reference quantizer, store, read back: ReadAsF32 equals
// the reference dequantization bit for bit.
TEST(FormatRoundTrip, QuantizedTensorsEveryGranularity) {
  const uint64_t rows = 6, cols = 20;
  const auto x = testing::PatternF32(rows * cols, 3);
  const std::vector<QuantInfo> qs = {
      {ScaleGranularity::kPerTensor, 0, false}, {ScaleGranularity::kPerChannel, 0, false},
      {ScaleGranularity::kPerGroup, 8, false},  {ScaleGranularity::kPerGroup, 8, true},
      {ScaleGranularity::kPerChannel, 0, true}};
  for (size_t k = 0; k < qs.size(); ++k) {
    for (TensorType type : {TensorType::kQ8, TensorType::kQ4}) {
      const QuantInfo q = qs[k];
      if (type == TensorType::kQ8 && q.has_zero_point) continue;
      auto qt = type == TensorType::kQ8 ? QuantizeQ8(x, rows, cols, q) : QuantizeQ4(x, rows, cols, q);
      ASSERT_TRUE(qt.ok());
      std::vector<float> ref(rows * cols);
      Status st = type == TensorType::kQ8
                      ? DequantizeQ8(qt->codes, qt->scales, rows, cols, q, ref)
                      : DequantizeQ4(qt->codes, qt->scales, qt->zeros, rows, cols, q, ref);
      ASSERT_TRUE(st.ok());
      SsmqWriter w;
      const int64_t ns = static_cast<int64_t>(qt->scales.size());
      ASSERT_TRUE(w.AddTensor(Info("w", type, {2, 3, static_cast<int64_t>(cols)}, q), qt->codes).ok());
      ASSERT_TRUE(w.AddTensor(Info("w.scale", TensorType::kF32, {ns}), {reinterpret_cast<const uint8_t*>(qt->scales.data()), qt->scales.size() * 4}).ok());
      if (q.has_zero_point) {
        ASSERT_TRUE(w.AddTensor(Info("w.zero", TensorType::kU8, {ns}), qt->zeros).ok());
      }
      const auto bytes = Bytes(w);
      auto f = Open(bytes);
      ASSERT_TRUE(f);
      const TensorInfo* t = f->FindTensor("w");
      EXPECT_EQ(t->quant.granularity, q.granularity);
      EXPECT_EQ(t->quant.group_size, q.group_size);
      EXPECT_EQ(t->quant.has_zero_point, q.has_zero_point);
      auto back = f->ReadAsF32(*t);
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      EXPECT_EQ(*back, ref) << "case " << k << " type " << TensorTypeName(type);
    }
  }
}

TEST(FormatRoundTrip, EveryMetadataTypeAndEdgeValue) {
  SsmqWriter w;
  testing::AddGoldenMetadata(w.metadata());
  w.metadata().Set("test.f64_nan", MetaValue::F64(std::nan("")));
  w.metadata().Set("test.f32_neg_zero", MetaValue::F32(-0.0f));
  w.metadata().Set("test.big_string", MetaValue::String(std::string(100000, 'x')));
  const auto bytes = Bytes(w);
  auto f = Open(bytes);
  ASSERT_TRUE(f);
  const Metadata& in = w.metadata();
  const Metadata& out = f->metadata();
  ASSERT_EQ(in.size(), out.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const auto& a = in.entries()[i];
    const auto& b = out.entries()[i];
    EXPECT_EQ(a.key, b.key);
    EXPECT_EQ(a.value.type, b.value.type) << a.key;
    if (a.value.type == MetaType::kArray) {
      EXPECT_EQ(a.value.elem_type, b.value.elem_type) << a.key;
    }
    if (a.key == "test.f64_nan") {
      EXPECT_TRUE(std::isnan(std::get<double>(b.value.v)));
    } else {
      EXPECT_TRUE(a.value.v == b.value.v) << a.key << ": " << b.value.ToDisplayString();
    }
  }
  EXPECT_TRUE(std::signbit(std::get<double>(out.Find("test.f32_neg_zero")->v)));
  EXPECT_EQ(*out.GetInt("test.i64"), INT64_MIN);
  EXPECT_EQ(out.GetInt("test.u64").status().code(), StatusCode::kTypeMismatch);  // 2^64-1 > int64
  EXPECT_EQ(*out.Find("test.u64")->AsUInt(), UINT64_MAX);
  EXPECT_EQ(*out.GetDouble("test.u8"), 255.0);
  EXPECT_EQ(*out.GetBool("test.bool"), true);
  EXPECT_EQ(*out.GetString("general.name"), "golden \xC3\xA9\xE2\x82\xAC");
  EXPECT_EQ(out.GetString("test.u8").status().code(), StatusCode::kTypeMismatch);
  EXPECT_EQ(out.GetInt("missing.key").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(out.Find("test.i8")->AsUInt().status().code(), StatusCode::kTypeMismatch);
  EXPECT_EQ(out.Find("test.array_u8")->ToDisplayString(), "[0, 1, 255] (3 items)");
}

TEST(FormatRoundTrip, WriterRejectsBadMetadataAndTensors) {
  {
    SsmqWriter w;
    MetaValue m = MetaValue::U8(1);
    m.v = uint64_t{300};
    w.metadata().Set("a.b", m);
    EXPECT_EQ(w.WriteBuffer().status().code(), StatusCode::kInvalidArgument);
  }
  {
    SsmqWriter w;
    w.metadata().Set("Bad.Key", MetaValue::U32(1));
    EXPECT_EQ(w.WriteBuffer().status().code(), StatusCode::kInvalidArgument);
  }
  {
    SsmqWriter w;
    w.metadata().Set("nested", MetaValue::ArrayOf(MetaType::kArray, std::vector<uint64_t>{}));
    EXPECT_EQ(w.WriteBuffer().status().code(), StatusCode::kInvalidArgument);
  }
  {
    SsmqWriter w;
    w.metadata().Set("bad.utf8", MetaValue::String("\xC0\x80"));
    EXPECT_EQ(w.WriteBuffer().status().code(), StatusCode::kInvalidArgument);
  }
  SsmqWriter w;
  std::vector<uint8_t> four(4);
  ASSERT_TRUE(w.AddTensor(Info("a", TensorType::kF32, {1}), four).ok());
  EXPECT_EQ(w.AddTensor(Info("a", TensorType::kF32, {1}), four).code(), StatusCode::kDuplicateTensor);
  EXPECT_EQ(w.AddTensor(Info("b", TensorType::kF32, {2}), four).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor(Info("c", TensorType::kF32, {-1}), four).code(), StatusCode::kBadTensorInfo);
  EXPECT_EQ(w.AddTensor(Info("d", TensorType::kF32, {1, 1, 1, 1, 1, 1, 1, 1, 1}), four).code(), StatusCode::kBadTensorInfo);
  EXPECT_EQ(w.AddTensor(Info("", TensorType::kF32, {1}), four).code(), StatusCode::kBadTensorInfo);
  EXPECT_EQ(w.AddTensor(Info("x\ny", TensorType::kF32, {1}), four).code(), StatusCode::kBadTensorInfo);
  EXPECT_EQ(w.AddTensor(Info(std::string(4097, 'n'), TensorType::kF32, {1}), four).code(), StatusCode::kLimitExceeded);
  EXPECT_EQ(w.AddTensor(Info("q4odd", TensorType::kQ4, {2, 3}, {ScaleGranularity::kPerTensor, 0, false}), four).code(),
            StatusCode::kBadTensorInfo);
  EXPECT_EQ(w.AddTensor(Info("q8zero", TensorType::kQ8, {4}, {ScaleGranularity::kPerTensor, 0, true}), four).code(),
            StatusCode::kBadTensorInfo);
  EXPECT_EQ(w.AddTensor(Info("f32quant", TensorType::kF32, {1}, {ScaleGranularity::kPerTensor, 0, false}), four).code(),
            StatusCode::kBadTensorInfo);
  // A quantized tensor without its scale tensor cannot be written.
  ASSERT_TRUE(w.AddTensor(Info("q", TensorType::kQ8, {4}, {ScaleGranularity::kPerTensor, 0, false}), four).ok());
  EXPECT_EQ(w.WriteBuffer().status().code(), StatusCode::kBadTensorInfo);
  ASSERT_TRUE(w.AddTensor(Info("q.scale", TensorType::kF32, {1}), four).ok());
  EXPECT_TRUE(w.WriteBuffer().ok());
  EXPECT_EQ(SsmqWriter(48).WriteBuffer().status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SsmqWriter(16).WriteBuffer().status().code(), StatusCode::kInvalidArgument);
}

TEST(FormatRoundTrip, DeterministicAndFileEqualsBuffer) {
  const auto a = Bytes(testing::MakeGoldenBasicWriter());
  const auto b = Bytes(testing::MakeGoldenBasicWriter());
  EXPECT_EQ(a, b);
  const std::string dir = testing::MakeTempDir("roundtrip");
  const std::string path = dir + "/model.ssmq";
  SsmqWriter w = testing::MakeGoldenBasicWriter();
  uint64_t last_done = 0, last_total = 1, calls = 0;
  ASSERT_TRUE(w.WriteFile(path, [&](uint64_t done, uint64_t total) {
                 EXPECT_GE(done, last_done);
                 last_done = done;
                 last_total = total;
                 ++calls;
               }).ok());
  EXPECT_EQ(last_done, last_total);
  EXPECT_GT(calls, 1u);
  EXPECT_EQ(testing::ReadFileBytes(path), a);
  // No temp file left behind.
  int n_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++n_files;
  }
  EXPECT_EQ(n_files, 1);
  // Padding and reserved bytes are zero: the head's tail before data_offset.
  auto f = Open(a);
  ASSERT_TRUE(f);
  const uint64_t dir_end = f->header().directory_offset + f->header().directory_size;
  for (uint64_t i = dir_end; i < f->header().data_offset; ++i) ASSERT_EQ(a[i], 0) << i;
}

TEST(FormatRoundTrip, OpenMmapKeepsMappingAndAlignment) {
  const std::string path = testing::MakeTempDir("mmap") + "/m.ssmq";
  ASSERT_TRUE(testing::MakeGoldenBasicWriter().WriteFile(path).ok());
  auto r = SsmqFile::OpenMmap(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto& f = *r;
  for (const auto& t : f->tensors()) {
    auto v = f->TensorData(t, true);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    if (!v->empty()) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(v->data()) % 64, 0u) << t.name;
    }
  }
  EXPECT_EQ(f->raw_bytes().size(), f->header().file_size);
  EXPECT_EQ(SsmqFile::OpenMmap(path + ".missing").status().code(), StatusCode::kNotFound);
  const std::string empty = testing::MakeTempDir("mmap") + "/empty.ssmq";
  testing::WriteFileBytes(empty, {});
  EXPECT_EQ(SsmqFile::OpenMmap(empty).status().code(), StatusCode::kTruncated);
}

TEST(FormatRoundTrip, FailedWriteLeavesTargetUntouched) {
  const std::string dir = testing::MakeTempDir("atomic");
  const std::string path = dir + "/keep.ssmq";
  testing::WriteFileBytes(path, {1, 2, 3});
  SsmqWriter bad;
  bad.metadata().Set("BAD", MetaValue::U32(1));
  EXPECT_EQ(bad.WriteFile(path).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(testing::ReadFileBytes(path), (std::vector<uint8_t>{1, 2, 3}));
  int n_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++n_files;
  }
  EXPECT_EQ(n_files, 1) << "temp file left behind";
  EXPECT_EQ(SsmqWriter().WriteFile(dir + "/no/such/dir/x.ssmq").code(), StatusCode::kIoError);
}

TEST(FormatRoundTrip, ZstdCompressedTensors) {
  SsmqWriter w = testing::MakeGoldenZstdWriter();
  const auto bytes = Bytes(w);
  auto f = Open(bytes);
  ASSERT_TRUE(f);
  const TensorInfo* c = f->FindTensor("z.compressible");
  const TensorInfo* u = f->FindTensor("z.incompressible");
  ASSERT_TRUE(c && u);
  EXPECT_EQ(c->compression, Compression::kZstd);
  EXPECT_LT(c->stored_size, c->size / 4);
  EXPECT_EQ(u->compression, Compression::kNone) << "not stored compressed when it does not save space";
  auto v1 = f->TensorData(*c);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_EQ(std::vector<uint8_t>(v1->begin(), v1->end()), AsBytes(testing::ZstdCompressibleValues()));
  auto v2 = f->TensorData(*c);
  EXPECT_EQ(v1->data(), v2->data()) << "decompressed once, cached";
  EXPECT_EQ(*f->ReadAsF32(*c), testing::ZstdCompressibleValues());
  EXPECT_TRUE(f->ValidateAll().empty());
}

TEST(FormatRoundTrip, CorruptZstdStreamIsCompressionOrChecksumError) {
  const auto good = Bytes(testing::MakeGoldenZstdWriter());
  auto f = Open(good);
  ASSERT_TRUE(f);
  const TensorInfo c = *f->FindTensor("z.compressible");
  int compression = 0, checksum = 0;
  for (uint64_t i = 0; i < c.stored_size; ++i) {
    auto bad = good;
    bad[c.offset + i] ^= 0x5A;  // data bytes are not covered by the index checksum
    auto g = Open(bad);
    ASSERT_TRUE(g);
    auto r = g->TensorData(*g->FindTensor("z.compressible"));
    ASSERT_FALSE(r.ok()) << "flip at " << i;
    const StatusCode code = r.status().code();
    ASSERT_TRUE(code == StatusCode::kCompression || code == StatusCode::kChecksumMismatch)
        << r.status().ToString();
    EXPECT_NE(r.status().message().find("z.compressible"), std::string::npos);
    (code == StatusCode::kCompression ? compression : checksum)++;
  }
  EXPECT_GT(compression, 0);
}

}  // namespace
}  // namespace ssmq
