#include "runtime_cpu/membw.h"

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SSMQ_MEMBW_X86 1
#endif

namespace ssmq {

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kSliceAlign = 4096;  // every thread slice starts on a page, spans whole 256-byte blocks

// ---- kernels: n is a multiple of 256, pointers 64-byte aligned ----

enum class Isa { kScalar, kSse2, kAvx2, kAvx512 };

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kSse2: return "sse2";
    default: return "scalar";
  }
}

Isa DetectIsa() {
#if SSMQ_MEMBW_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
  return Isa::kSse2;
#else
  return Isa::kScalar;
#endif
}

uint64_t ReadScalar(const uint8_t* p, size_t n) {
  uint64_t a[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < n; i += 32) {
    uint64_t v[4];
    std::memcpy(v, p + i, 32);
    a[0] += v[0]; a[1] += v[1]; a[2] += v[2]; a[3] += v[3];
  }
  return a[0] + a[1] + a[2] + a[3];
}

void CopyScalar(const uint8_t* src, uint8_t* dst, size_t n) { std::memcpy(dst, src, n); }

void TriadScalar(double* a, const double* b, const double* c, double s, size_t n_doubles) {
  for (size_t i = 0; i < n_doubles; ++i) a[i] = b[i] + s * c[i];
}

#if SSMQ_MEMBW_X86
__attribute__((target("avx512f"))) uint64_t ReadAvx512(const uint8_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 192));
  }
  alignas(64) uint64_t lanes[8];  // (not _mm512_reduce_add_epi64: GCC 12 warns inside it)
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  uint64_t s = 0;
  for (uint64_t v : lanes) s += v;
  return s;
}

__attribute__((target("avx2"))) uint64_t ReadAvx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

uint64_t ReadSse2(const uint8_t* p, size_t n) {
  __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 64) {
    a0 = _mm_add_epi64(a0, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i)));
    a1 = _mm_add_epi64(a1, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 16)));
    a2 = _mm_add_epi64(a2, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 32)));
    a3 = _mm_add_epi64(a3, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 48)));
  }
  alignas(16) uint64_t lanes[2];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes),
                  _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3)));
  return lanes[0] + lanes[1];
}

__attribute__((target("avx512f"))) void CopyAvx512(const uint8_t* src, uint8_t* dst, size_t n) {
  for (size_t i = 0; i < n; i += 256) {
    const __m512i v0 = _mm512_load_si512(src + i), v1 = _mm512_load_si512(src + i + 64);
    const __m512i v2 = _mm512_load_si512(src + i + 128), v3 = _mm512_load_si512(src + i + 192);
    _mm512_store_si512(dst + i, v0);
    _mm512_store_si512(dst + i + 64, v1);
    _mm512_store_si512(dst + i + 128, v2);
    _mm512_store_si512(dst + i + 192, v3);
  }
}

__attribute__((target("avx2"))) void CopyAvx2(const uint8_t* src, uint8_t* dst, size_t n) {
  for (size_t i = 0; i < n; i += 128) {
    for (size_t k = 0; k < 128; k += 32) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(dst + i + k),
                         _mm256_load_si256(reinterpret_cast<const __m256i*>(src + i + k)));
    }
  }
}

__attribute__((target("avx512f"))) void TriadAvx512(double* a, const double* b, const double* c,
                                                     double s, size_t n_doubles) {
  const __m512d vs = _mm512_set1_pd(s);
  for (size_t i = 0; i < n_doubles; i += 16) {
    _mm512_store_pd(a + i, _mm512_fmadd_pd(vs, _mm512_load_pd(c + i), _mm512_load_pd(b + i)));
    _mm512_store_pd(a + i + 8,
                    _mm512_fmadd_pd(vs, _mm512_load_pd(c + i + 8), _mm512_load_pd(b + i + 8)));
  }
}

__attribute__((target("avx2"))) void TriadAvx2(double* a, const double* b, const double* c,
                                                double s, size_t n_doubles) {
  const __m256d vs = _mm256_set1_pd(s);
  for (size_t i = 0; i < n_doubles; i += 8) {
    _mm256_store_pd(a + i, _mm256_add_pd(_mm256_load_pd(b + i), _mm256_mul_pd(vs, _mm256_load_pd(c + i))));
    _mm256_store_pd(a + i + 4, _mm256_add_pd(_mm256_load_pd(b + i + 4),
                                             _mm256_mul_pd(vs, _mm256_load_pd(c + i + 4))));
  }
}
#endif

uint64_t Read(Isa isa, const uint8_t* p, size_t n) {
#if SSMQ_MEMBW_X86
  if (isa == Isa::kAvx512) return ReadAvx512(p, n);
  if (isa == Isa::kAvx2) return ReadAvx2(p, n);
  if (isa == Isa::kSse2) return ReadSse2(p, n);
#endif
  (void)isa;
  return ReadScalar(p, n);
}

