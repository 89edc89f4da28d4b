// Byte-level BPE tokenizer against Hugging Face `tokenizers` 0.23: the
// reference vectors in the fixtures' ref.json, edge-case vectors and the whole
// tinyshakespeare text (goldens in tests/data/tokenizer, see its README), the
// val-split convention behind the reference perplexities, and bad inputs.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace ssmq {
namespace {

using nlohmann::json;
using testing::FixtureModelDir;
using testing::FixtureReferenceDir;
using testing::FixturesDir;
using testing::ReadFileBytes;
using testing::ReadFileText;
using testing::TestDir;

std::string FixtureTokenizerJson() {
  return ReadFileText(FixtureModelDir("mamba1-tiny") + "/tokenizer.json");
}

std::unique_ptr<Tokenizer> LoadTokenizer(const std::string& text) {
  auto result = Tokenizer::FromJson(text);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return result.ok() ? std::move(result).value() : nullptr;
}

std::unique_ptr<Tokenizer> FixtureTokenizer() { return LoadTokenizer(FixtureTokenizerJson()); }

// A golden of uint16 little-endian ids.
std::vector<int32_t> ReadU16Ids(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFileBytes(path);
  std::vector<int32_t> ids(bytes.size() / 2);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = bytes[2 * i] | (bytes[2 * i + 1] << 8);
  return ids;
}

std::string Shakespeare() { return ReadFileText(FixturesDir() + "/data/tinyshakespeare.txt"); }

// Python's text[int(0.9 * len(text)):], len counting code points.
std::string ValSplit(const std::string& text) {
  size_t n_chars = 0;
  for (char c : text) n_chars += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  const size_t first_val_char = static_cast<size_t>(0.9 * static_cast<double>(n_chars));
  size_t chars_seen = 0;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    if ((static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) continue;
    if (chars_seen++ == first_val_char) return text.substr(pos);
  }
  return std::string();
}

// input_ids int64 [2, 64] of ref.safetensors: 8-byte LE header length, JSON header, data.
std::vector<std::vector<int32_t>> ReferenceInputIds(const std::string& model) {
  const std::vector<uint8_t> file = ReadFileBytes(FixtureReferenceDir(model) + "/ref.safetensors");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);
  const json header = json::parse(file.begin() + 8, file.begin() + 8 + header_len);
  const json& info = header.at("input_ids");
  EXPECT_EQ(info.at("dtype"), "I64");
  const auto shape = info.at("shape").get<std::vector<size_t>>();
  const size_t begin = 8 + header_len + info.at("data_offsets")[0].get<size_t>();
  std::vector<std::vector<int32_t>> rows(shape[0], std::vector<int32_t>(shape[1]));
  for (size_t r = 0; r < shape[0]; ++r) {
    for (size_t c = 0; c < shape[1]; ++c) {
      int64_t v;
      std::memcpy(&v, file.data() + begin + 8 * (r * shape[1] + c), 8);
      rows[r][c] = static_cast<int32_t>(v);
    }
  }
  return rows;
}

void ExpectVectorsMatch(const Tokenizer& tok, const json& vectors, const std::string& source) {
  ASSERT_TRUE(vectors.is_array());
  for (size_t i = 0; i < vectors.size(); ++i) {
    const std::string text = vectors[i].at("text").get<std::string>();
    const auto expected = vectors[i].at("ids").get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = tok.Encode(text);
    EXPECT_EQ(ids, expected) << source << " vector " << i << ": \"" << text.substr(0, 80) << "\"";
    EXPECT_EQ(tok.Decode(ids), text) << source << " vector " << i;
  }
}

TEST(TokenizerTest, FixtureBasics) {
  auto tok = FixtureTokenizer();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 2048);
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_EQ(tok->eos_id(), 0);
  EXPECT_EQ(tok->DecodeToken(0), "<|endoftext|>");
  EXPECT_EQ(tok->DecodeToken(221), " ");   // "Ġ"
  EXPECT_EQ(tok->DecodeToken(199), "\n");  // "Ċ"
  EXPECT_EQ(tok->DecodeToken(-1), "");
  EXPECT_EQ(tok->DecodeToken(2048), "");
  const std::vector<int32_t> with_bad_ids = {814, 5000, -7, 26};
  EXPECT_EQ(tok->Decode(with_bad_ids), "ROMEO:");
  // The 256 byte tokens decode to all 256 bytes.
  std::vector<uint8_t> all_bytes;
  for (int id = 1; id <= 256; ++id) {
    for (char c : tok->DecodeToken(id)) all_bytes.push_back(static_cast<uint8_t>(c));
  }
  ASSERT_EQ(all_bytes.size(), 256u);
  std::sort(all_bytes.begin(), all_bytes.end());
  for (int b = 0; b < 256; ++b) EXPECT_EQ(all_bytes[b], b);
}

