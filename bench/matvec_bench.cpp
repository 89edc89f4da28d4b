// Batch-1 decode matmuls against the memory roofline, side by side in one run.
//
// A decode step is a chain of matrix-vector products whose weights do not fit
// in any cache: its speed is the bytes per second the kernels pull from DRAM.
// This bench lays out a stack of [4096 x 1024] weights (mamba-370m's in_proj
// shape; --shape 1024x2048 for its out_proj) totalling --mib MiB of stored bytes per format — contiguous, as in a
// mapped file — and runs one matvec through every matrix per pass, for:
//   q8/int8   Int8MatMul, static per-tensor activation scale (w8a8 in_proj)
//   q4/int8   Int8MatMul, Q4 groups of 128 (w4a8)
//   q4t/int8  the same on 16-row tiles (weight_tiles.h), as the runtime loads them
//   q8t/int8  Q8 on 16-row tiles (w8a8 in_proj as the runtime loads it)
//   q8/f32    MatMul with float activations (w8a16)
//   q4/f32    MatMul with float activations (w4a16)
//   q4t/f32   the same on 16-row tiles
//   q8t/f32   Q8 on 16-row tiles (w8a16; the LM head of w8a8)
//   f16/f32   MatMul on 16-bit weights (f16 files)
// and reports GB/s of weight bytes (codes + scales) beside the read probe of
// runtime_cpu/membw (plain AVX-512/AVX2 loads over a buffer of the same size)
// at the same thread count. Best of --passes passes; the ratio column is
// kernel / probe: 1.0 means the kernel streams weights as fast as the machine
// can read memory at all.
//
//   matvec_bench [--mib 512] [--threads 1,2] [--passes 5] [--only q4/] [--shape 4096x1024]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime_cpu/act_quant.h"
#include "runtime_cpu/weight_tiles.h"
#include "runtime_cpu/membw.h"
#include "runtime_cpu/weight.h"