void Copy(Isa isa, const uint8_t* src, uint8_t* dst, size_t n) {
#if SSMQ_MEMBW_X86
  if (isa == Isa::kAvx512) return CopyAvx512(src, dst, n);
  if (isa == Isa::kAvx2) return CopyAvx2(src, dst, n);
#endif
  (void)isa;
  CopyScalar(src, dst, n);
}

void Triad(Isa isa, double* a, const double* b, const double* c, double s, size_t n) {
#if SSMQ_MEMBW_X86
  if (isa == Isa::kAvx512) return TriadAvx512(a, b, c, s, n);
  if (isa == Isa::kAvx2) return TriadAvx2(a, b, c, s, n);
#endif
  (void)isa;
  TriadScalar(a, b, c, s, n);
}

// ---- the buffer: anonymous mapping, 2 MiB aligned, transparent huge pages
//      where the kernel allows (fewer page faults at first touch, fewer TLB misses) ----

class Buffer {
 public:
  static Result<Buffer> Map(uint64_t bytes) {
    const uint64_t align = 2 * kMiB;
    const uint64_t len = bytes + align;
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return Status(StatusCode::kIoError, "membw: cannot map " + std::to_string(bytes >> 20) +
                                              " MiB: " + std::strerror(errno));
    }
    Buffer b;
    b.map_ = p;
    b.map_len_ = len;
    const uintptr_t u = reinterpret_cast<uintptr_t>(p);
    b.data_ = reinterpret_cast<uint8_t*>((u + align - 1) & ~(align - 1));
#ifdef MADV_HUGEPAGE
    madvise(b.data_, bytes, MADV_HUGEPAGE);  // advisory; failure is harmless
#endif
    return b;
  }
  Buffer() = default;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(map_, o.map_);
    std::swap(map_len_, o.map_len_);
    std::swap(data_, o.data_);
    return *this;
  }
  ~Buffer() {
    if (map_) munmap(map_, map_len_);
  }
  uint8_t* data() const { return data_; }

 private:
  void* map_ = nullptr;
  uint64_t map_len_ = 0;
  uint8_t* data_ = nullptr;
};

