// One anonymous mapping on transparent huge pages for the weights the
// runtime lays out itself at load: the Q4 / Q8 16-row tiles (weight_tiles.h) and the
// copies of the other decode matmul weights (CopyToArena, weight.h).
//
// Why: a batch-1 decode streams every matmul weight once per token
// (mamba2-370m w8a8: 370 MB). From the file mapping those are 4 KiB pages,
// ~90K TLB misses per token; on 2 MiB pages a read stream runs ~8-10%
// faster on the dev VM (the read probe of runtime_cpu/membw.h sits on huge
// pages for the same reason). A page-cache file is mapped with 2 MiB pages
// only when its cache was filled in large folios, which a file just written
// by `ssmq convert` is not, so the runtime copies instead (a memcpy at load,
// ~0.1 s per 370 MB; the file's pages are handed back as the copy proceeds,
// so the resident size does not double).
//
// Sized once (Plan, then Allocate): only the whole 2 MiB pages of the
// mapping are advised huge, so the tail costs no more than it holds (a
// partly used huge page would be resident whole). Slices are 64-byte
// aligned. Advice only: without THP the arena works on 4 KiB pages.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/status.h"

namespace ssmq::rt {

class HugeArena {
 public:
  HugeArena() = default;
  HugeArena(const HugeArena&) = delete;
  HugeArena& operator=(const HugeArena&) = delete;
  ~HugeArena();

  // Before Allocate: one slice of `bytes` will be taken.
  void Plan(size_t bytes) { planned_ += Round(bytes); }

  // Maps the planned bytes (kIoError naming the size when the mapping fails).
  Status Allocate();

  // The next slice of `bytes` (as planned, in the planned order); nullptr past the plan.
  uint8_t* Take(size_t bytes);

 private:
  static size_t Round(size_t n) { return (n + 63) & ~size_t{63}; }
  void* map_ = nullptr;
  size_t map_len_ = 0;
  uint8_t* data_ = nullptr;
  size_t planned_ = 0, used_ = 0;
};

}  // namespace ssmq::rt
