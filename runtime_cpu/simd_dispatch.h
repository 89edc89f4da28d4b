// SSMQ_HOT marks the few hot kernels (matmul tiles, scans) that GCC compiles
// twice: for x86-64-v3 (AVX2 + FMA) and for the baseline, picked at load time
// by the CPU (ifunc). The code stays plain scalar C++ that -O3 vectorizes;
// this only widens the vectors where the machine allows it.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define SSMQ_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SSMQ_HOT
#endif
