// A STREAM-like probe of the machine's memory bandwidth: the ceiling that
// batch-1 decoding (one pass over every weight per token) runs against.
//
//   read   s += a[i]           over one buffer of B bytes      counts B bytes
//   copy   b[i] = a[i]          two arrays of B/2 bytes         counts B bytes (STREAM convention:
//   triad  a[i] = b[i] + s*c[i] three arrays of B/3 bytes       counts B bytes  write-allocate not counted)
//
// B is far larger than the last-level cache (default: max(1 GiB, 2 x LLC),
// at most 2 GiB and a quarter of the available memory), so every pass
// streams from DRAM. Loads are AVX-512 or AVX2 (whichever the CPU has, SSE2
// otherwise); OpenMP threads each stream a contiguous slice they first
// touched themselves. read runs `passes` times, copy and triad
// `record_passes`; best (highest) and median bandwidth are both reported.
// With the defaults at ~10 GB/s: ~1.2 s for read alone (half of it the first
// touch of the buffer), ~2 s with copy and triad.
#pragma once

#include <cstdint>

#include "format/status.h"

namespace ssmq {

struct BandwidthStats {
  double best_bytes_per_s = 0;    // fastest pass
  double median_bytes_per_s = 0;  // median pass
};

struct MembwOptions {
  uint64_t buffer_bytes = 0;  // total over the arrays of a kernel; 0: the default above
  int passes = 5;             // timed read passes (>= 1)
  int record_passes = 3;      // timed copy / triad passes (>= 1)
  bool copy_and_triad = true; // MeasureMemoryBandwidth only
};

struct MemoryBandwidth {
  int n_threads = 0;
  uint64_t buffer_bytes = 0;
  int passes = 0;         // read passes
  int record_passes = 0;  // copy / triad passes (0 when not measured)
  const char* isa = "";  // "avx512" | "avx2" | "sse2" | "scalar": the loads used
  BandwidthStats read, copy, triad;  // copy/triad zero when not measured
  double seconds = 0;    // wall time of the whole measurement (allocation included)
};

// Pure read bandwidth (sum reduction) with n_threads OpenMP threads (<= 0:
// OpenMP's default). kInvalidArgument for passes < 1 or a buffer under 1 MiB,
// kIoError when the buffer cannot be allocated.
Result<BandwidthStats> MeasureReadBandwidth(int n_threads, const MembwOptions& opts = {});

// read, and (unless !opts.copy_and_triad) copy and triad for the record.
Result<MemoryBandwidth> MeasureMemoryBandwidth(int n_threads, const MembwOptions& opts = {});

// Bytes of the last-level cache (sysconf / sysfs), 0 when unknown.
uint64_t LastLevelCacheBytes();

// The default buffer size described above, for this machine.
uint64_t DefaultMembwBufferBytes();

}  // namespace ssmq