TEST(TokenizerTest, ReferenceVectorsOfBothFixtures) {
  auto tok = FixtureTokenizer();
  ASSERT_NE(tok, nullptr);
  for (const char* model : {"mamba1-tiny", "mamba2-tiny"}) {
    const json ref = json::parse(ReadFileText(FixtureReferenceDir(model) + "/ref.json"));
    ExpectVectorsMatch(*tok, ref.at("tokenizer_vectors"), model);
    const json& greedy = ref.at("greedy");
    EXPECT_EQ(tok->Encode(greedy.at("prompt").get<std::string>()),
              greedy.at("prompt_ids").get<std::vector<int32_t>>());
    EXPECT_EQ(tok->Decode(greedy.at("ids").get<std::vector<int32_t>>()),
              greedy.at("text").get<std::string>());
  }
  // mamba2-tiny ships the same tokenizer.json.
  EXPECT_EQ(FixtureTokenizerJson(), ReadFileText(FixtureModelDir("mamba2-tiny") + "/tokenizer.json"));
}

TEST(TokenizerTest, EdgeCaseVectors) {
  // Whitespace kinds, contractions, Unicode letters/numbers/marks, emoji,
  // added-token placements and a sweep over every 7th code point to U+30000.
  auto tok = FixtureTokenizer();
  ASSERT_NE(tok, nullptr);
  const json vectors = json::parse(ReadFileText(TestDir() + "/data/tokenizer/extra_vectors.json"));
  EXPECT_GT(vectors.size(), 150u);
  ExpectVectorsMatch(*tok, vectors, "extra_vectors.json");
}

TEST(TokenizerTest, WholeShakespeareMatchesTokenizers) {
  auto tok = FixtureTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string text = Shakespeare();
  ASSERT_EQ(text.size(), 1115394u);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok->Encode(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ timing ] Encode of the whole text (" << text.size() << " bytes, " << ids.size()
            << " ids, cold cache): " << seconds * 1e3 << " ms\n";
  RecordProperty("encode_ms", static_cast<int>(seconds * 1e3));
  const std::vector<int32_t> expected = ReadU16Ids(TestDir() + "/data/tokenizer/shakespeare_all.u16");
  ASSERT_EQ(ids.size(), expected.size());
  size_t first_diff = 0;
  while (first_diff < ids.size() && ids[first_diff] == expected[first_diff]) ++first_diff;
  EXPECT_EQ(first_diff, ids.size()) << "first differing id at position " << first_diff;
  EXPECT_EQ(tok->Decode(ids), text);
#ifdef NDEBUG  // optimized builds only: sanitizer/debug builds are several times slower
  EXPECT_LT(seconds, 2.0);
#endif
}

TEST(TokenizerTest, ValSplitPinsThePerplexityConvention) {
  auto tok = FixtureTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::vector<int32_t> val_ids = tok->Encode(ValSplit(Shakespeare()));
  EXPECT_EQ(val_ids, ReadU16Ids(TestDir() + "/data/tokenizer/shakespeare_val.u16"));
  // 170 windows of 256 tokens, 255 scored each = 43,350 scored tokens.
  EXPECT_GE(val_ids.size(), 170u * 256u);
  EXPECT_LT(val_ids.size(), 171u * 256u);
  ASSERT_GE(val_ids.size(), 1064u);
  for (const char* model : {"mamba1-tiny", "mamba2-tiny"}) {
    const auto rows = ReferenceInputIds(model);
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0], std::vector<int32_t>(val_ids.begin(), val_ids.begin() + 64)) << model;
    EXPECT_EQ(rows[1], std::vector<int32_t>(val_ids.begin() + 1000, val_ids.begin() + 1064)) << model;
  }
}

