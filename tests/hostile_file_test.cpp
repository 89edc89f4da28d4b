// Hostile .ssmq files through the C API, as another runtime would meet them:
// a valid quantized fixture file is mutated (typed metadata values, directory
// bytes, the small tensors a loader trusts: permutations, head groups, scales;
// random data bytes), its checksums are re-sealed so the mutation reaches the
// code behind them, and it is opened from memory, run for a few tokens and
// tokenized. Every case must end in SSMQ_OK or a typed status with a message:
// under the ASan/UBSan preset any out-of-bounds access, overflow or abort
// fails the suite. A deterministic slice of the campaign that found the
// n_layer and chunk_size bugs (model_io_test keeps those two as exact cases).
#include "include/ssmq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "convert/recipe.h"
#include "format/ssmq_file.h"
#include "format/ssmq_layout.h"
#include "model/model_io.h"
#include "tests/format_test_files.h"
#include "tests/test_util.h"

namespace {

using ssmq::testing::Peek;
using ssmq::testing::Poke;

// Where a mutation can land: one scalar metadata value (or an array count),
// or one small tensor's bytes.
struct MetaValue {
  uint64_t at;
  uint32_t type;  // metadata value type id (spec §4); kArrayCount for an array's count
};
constexpr uint32_t kArrayCount = 100;
struct TensorRange {
  uint64_t at, bytes;
  ssmq::TensorType type;
};

// Scalar values and array counts of the metadata section (spec §4 encoding;
// the file is valid, so no bounds checks are needed here).
std::vector<MetaValue> MetadataValues(const std::vector<uint8_t>& b, uint64_t at) {
  static constexpr int kScalarBytes[] = {1, 1, 2, 2, 4, 4, 8, 8, 4, 8, 1};
  std::vector<MetaValue> out;
  const uint64_t count = Peek<uint64_t>(b, at);
  at += 8;
  for (uint64_t i = 0; i < count; ++i) {
    at += 4 + Peek<uint32_t>(b, at);  // key
    const uint32_t type = Peek<uint32_t>(b, at);
    at += 4;
    if (type <= 10) {
      out.push_back({at, type});
      at += kScalarBytes[type];
    } else if (type == 11) {
      out.push_back({at, type});
      at += 8 + Peek<uint64_t>(b, at);
    } else {
      const uint32_t elem = Peek<uint32_t>(b, at);
      const uint64_t n = Peek<uint64_t>(b, at + 4);
      out.push_back({at + 4, kArrayCount});
      at += 12;
      for (uint64_t k = 0; k < n; ++k) {
        if (elem <= 10) {
          if (k < 8) out.push_back({at, elem});
          at += kScalarBytes[elem];
        } else {
          at += 8 + Peek<uint64_t>(b, at);
        }
      }
    }
  }
  return out;
}

class Mutator {
 public:
  Mutator(const std::vector<uint8_t>& file, uint64_t seed) : file_(file), rng_(seed) {
    auto f = ssmq::SsmqFile::OpenBuffer(file);
    EXPECT_TRUE(f.ok());
    const ssmq::FileHeader& h = (*f)->header();
    meta_ = MetadataValues(file, h.metadata_offset);
    dir_at_ = h.directory_offset;
    dir_size_ = h.directory_size;
    data_at_ = h.data_offset;
    data_size_ = h.data_size;
    for (const ssmq::TensorInfo& t : (*f)->tensors()) {
      if (t.stored_size >= 4 && t.stored_size <= 16384) small_.push_back({t.offset, t.stored_size, t.type});
    }
  }

  std::vector<uint8_t> Next() {
    std::vector<uint8_t> b = file_;
    const int what = static_cast<int>(rng_() % 5);
    for (int m = 0, n = 1 + static_cast<int>(rng_() % 3); m < n; ++m) {
      switch (what) {
        case 0:
        case 1: MutateMetadata(b); break;
        case 2: b[dir_at_ + rng_() % dir_size_] ^= static_cast<uint8_t>(1u << (rng_() % 8)); break;
        case 3: MutateSmallTensor(b); break;
        default: b[data_at_ + rng_() % data_size_] = static_cast<uint8_t>(rng_()); break;
      }
    }
    EXPECT_TRUE(ssmq::ResealChecksums(std::span<uint8_t>(b)).ok());
    return b;
  }

 private:
  template <class T, size_t N>
  T Pick(const T (&values)[N]) {
    return values[rng_() % N];
  }

  void MutateMetadata(std::vector<uint8_t>& b) {
    static constexpr int64_t kInts[] = {0, 1, -1, 2, 3, 7, 16, 64, 127, 128, 255, 256, 4096,
                                        4097, int64_t{1} << 20, INT32_MAX, INT32_MIN,
                                        int64_t{1} << 40, INT64_MAX, INT64_MIN};
    constexpr float kInf = std::numeric_limits<float>::infinity();
    const double floats[] = {0.0, -0.0, 1.0, -1.0, 1e-30, 1e30, 1e300, std::nan(""), kInf, -kInf};
    const MetaValue& v = meta_[rng_() % meta_.size()];
    const int64_t i = Pick(kInts);
    const double d = Pick(floats);
    switch (v.type) {
      case 0: case 1: case 10: b[v.at] = static_cast<uint8_t>(i); break;
      case 2: case 3: Poke<uint16_t>(b, v.at, static_cast<uint16_t>(i)); break;
      case 4: case 5: Poke<uint32_t>(b, v.at, static_cast<uint32_t>(i)); break;
      case 6: case 7: Poke<uint64_t>(b, v.at, static_cast<uint64_t>(i)); break;
      case 8: Poke<float>(b, v.at, static_cast<float>(d)); break;
      case 9: Poke<double>(b, v.at, d); break;
      case 11: {
        const uint64_t len = Peek<uint64_t>(b, v.at);
        if (len) b[v.at + 8 + rng_() % len] = static_cast<uint8_t>(Pick("ab.0_Z\"{}\xff\x80"));
        break;
      }
      case kArrayCount: Poke<uint64_t>(b, v.at, Peek<uint64_t>(b, v.at) + rng_() % 3 - 1); break;
    }
  }

