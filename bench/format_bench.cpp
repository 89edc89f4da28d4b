// .ssmq format benchmarks.
//  BM_OpenMmap1GiB: open a 1 GiB, 200-tensor file by mmap and read its
//    metadata. Open validates header, metadata and directory only; tensor
//    checksums are verified only on request, so no tensor page is touched.
//  BM_VerifyAll1GiB: for contrast, the cost of verifying every tensor checksum.
//  BM_HeadOverhead100Tensors: bytes of header + metadata + directory (+ padding
//    up to the data section) for 100 typical rank-2 tensors, as counters.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "format/ssmq_file.h"

namespace ssmq {
namespace {

constexpr uint64_t kGiB = 1ull << 30;
constexpr int kBigTensors = 200;

TensorInfo MakeInfo(std::string name, TensorType type, std::vector<int64_t> shape) {
  TensorInfo t;
  t.name = std::move(name);
  t.type = type;
  t.shape = std::move(shape);
  return t;
}

void AddTypicalMetadata(Metadata& md) {
  md.Set("general.architecture", MetaValue::String("mamba2"));
  md.Set("general.name", MetaValue::String("bench-model"));
  for (const char* k : {"d_model", "n_layer", "vocab_size", "d_inner", "d_state", "d_conv",
                        "n_groups", "head_dim", "n_heads", "chunk_size", "norm_group_size"})
    md.Set(std::string("mamba2.") + k, MetaValue::U32(64));
  md.Set("mamba2.norm_eps", MetaValue::F32(1e-5f));
  md.Set("mamba2.tied_embeddings", MetaValue::Bool(false));
  md.Set("mamba2.conv_bias", MetaValue::Bool(true));
  md.Set("mamba2.proj_bias", MetaValue::Bool(false));
  md.Set("quant.scheme", MetaValue::String("f16"));
}

// Writes the 1 GiB file once per process; removed at exit.
struct BigFile {
  std::string dir, path;
  BigFile() {
    dir = (std::filesystem::temp_directory_path() / ("ssmq_bench_" + std::to_string(getpid()))).string();
    std::filesystem::create_directories(dir);
    path = dir + "/big.ssmq";
    // 200 f16 tensors of 2,684,354 elements (~5.12 MiB) each, all views of
    // one buffer: the writer streams, it never holds 1 GiB.
    const int64_t rows = 2048, cols = (kGiB / kBigTensors / 2) / rows;
    std::vector<uint8_t> buffer(static_cast<size_t>(rows * cols * 2));
    for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<uint8_t>(i * 2654435761u >> 24);
    SsmqWriter w;
    AddTypicalMetadata(w.metadata());
    for (int i = 0; i < kBigTensors; ++i) {
      Status st = w.AddTensor(MakeInfo("blk." + std::to_string(i / 4) + ".t" + std::to_string(i % 4) + ".weight",
                                       TensorType::kF16, {rows, cols}),
                              buffer);
      if (!st.ok()) std::fprintf(stderr, "%s\n", st.ToString().c_str());
    }
    Status st = w.WriteFile(path);
    if (!st.ok()) std::fprintf(stderr, "write failed: %s\n", st.ToString().c_str());
  }
  ~BigFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};
BigFile& Big() {
  static BigFile f;
  return f;
}

void BM_OpenMmap1GiB(benchmark::State& state) {
  const std::string& path = Big().path;
  uint64_t file_size = 0, tensors = 0;
  for (auto _ : state) {
    auto f = SsmqFile::OpenMmap(path);
    if (!f.ok()) {
      state.SkipWithError(f.status().ToString().c_str());
      return;
    }
    auto arch = (*f)->metadata().GetString("general.architecture");
    auto layers = (*f)->metadata().GetInt("mamba2.n_layer");
    benchmark::DoNotOptimize(arch);
    benchmark::DoNotOptimize(layers);
    file_size = (*f)->header().file_size;
    tensors = (*f)->tensors().size();
  }
  state.counters["file_MiB"] = static_cast<double>(file_size) / (1 << 20);
  state.counters["tensors"] = static_cast<double>(tensors);
}
BENCHMARK(BM_OpenMmap1GiB)->Unit(benchmark::kMicrosecond);

void BM_VerifyAll1GiB(benchmark::State& state) {
  auto f = SsmqFile::OpenMmap(Big().path);
  if (!f.ok()) {
    state.SkipWithError(f.status().ToString().c_str());
    return;
  }
  for (auto _ : state) {
    auto problems = (*f)->ValidateAll();
    benchmark::DoNotOptimize(problems);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (*f)->header().data_size));
}
BENCHMARK(BM_VerifyAll1GiB)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_HeadOverhead100Tensors(benchmark::State& state) {
  SsmqWriter w;
  AddTypicalMetadata(w.metadata());
  std::vector<uint8_t> data(16 * 16 * 2);  // the head does not depend on the data size
  const char* suffixes[] = {"ssm_in.weight", "ssm_conv1d.weight", "ssm_out.weight", "norm.weight"};
  for (int i = 0; i < 100; ++i) {
    const std::string name = "blk." + std::to_string(i / 4) + "." + suffixes[i % 4];
    if (!w.AddTensor(MakeInfo(name, TensorType::kF16, {16, 16}), data).ok()) return;
  }
  std::vector<uint8_t> bytes;
  for (auto _ : state) {
    bytes = *w.WriteBuffer();
    benchmark::DoNotOptimize(bytes.data());
  }
  auto f = SsmqFile::OpenBuffer(bytes);
  if (!f.ok()) return;
  const FileHeader& h = (*f)->header();
  state.counters["header_B"] = h.header_size;
  state.counters["metadata_B"] = static_cast<double>(h.metadata_size);
  state.counters["directory_B"] = static_cast<double>(h.directory_size);
  state.counters["dir_B_per_tensor"] = static_cast<double>(h.directory_size - 8) / 100;
  state.counters["head_to_data_B"] = static_cast<double>(h.data_offset);
  uint64_t padding = 0;  // alignment padding between tensors
  const auto& ts = (*f)->tensors();
  for (size_t i = 1; i < ts.size(); ++i) padding += ts[i].offset - (ts[i - 1].offset + ts[i - 1].stored_size);
  state.counters["inter_tensor_pad_B"] = static_cast<double>(padding);
}
BENCHMARK(BM_HeadOverhead100Tensors)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ssmq

BENCHMARK_MAIN();
