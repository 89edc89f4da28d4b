// The summary of a ~1 GiB .ssmq file (`ssmq inspect FILE` without options)
// must take well under a second: it maps the file and reads only the header,
// metadata and directory. The file is a Mamba1 layout with ~290 tensors
// (d_model 1024, 33 layers, vocab 50280, f32), written once to a temp dir.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "format/ssmq_file.h"
#include "inspect/summary.h"
#include "model/arch.h"

namespace {

namespace fs = std::filesystem;

struct BigFile {
  std::string path;
  uint64_t bytes = 0;
  size_t tensors = 0;
  BigFile() {
    path = (fs::temp_directory_path() / ("ssmq_inspect_bench_" + std::to_string(getpid()) +
                                         ".ssmq")).string();
    ssmq::HParams hp;
    hp.arch = ssmq::Arch::kMamba1;
    hp.d_model = 1024;
    hp.n_layer = 33;
    hp.vocab_size = 50280;
    hp.d_inner = 2048;
    hp.d_state = 16;
    hp.d_conv = 4;
    hp.dt_rank = 64;
    hp.tied_embeddings = true;
    ssmq::SsmqWriter writer;
    ssmq::HParamsToMetadata(hp, writer.metadata());
    writer.metadata().Set("general.name", ssmq::MetaValue::String("inspect-bench"));
    std::vector<ssmq::TensorSpec> specs = ssmq::ExpectedTensors(hp);
    uint64_t largest = 0;
    for (const auto& s : specs) {
      uint64_t n = 1;
      for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
      largest = std::max(largest, n * 4);
    }
    // Non-zero bytes so the file is not sparse: the data really is on disk.
    std::vector<uint8_t> data(largest);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
    for (const auto& s : specs) {
      ssmq::TensorInfo info;
      info.name = s.name;
      info.type = ssmq::TensorType::kF32;
      info.shape = s.shape;
      const uint64_t n = info.numel() * 4;
      ssmq::Status st = writer.AddTensor(info, std::span<const uint8_t>(data.data(), n));
      if (!st.ok()) std::fprintf(stderr, "AddTensor: %s\n", st.ToString().c_str());
      bytes += n;
      ++tensors;
    }
    ssmq::Status st = writer.WriteFile(path);
    if (!st.ok()) std::fprintf(stderr, "WriteFile: %s\n", st.ToString().c_str());
  }
  ~BigFile() { std::remove(path.c_str()); }
};

BigFile& File() {
  static BigFile file;
  return file;
}

// Open by mmap + build the full summary (what `ssmq inspect FILE` prints).
void BM_InspectSummary1GiB(benchmark::State& state) {
  BigFile& f = File();
  size_t bpw_rows = 0;
  for (auto _ : state) {
    auto file = ssmq::SsmqFile::OpenMmap(f.path);
    if (!file.ok()) {
      state.SkipWithError(file.status().ToString().c_str());
      return;
    }
    ssmq::inspect::FileSummary s = ssmq::inspect::BuildSummary(**file, "big.ssmq");
    bpw_rows = s.bits_per_weight.size();
    benchmark::DoNotOptimize(s);
  }
  state.counters["file_GiB"] = static_cast<double>(fs::file_size(f.path)) / (1u << 30);
  state.counters["tensors"] = static_cast<double>(f.tensors);
  state.counters["bpw_rows"] = static_cast<double>(bpw_rows);
}
BENCHMARK(BM_InspectSummary1GiB)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// The same plus rendering the text, as the CLI does.
void BM_InspectSummaryText1GiB(benchmark::State& state) {
  BigFile& f = File();
  for (auto _ : state) {
    auto file = ssmq::SsmqFile::OpenMmap(f.path);
    if (!file.ok()) {
      state.SkipWithError(file.status().ToString().c_str());
      return;
    }
    std::string text = ssmq::inspect::RenderSummaryText(ssmq::inspect::BuildSummary(**file, "big"));
    benchmark::DoNotOptimize(text);
  }
}
BENCHMARK(BM_InspectSummaryText1GiB)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
