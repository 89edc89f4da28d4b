#include "runtime_cpu/simd_dispatch.h"

#include <cstdlib>
#include <cstring>

namespace ssmq::rt {

namespace {

KernelIsa DetectIsa() {
#ifdef SSMQ_HAVE_X86_KERNELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c")) {
    return KernelIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return KernelIsa::kAvx2;
  }
#endif
  return KernelIsa::kScalar;
}

}  // namespace

// SSMQ_ISA=scalar|avx2|avx512 lowers (never raises) the choice: benchmarks
// use it to compare kernel families in one build.
KernelIsa CpuIsa() {
  static const KernelIsa isa = [] {
    KernelIsa best = DetectIsa();
    if (const char* env = std::getenv("SSMQ_ISA")) {
      KernelIsa want = best;
      if (std::strcmp(env, "scalar") == 0) want = KernelIsa::kScalar;
      else if (std::strcmp(env, "avx2") == 0) want = KernelIsa::kAvx2;
      else if (std::strcmp(env, "avx512") == 0) want = KernelIsa::kAvx512;
      if (static_cast<int>(want) < static_cast<int>(best)) best = want;
    }
    return best;
  }();
  return isa;
}

const char* KernelIsaName(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar: return "scalar";
    case KernelIsa::kAvx2: return "avx2";
    case KernelIsa::kAvx512: return "avx512";
  }
  return "?";
}

}  // namespace ssmq::rt
