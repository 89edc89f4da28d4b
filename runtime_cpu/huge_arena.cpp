// HugeArena (huge_arena.h).
#include "runtime_cpu/huge_arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ssmq::rt {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}

HugeArena::~HugeArena() {
  if (map_) munmap(map_, map_len_);
}

Status HugeArena::Allocate() {
  if (map_ || planned_ == 0) return Status::Ok();
  map_len_ = planned_ + kHugePage;  // room to start on a 2 MiB boundary
  void* p = mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    map_ = nullptr;
    return Status(StatusCode::kIoError, "runtime: cannot map " + std::to_string(planned_ >> 20) +
                                            " MiB for the weight copies: " + std::strerror(errno));
  }
  map_ = p;
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  data_ = reinterpret_cast<uint8_t*>((u + kHugePage - 1) & ~(kHugePage - 1));
#ifdef MADV_HUGEPAGE
  const size_t whole = planned_ & ~(kHugePage - 1);
  if (whole > 0) madvise(data_, whole, MADV_HUGEPAGE);  // advisory; failure is harmless
#endif
  return Status::Ok();
}

uint8_t* HugeArena::Take(size_t bytes) {
  const size_t n = Round(bytes);
  if (!data_ || used_ + n > planned_) return nullptr;
  uint8_t* p = data_ + used_;
  used_ += n;
  return p;
}

}  // namespace ssmq::rt
