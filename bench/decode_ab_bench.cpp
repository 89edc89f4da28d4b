// Batch-1 decode speed of two runtime configurations of one model, measured
// in the same process, alternating blocks of steps: A, B, A, B, ... so that
// both see the same minutes of a machine whose bandwidth drifts (the dev VM:
// ±20% within a minute, enough to hide a 5% change between two runs).
//
//   decode_ab_bench FILE [--threads 2] [--blocks 32] [--block 8]
//                        [--a KEY=V,...] [--b KEY=V,...]
// KEY: team (RuntimeOptions::decode_team), idle (RuntimeOptions::idle_prefetch, 0/1),
// f16_state (0/1), tiles
// (RuntimeOptions::weight_tiles, 0/1), huge (RuntimeOptions::huge_pages, 0/1).
// Defaults: A team=0, B team=1. Prints each side's tokens/s over all its
// blocks, and the median over blocks of the B/A time ratio.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/model_io.h"
#include "runtime_cpu/runtime.h"

namespace {

bool ParseVariant(const std::string& text, ssmq::RuntimeOptions& o) {
  for (size_t p = 0; p < text.size();) {
    const size_t q = std::min(text.find(',', p), text.size());
    const std::string kv = text.substr(p, q - p);
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) return false;
    const std::string k = kv.substr(0, eq);
    const int v = std::atoi(kv.c_str() + eq + 1);
    if (k == "team") o.decode_team = v;
    else if (k == "idle") o.idle_prefetch = v != 0;
    else if (k == "f16_state") o.f16_state = v != 0;
    else if (k == "tiles") o.weight_tiles = v != 0;
    else if (k == "huge") o.huge_pages = v != 0;
    else return false;
    p = q + 1;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: decode_ab_bench FILE [--threads N] [--blocks N] [--block N] "
                 "[--a KEY=V,...] [--b KEY=V,...]\n");
    return 2;
  }
  const std::string file = argv[1];
  int threads = 2, blocks = 32, block = 8;
  std::string a_text = "team=0", b_text = "team=1";
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--blocks") blocks = std::atoi(v.c_str());
    else if (k == "--block") block = std::atoi(v.c_str());
    else if (k == "--a") a_text = v;
    else if (k == "--b") b_text = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  auto model = ssmq::LoadModel(file);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  ssmq::RuntimeOptions oa, ob;
  oa.n_threads = ob.n_threads = threads;
  if (!ParseVariant(a_text, oa) || !ParseVariant(b_text, ob)) {
    std::fprintf(stderr, "bad variant (KEY=V,... with KEY team, f16_state, tiles or huge)\n");
    return 2;
  }
  auto ra = ssmq::Runtime::Create(model.value(), oa);
  auto rb = ssmq::Runtime::Create(model.value(), ob);
  if (!ra.ok() || !rb.ok()) {
    std::fprintf(stderr, "%s\n", (!ra.ok() ? ra : rb).status().ToString().c_str());
    return 1;
  }
  ssmq::Runtime* rt[2] = {ra.value().get(), rb.value().get()};
  ssmq::RecurrentState state[2] = {rt[0]->NewState(1), rt[1]->NewState(1)};
  std::vector<float> logits;
  const int64_t vocab = rt[0]->hparams().vocab_size;
  std::vector<int32_t> tokens(static_cast<size_t>(blocks * block + 4));
  uint32_t x = 12345;  // the same token sequence for both sides
  for (int32_t& t : tokens) {
    x = x * 1664525u + 1013904223u;
    t = static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(vocab));
  }
  for (int s = 0; s < 2; ++s) {  // warm-up: page faults, thread team, scratch
    auto st = rt[s]->Prefill(std::span<const int32_t>(tokens.data(), 4), 1, 1 * 4, state[s],
                             logits);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
  }
  double total[2] = {0, 0};
  std::vector<double> ratios;
  for (int k = 0; k < blocks; ++k) {
    double secs[2];
    for (int s = 0; s < 2; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int j = 0; j < block; ++j) {
        const int32_t tok = tokens[static_cast<size_t>(4 + k * block + j)];
        auto st = rt[s]->Step(std::span<const int32_t>(&tok, 1), state[s], logits);
        if (!st.ok()) {
          std::fprintf(stderr, "%s\n", st.ToString().c_str());
          return 1;
        }
      }
      secs[s] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      total[s] += secs[s];
    }
    ratios.push_back(secs[1] / secs[0]);
  }
  std::sort(ratios.begin(), ratios.end());
  const double n = static_cast<double>(blocks) * block;
  std::printf("A (%s): %.2f tokens/s\nB (%s): %.2f tokens/s\n", a_text.c_str(), n / total[0],
              b_text.c_str(), n / total[1]);
  std::printf("B/A speed: %.3f overall, %.3f median over %d blocks (time ratio quartiles %.3f %.3f)\n",
              total[0] / total[1], 1.0 / ratios[ratios.size() / 2], blocks,
              ratios[ratios.size() / 4], ratios[ratios.size() * 3 / 4]);
  return 0;
}