// Bytes of each thread's slice of an array of `array_bytes`: a multiple of
// kSliceAlign (the tail beyond nt slices is not used or counted).
uint64_t SliceBytes(uint64_t array_bytes, int nt) {
  return array_bytes / static_cast<uint64_t>(nt) / kSliceAlign * kSliceAlign;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

BandwidthStats Stats(const std::vector<double>& seconds, uint64_t bytes) {
  std::vector<double> bw;
  for (double s : seconds) bw.push_back(s > 0 ? static_cast<double>(bytes) / s : 0.0);
  BandwidthStats st;
  st.best_bytes_per_s = *std::max_element(bw.begin(), bw.end());
  st.median_bytes_per_s = Median(bw);
  return st;
}

volatile uint64_t g_sink;  // keeps the read reductions alive (written once, after the timing)

struct Probe {
  int nt = 1;
  Isa isa = Isa::kScalar;
  uint64_t bytes = 0;
  Buffer buf;

  // Times `passes` runs of body(slice) for slices 0..nt-1 over a team of nt
  // threads (each thread takes slices th, th + team, ...: all are covered
  // even if the runtime grants a smaller team).
  template <class Body>
  std::vector<double> Time(int passes, const Body& body) const {
    std::vector<double> out;
    for (int p = 0; p < passes; ++p) {
      const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(nt)
      {
        const int team = omp_get_num_threads();
        for (int sl = omp_get_thread_num(); sl < nt; sl += team) body(sl);
      }
      out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return out;
  }

  BandwidthStats MeasureRead(int passes) const {
    const uint64_t slice = SliceBytes(bytes, nt);
    std::vector<uint64_t> sums(static_cast<size_t>(nt));
    const auto t = Time(passes, [&](int sl) {
      sums[sl] += Read(isa, buf.data() + static_cast<uint64_t>(sl) * slice, slice);
    });
    uint64_t total = 0;
    for (uint64_t v : sums) total += v;
    g_sink = total;
    return Stats(t, slice * static_cast<uint64_t>(nt));
  }
  BandwidthStats MeasureCopy(int passes) const {
    const uint64_t half = bytes / 2 / kSliceAlign * kSliceAlign;
    const uint64_t slice = SliceBytes(half, nt);
    const auto t = Time(passes, [&](int th) {
      const uint64_t off = static_cast<uint64_t>(th) * slice;
      Copy(isa, buf.data() + off, buf.data() + half + off, slice);
    });
    return Stats(t, 2 * slice * static_cast<uint64_t>(nt));
  }
  BandwidthStats MeasureTriad(int passes) const {
    const uint64_t third = bytes / 3 / kSliceAlign * kSliceAlign;
    const uint64_t slice = SliceBytes(third, nt);
    auto* base = buf.data();
    const auto t = Time(passes, [&](int th) {
      const uint64_t off = static_cast<uint64_t>(th) * slice;
      Triad(isa, reinterpret_cast<double*>(base + off),
            reinterpret_cast<const double*>(base + third + off),
            reinterpret_cast<const double*>(base + 2 * third + off), 3.0, slice / sizeof(double));
    });
    return Stats(t, 3 * slice * static_cast<uint64_t>(nt));
  }
};

Result<Probe> MakeProbe(int n_threads, const MembwOptions& opts) {
  if (opts.passes < 1 || opts.record_passes < 1) {
    return Status(StatusCode::kInvalidArgument,
                  "membw: passes must be at least 1, not " +
                      std::to_string(std::min(opts.passes, opts.record_passes)));
  }
  Probe pr;
  pr.nt = n_threads > 0 ? n_threads : omp_get_max_threads();
  pr.bytes = opts.buffer_bytes ? opts.buffer_bytes : DefaultMembwBufferBytes();
  if (pr.bytes < kMiB) {
    return Status(StatusCode::kInvalidArgument,
                  "membw: buffer of " + std::to_string(pr.bytes) + " bytes is under 1 MiB");
  }
  pr.bytes = std::max<uint64_t>(pr.bytes / kSliceAlign * kSliceAlign,
                                3 * kSliceAlign * static_cast<uint64_t>(pr.nt));
  pr.isa = DetectIsa();
  SSMQ_ASSIGN_OR_RETURN(pr.buf, Buffer::Map(pr.bytes));
  // First touch by the thread that will stream each slice (pages land on its node).
  const uint64_t slice = SliceBytes(pr.bytes, pr.nt);
  uint8_t* data = pr.buf.data();
  const int nt = pr.nt;
  const uint64_t total = pr.bytes;
#pragma omp parallel num_threads(nt)
  {
    const int team = omp_get_num_threads();
    for (int sl = omp_get_thread_num(); sl < nt; sl += team) {
      const uint64_t begin = static_cast<uint64_t>(sl) * slice;
      const uint64_t end = sl == nt - 1 ? total : begin + slice;
      std::memset(data + begin, 1, end - begin);
    }
  }
  return pr;
}

uint64_t ReadSysfsSize(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s.empty()) return 0;
  uint64_t v = std::strtoull(s.c_str(), nullptr, 10);
  const char unit = s.back();
  if (unit == 'K') v <<= 10;
  if (unit == 'M') v <<= 20;
  if (unit == 'G') v <<= 30;
  return v;
}

uint64_t AvailableMemoryBytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

}  // namespace

uint64_t LastLevelCacheBytes() {
  uint64_t best = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
  for (int name : {_SC_LEVEL2_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE, _SC_LEVEL4_CACHE_SIZE}) {
    const long v = sysconf(name);
    if (v > 0) best = std::max(best, static_cast<uint64_t>(v));
  }
#endif
  for (int i = 0; i < 8; ++i) {
    best = std::max(best, ReadSysfsSize("/sys/devices/system/cpu/cpu0/cache/index" +
                                        std::to_string(i) + "/size"));
  }
  return best;
}

uint64_t DefaultMembwBufferBytes() {
  uint64_t bytes = std::max<uint64_t>(kGiB, 2 * LastLevelCacheBytes());
  bytes = std::min<uint64_t>(bytes, 2 * kGiB);
  const uint64_t avail = AvailableMemoryBytes();
  if (avail > 0) bytes = std::min<uint64_t>(bytes, avail / 4);
  return std::max<uint64_t>(bytes, 64 * kMiB);
}

Result<BandwidthStats> MeasureReadBandwidth(int n_threads, const MembwOptions& opts) {
  SSMQ_ASSIGN_OR_RETURN(Probe pr, MakeProbe(n_threads, opts));
  return pr.MeasureRead(opts.passes);
}

Result<MemoryBandwidth> MeasureMemoryBandwidth(int n_threads, const MembwOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  SSMQ_ASSIGN_OR_RETURN(Probe pr, MakeProbe(n_threads, opts));
  MemoryBandwidth out;
  out.n_threads = pr.nt;
  out.buffer_bytes = pr.bytes;
  out.passes = opts.passes;
  out.isa = IsaName(pr.isa);
  out.read = pr.MeasureRead(opts.passes);
  if (opts.copy_and_triad) {
    out.record_passes = opts.record_passes;
    out.copy = pr.MeasureCopy(opts.record_passes);
    out.triad = pr.MeasureTriad(opts.record_passes);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace ssmq