TEST(TokenizerTest, ConcurrentEncodeAgrees) {
  auto tok = FixtureTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string text = Shakespeare().substr(0, 200000);
  std::vector<std::vector<int32_t>> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] { results[t] = tok->Encode(text); });
  }
  for (auto& thread : threads) thread.join();
  // Same as one thread on a fresh tokenizer; and, but for the last word cut
  // by substr, the same as the whole-text golden.
  const std::vector<int32_t> serial = FixtureTokenizer()->Encode(text);
  const std::vector<int32_t> golden = ReadU16Ids(TestDir() + "/data/tokenizer/shakespeare_all.u16");
  ASSERT_GT(serial.size(), 1000u);
  EXPECT_TRUE(std::equal(serial.begin(), serial.end() - 4, golden.begin()));
  for (const auto& ids : results) EXPECT_EQ(ids, serial);
}

TEST(TokenizerTest, MergesAsStringsEqualMergesAsPairs) {
  json doc = json::parse(FixtureTokenizerJson());
  ASSERT_TRUE(doc["model"]["merges"][0].is_array());
  for (json& merge : doc["model"]["merges"]) {
    merge = merge[0].get<std::string>() + " " + merge[1].get<std::string>();
  }
  auto as_strings = LoadTokenizer(doc.dump());
  auto as_pairs = FixtureTokenizer();
  ASSERT_NE(as_strings, nullptr);
  const std::string text = Shakespeare().substr(0, 50000);
  EXPECT_EQ(as_strings->Encode(text), as_pairs->Encode(text));
}

TEST(TokenizerTest, PreTokenizerOptions) {
  auto plain = FixtureTokenizer();
  json doc = json::parse(FixtureTokenizerJson());
  doc["pre_tokenizer"]["add_prefix_space"] = true;
  auto prefixed = LoadTokenizer(doc.dump());
  ASSERT_NE(prefixed, nullptr);
  // A prefix space goes before each plain segment that lacks one, not after added tokens' text.
  EXPECT_EQ(prefixed->Encode("Now is"), plain->Encode(" Now is"));
  EXPECT_EQ(prefixed->Encode(" Now"), plain->Encode(" Now"));
  std::vector<int32_t> expected = {0};
  for (int32_t id : plain->Encode(" KING")) expected.push_back(id);
  EXPECT_EQ(prefixed->Encode("<|endoftext|>KING"), expected);

  doc["pre_tokenizer"]["add_prefix_space"] = false;
  doc["pre_tokenizer"]["use_regex"] = false;
  auto no_regex = LoadTokenizer(doc.dump());
  ASSERT_NE(no_regex, nullptr);
  // Without the regex the whole text is one BPE word: merges may cross word boundaries.
  const std::string text = "the king, the queen";
  const std::vector<int32_t> ids = no_regex->Encode(text);
  EXPECT_EQ(no_regex->Decode(ids), text);
  EXPECT_LE(ids.size(), plain->Encode(text).size());
}

// A fixture tokenizer with one more added token, id 2048.
std::unique_ptr<Tokenizer> WithAddedToken(const json& token) {
  json doc = json::parse(FixtureTokenizerJson());
  json entry = {{"id", 2048}, {"content", "<mask>"}, {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  entry.update(token);
  doc["added_tokens"].push_back(entry);
  return LoadTokenizer(doc.dump());
}

std::vector<int32_t> Concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

TEST(TokenizerTest, AddedTokenFlags) {
  auto plain = FixtureTokenizer();
  const std::vector<int32_t> mask = {2048};
  {
    auto tok = WithAddedToken(json::object());
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->vocab_size(), 2049);
    EXPECT_EQ(tok->Encode("a <mask> b"), Concat({plain->Encode("a "), mask, plain->Encode(" b")}));
    EXPECT_EQ(tok->Decode(tok->Encode("x<mask><mask>")), "x<mask><mask>");
  }
  {
    auto tok = WithAddedToken({{"lstrip", true}, {"rstrip", true}});
    ASSERT_NE(tok, nullptr);
    // The spaces around the token are swallowed into it.
    EXPECT_EQ(tok->Encode("a \t<mask>  b"), Concat({plain->Encode("a"), mask, plain->Encode("b")}));
  }
  {
    auto tok = WithAddedToken({{"single_word", true}});
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->Encode("a <mask> b"), Concat({plain->Encode("a "), mask, plain->Encode(" b")}));
    EXPECT_EQ(tok->Encode("a<mask> b"), plain->Encode("a<mask> b"));
    EXPECT_EQ(tok->Encode("(<mask>)"), Concat({plain->Encode("("), mask, plain->Encode(")")}));
  }
  {
    // Leftmost-longest: "<mask>" wins over "<mask" at the same position.
    json doc = json::parse(FixtureTokenizerJson());
    doc["added_tokens"].push_back({{"id", 2048}, {"content", "<mask"}, {"normalized", true}});
    doc["added_tokens"].push_back({{"id", 2049}, {"content", "<mask>"}, {"normalized", true}});
    auto tok = LoadTokenizer(doc.dump());
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->Encode("<mask><mask!"), (std::vector<int32_t>{2049, 2048, 1}));  // '!' = id 1
  }
}