namespace {

using ssmq::rt::Weight;
using ssmq::rt::WeightFormat;

int64_t kRows = 4096, kCols = 1024;  // --shape ROWSxCOLS

// One format's stack of matrices over one contiguous allocation.
struct Stack {
  std::vector<uint8_t> codes;  // all matrices' codes (or 16-bit values), back to back
  std::vector<float> scales;
  std::vector<Weight> mats;
  uint64_t bytes = 0;  // codes + scales
};

Stack MakeStack(WeightFormat format, uint64_t target_bytes) {
  Stack s;
  const int64_t group = format == WeightFormat::kQ4 ? 128 : kCols;
  const int64_t code_bytes = format == WeightFormat::kQ8   ? kRows * kCols
                             : format == WeightFormat::kQ4 ? kRows * kCols / 2
                                                           : kRows * kCols * 2;
  const int64_t n_scales = format == WeightFormat::kF16 ? 0 : kRows * (kCols / group);
  const int64_t per_mat = code_bytes + n_scales * 4;
  const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(target_bytes) / per_mat);
  s.codes.resize(static_cast<size_t>(n * code_bytes));
  s.scales.resize(static_cast<size_t>(n * n_scales));
  std::mt19937 rng(1);
  for (size_t i = 0; i < s.codes.size(); i += 4) {
    const uint32_t r = rng();
    std::memcpy(&s.codes[i], &r, std::min<size_t>(4, s.codes.size() - i));
  }
  if (format == WeightFormat::kF16) {  // keep the halves finite: clear each exponent's top bit
    for (size_t i = 1; i < s.codes.size(); i += 2) s.codes[i] &= 0x3F;
  }
  for (float& v : s.scales) v = 1e-3f;
  for (int64_t m = 0; m < n; ++m) {
    Weight w;
    w.rows = kRows;
    w.cols = kCols;
    w.format = format;
    if (format == WeightFormat::kF16) {
      w.half = reinterpret_cast<const uint16_t*>(s.codes.data() + m * code_bytes);
    } else {
      w.codes = s.codes.data() + m * code_bytes;
      w.scales = s.scales.data() + m * n_scales;
      w.group_size = group;
    }
    s.mats.push_back(w);
  }
  s.bytes = static_cast<uint64_t>(n * per_mat);
  return s;
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Best GB/s over `passes` passes of fn() moving `bytes`.
template <typename Fn>
double BestGbs(int passes, uint64_t bytes, Fn fn) {
  fn();  // warm-up: page faults, thread team
  double best = 0;
  for (int p = 0; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::max(best, static_cast<double>(bytes) / Seconds(t0, t1) * 1e-9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = 512;
  int passes = 5;
  std::vector<int> threads = {1, 2};
  std::string only;  // run only the kernels whose name contains this
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--mib") mib = std::stoull(v);
    else if (k == "--passes") passes = std::stoi(v);
    else if (k == "--only") only = v;
    else if (k == "--shape") {
      const size_t x = v.find('x');
      kRows = std::stoll(v.substr(0, x));
      kCols = std::stoll(v.substr(x + 1));
    }
    else if (k == "--threads") {
      threads.clear();
      for (size_t p = 0; p < v.size();) {
        const size_t q = v.find(',', p);
        threads.push_back(std::stoi(v.substr(p, q - p)));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    } else {
      std::fprintf(stderr, "usage: matvec_bench [--mib N] [--threads 1,2] [--passes N] [--only NAME] [--shape ROWSxCOLS]\n");
      return 2;
    }
  }
  const uint64_t target = mib << 20;
  std::printf("decode matvec, [%lld x %lld] weights, %llu MiB per format, best of %d passes\n",
              static_cast<long long>(kRows), static_cast<long long>(kCols),
              static_cast<unsigned long long>(mib), passes);
  std::printf("%-9s %7s %10s %10s %8s\n", "kernel", "threads", "GB/s", "probe", "ratio");

  struct Case {
    const char* name;
    WeightFormat format;
    bool int8_act;
    bool tiles = false;
  };
  const Case cases[] = {{"q8/int8", WeightFormat::kQ8, true},
                        {"q4/int8", WeightFormat::kQ4, true},
                        {"q4t/int8", WeightFormat::kQ4, true, true},
                        {"q8t/int8", WeightFormat::kQ8, true, true},
                        {"q8/f32", WeightFormat::kQ8, false},
                        {"q4/f32", WeightFormat::kQ4, false},
                        {"q4t/f32", WeightFormat::kQ4, false, true},
                        {"q8t/f32", WeightFormat::kQ8, false, true},
                        {"f16/f32", WeightFormat::kF16, false}};
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(kCols), y(kRows);
  for (float& v : x) v = nd(rng);
  std::vector<int8_t> q(kCols);
  float row_scale = 1.0f;
  ssmq::rt::ActQuant aq;
  aq.mode = ssmq::rt::ActQuant::Mode::kStatic;
  aq.group = kCols;
  aq.scales = {0.02f};
  ssmq::rt::QuantizeActivations(aq, x.data(), kCols, 1, kCols, q.data(), &row_scale);

  for (const int nt : threads) {
    ssmq::MembwOptions mo;
    mo.buffer_bytes = target;
    mo.passes = passes;
    auto probe = ssmq::MeasureReadBandwidth(nt, mo);
    const double probe_gbs = probe.ok() ? probe.value().best_bytes_per_s * 1e-9 : 0.0;
    for (const Case& c : cases) {
      if (!only.empty() && std::string(c.name).find(only) == std::string::npos) continue;
      Stack s = MakeStack(c.format, target);
      if (c.tiles) for (Weight& w : s.mats) ssmq::rt::BuildTiles(w);
      const double gbs = BestGbs(passes, s.bytes, [&] {
        for (const Weight& w : s.mats) {
          if (c.int8_act) {
            ssmq::rt::Int8MatMul(w, nullptr, aq, q.data(), &row_scale, 1, y.data(), kRows, nt);
          } else {
            ssmq::rt::MatMul(w, nullptr, x.data(), kCols, 1, y.data(), kRows, nt);
          }
        }
      });
      std::printf("%-9s %7d %10.2f %10.2f %8.2f\n", c.name, nt, gbs, probe_gbs,
                  probe_gbs > 0 ? gbs / probe_gbs : 0.0);
      std::fflush(stdout);
    }
  }
  return 0;
}