  // Permutations and groups get indices at and past their bounds, duplicates
  // and negatives; scales get NaN, infinities, zero, negatives, huge and
  // denormal values.
  void MutateSmallTensor(std::vector<uint8_t>& b) {
    static constexpr int32_t kIndices[] = {-1, 0, 1, 2, 15, 16, 255, 256, 511, 512, INT32_MAX,
                                           INT32_MIN, 1 << 20};
    constexpr float kInf = std::numeric_limits<float>::infinity();
    const float scales[] = {0.0f, -0.0f, -1.0f, std::nanf(""), kInf, -kInf, 1e30f, 1e-40f};
    const TensorRange& r = small_[rng_() % small_.size()];
    const uint64_t at = r.at + (rng_() % (r.bytes / 4)) * 4;
    if (r.type == ssmq::TensorType::kI32) {
      Poke<int32_t>(b, at, rng_() % 3 ? Pick(kIndices)
                                      : Peek<int32_t>(b, r.at + (rng_() % (r.bytes / 4)) * 4));
    } else if (r.type == ssmq::TensorType::kF32) {
      Poke<float>(b, at, Pick(scales));
    } else {
      b[at + rng_() % 4] = static_cast<uint8_t>(rng_());
    }
  }

  const std::vector<uint8_t>& file_;
  std::mt19937_64 rng_;
  std::vector<MetaValue> meta_;
  std::vector<TensorRange> small_;
  uint64_t dir_at_ = 0, dir_size_ = 0, data_at_ = 0, data_size_ = 0;
};

struct Outcome {
  int opened = 0, ran = 0;
};

// Opens, runs and tokenizes one case; any failure must be typed and explained.
void RunCase(const std::vector<uint8_t>& b, Outcome& out) {
  auto typed = [](ssmq_status st, const char* call) {
    if (st == SSMQ_OK) return true;
    EXPECT_STRNE(ssmq_status_name(st), "") << call;
    EXPECT_STRNE(ssmq_last_error(), "") << call << ": " << ssmq_status_name(st);
    return false;
  };
  ssmq_model* model = nullptr;
  if (!typed(ssmq_model_open_memory(b.data(), b.size(), &model), "open")) return;
  ++out.opened;
  ssmq_context* ctx = nullptr;
  if (typed(ssmq_context_create(model, 1, &ctx), "context")) {
    ++out.ran;
    const int32_t prompt[] = {1, 2, 3, 100, 7};
    if (typed(ssmq_context_feed(ctx, prompt, 5), "feed")) {
      int32_t next = 0;
      if (typed(ssmq_context_greedy_token(ctx, &next), "greedy")) {
        typed(ssmq_context_feed(ctx, &next, 1), "feed one");
      }
    }
    ssmq_context_free(ctx);
  }
  int32_t ids[64];
  size_t n = 0;
  typed(ssmq_tokenize(model, "hello world", 11, ids, 64, &n), "tokenize");
  ssmq_model_free(model);
}

std::vector<uint8_t> QuantizedFixture(const char* name, const char* scheme, const char* recipe) {
  ssmq::Model m = ssmq::testing::FixtureModel(name);
  const std::string text =
      ssmq::testing::ReadFileText(ssmq::testing::FixturesDir() + "/data/tinyshakespeare.txt");
  ssmq::QuantRecipeOptions q;
  q.scheme = scheme;
  q.recipe = recipe;
  q.calib_text = text;
  q.calib.samples = 2;
  EXPECT_TRUE(ssmq::ApplyQuantRecipe(m, q).ok());
  const std::string path = ssmq::testing::MakeTempDir("hostile") + "/m.ssmq";
  EXPECT_TRUE(ssmq::SaveModel(m, path).ok());
  return ssmq::testing::ReadFileBytes(path);
}

struct HostileCase {
  const char* model;
  const char* scheme;
  const char* recipe;
};

void PrintTo(const HostileCase& c, std::ostream* os) {
  *os << c.model << " " << c.scheme << " (" << c.recipe << ")";
}

class HostileFile : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostileFile, ResealedMutationsEndInTypedStatuses) {
  const HostileCase& c = GetParam();
  const std::vector<uint8_t> file = QuantizedFixture(c.model, c.scheme, c.recipe);
  Outcome intact;
  RunCase(file, intact);
  ASSERT_EQ(intact.ran, 1) << "the unmutated file must run";

  constexpr int kCases = 150;
  Mutator mutate(file, /*seed=*/20261203);
  Outcome out;
  for (int i = 0; i < kCases; ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    RunCase(mutate.Next(), out);
    if (HasFailure()) break;
  }
  // The campaign must reach the runtime, not only the loader's refusals.
  EXPECT_GT(out.ran, kCases / 10);
  std::printf("%s %s (%s): %d cases, %d opened, %d ran tokens\n", c.model, c.scheme, c.recipe,
              kCases, out.opened, out.ran);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, HostileFile,
    ::testing::Values(HostileCase{"mamba2-tiny", "w4a8", "quamba"},
                      HostileCase{"mamba1-tiny", "w8a8", "ssmq"},
                      HostileCase{"mamba1-tiny", "w4a16", "ssmq"}),
    [](const auto& info) {
      return std::string(info.param.model[5] == '2' ? "mamba2_" : "mamba1_") +
             info.param.scheme + "_" + info.param.recipe;
    });

}  // namespace