void ExpectError(const std::string& tokenizer_json, StatusCode code, const std::string& needle) {
  auto result = Tokenizer::FromJson(tokenizer_json);
  ASSERT_FALSE(result.ok()) << needle;
  EXPECT_EQ(result.status().code(), code) << result.status().ToString();
  EXPECT_NE(result.status().message().find(needle), std::string::npos) << result.status().ToString();
}

TEST(TokenizerTest, BadTokenizerJsonGivesTypedErrors) {
  ExpectError("this is not json", StatusCode::kParseError, "tokenizer.json");
  ExpectError("", StatusCode::kParseError, "tokenizer.json");
  ExpectError("[1, 2]", StatusCode::kParseError, "not an object");
  {
    auto result = Tokenizer::FromJson("{\"model\": {\"type\": \"BPE\",");
    ASSERT_FALSE(result.ok());
    EXPECT_TRUE(result.status().has_offset());
  }
  const json good = json::parse(FixtureTokenizerJson());
  json doc = good;
  doc.erase("model");
  ExpectError(doc.dump(), StatusCode::kParseError, "model");

  doc = good;
  doc["model"]["type"] = "Unigram";
  ExpectError(doc.dump(), StatusCode::kUnsupported, "Unigram");

  doc = good;
  doc["model"]["merges"].push_back({"Ġt", "nosuchtoken"});
  ExpectError(doc.dump(), StatusCode::kBadConfig, "nosuchtoken");

  doc = good;
  doc["model"]["merges"].push_back("a b c");
  ExpectError(doc.dump(), StatusCode::kParseError, "model.merges[1791]");

  doc = good;
  doc["model"]["merges"].push_back(42);
  ExpectError(doc.dump(), StatusCode::kParseError, "model.merges[1791]");

  doc = good;
  doc["model"]["vocab"] = "nope";
  ExpectError(doc.dump(), StatusCode::kParseError, "model.vocab");

  doc = good;
  doc["model"]["vocab"]["huge"] = 1 << 30;
  ExpectError(doc.dump(), StatusCode::kLimitExceeded, "huge");

  doc = good;
  doc["model"]["vocab"]["dup"] = 5;
  ExpectError(doc.dump(), StatusCode::kBadConfig, "id 5");

  doc = good;
  doc["model"]["unk_token"] = "<unk>";
  ExpectError(doc.dump(), StatusCode::kBadConfig, "<unk>");

  doc = good;
  doc["normalizer"] = {{"type", "NFC"}};
  ExpectError(doc.dump(), StatusCode::kUnsupported, "NFC");

  doc = good;
  doc["pre_tokenizer"] = {{"type", "Metaspace"}};
  ExpectError(doc.dump(), StatusCode::kUnsupported, "Metaspace");

  doc = good;
  doc["decoder"] = {{"type", "WordPiece"}};
  ExpectError(doc.dump(), StatusCode::kUnsupported, "WordPiece");

  doc = good;
  doc["post_processor"] = {{"type", "TemplateProcessing"}};
  ExpectError(doc.dump(), StatusCode::kUnsupported, "TemplateProcessing");

  doc = good;
  doc["added_tokens"][0]["id"] = "zero";
  ExpectError(doc.dump(), StatusCode::kParseError, "added_tokens[0]");

  doc = good;
  doc["pre_tokenizer"]["use_regex"] = "yes";
  ExpectError(doc.dump(), StatusCode::kParseError, "use_regex");
}

TEST(TokenizerTest, MalformedUtf8RoundTrips) {
  auto tok = FixtureTokenizer();
  ASSERT_NE(tok, nullptr);
  const std::string bytes = std::string("ab\xff\xfe cd \xc3 \xe2\x82 \xed\xa0\x80 ok", 20);
  EXPECT_EQ(tok->Decode(tok->Encode(bytes)), bytes);
}

}  // namespace
}  // namespace ssmq
