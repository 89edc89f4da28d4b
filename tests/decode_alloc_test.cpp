// The decode loop does not allocate: after a warm-up step, Runtime::Step
// reuses its scratch buffers, the state and the caller's logits vector. A
// global operator new counts every heap allocation of this test program.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "convert/recipe.h"
#include "runtime_cpu/runtime.h"
#include "tests/test_util.h"

namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

// The replacement pair is malloc/free underneath; GCC cannot see that a
// replaced operator new is malloc-backed and warns about the free.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
// The nothrow forms too (std::stable_sort's buffer), so every allocation the
// deletes below free came from malloc.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace ssmq {
namespace {

// Allocations made by `steps` decode steps of batch `batch` after a prefill
// and two warm-up steps.
int64_t StepAllocations(const Model& model, int64_t batch, int n_threads, int steps) {
  auto rt = Runtime::Create(model, n_threads);
  EXPECT_TRUE(rt.ok()) << rt.status().ToString();
  if (!rt.ok()) return -1;
  RecurrentState state = (*rt)->NewState(batch);
  std::vector<int32_t> prompt(static_cast<size_t>(batch * 16));
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(7 * i % 200);
  std::vector<float> logits;
  EXPECT_TRUE((*rt)->Prefill(prompt, batch, 16, state, logits).ok());
  std::vector<int32_t> tok(static_cast<size_t>(batch), 5);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE((*rt)->Step(tok, state, logits).ok());
  const int64_t before = g_allocations.load();
  for (int i = 0; i < steps; ++i) {
    tok.assign(tok.size(), static_cast<int32_t>(11 + i));
    EXPECT_TRUE((*rt)->Step(tok, state, logits).ok());
  }
  return g_allocations.load() - before;
}

TEST(DecodeLoop, DoesNotAllocate) {
  Model m1 = testing::FixtureModel("mamba1-tiny");  // f32 weights
  Model m2 = testing::FixtureModel("mamba2-tiny");  // bf16 weights, kept 16-bit
  Model m1_w4 = testing::FixtureModel("mamba1-tiny");
  QuantRecipeOptions w4;
  w4.scheme = "w4a16";
  ASSERT_TRUE(ApplyQuantRecipe(m1_w4, w4).ok());
  Model m2_a8 = testing::FixtureModel("mamba2-tiny");
  QuantRecipeOptions a8;
  a8.scheme = "w8a8";
  const std::string calib_text =  // calib_text is a view: the text must outlive the call
      testing::ReadFileText(testing::FixturesDir() + "/data/tinyshakespeare.txt");
  a8.calib_text = calib_text;
  a8.calib.samples = 2;
  a8.calib.seqlen = 64;
  ASSERT_TRUE(ApplyQuantRecipe(m2_a8, a8).ok());
  const struct {
    const char* name;
    const Model* model;
  } cases[] = {{"mamba1 f32", &m1}, {"mamba2 bf16", &m2}, {"mamba1 w4a16", &m1_w4},
               {"mamba2 w8a8", &m2_a8}};
  for (const auto& c : cases) {
    for (int64_t batch : {1, 3}) {
      for (int threads : {1, 2}) {
        EXPECT_EQ(StepAllocations(*c.model, batch, threads, 8), 0)
            << c.name << ", batch " << batch << ", " << threads << " threads";
      }
    }
  }
}

}  // namespace
}  // namespace ssmq
