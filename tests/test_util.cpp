#include "tests/test_util.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convert/hf_import.h"
#include "convert/safetensors.h"

namespace ssmq::testing {
namespace fs = std::filesystem;

std::string TestDir() { return SSMQ_TEST_DIR; }
std::string FixturesDir() { return TestDir() + "/fixtures"; }
std::string FixtureModelDir(const std::string& name) { return FixturesDir() + "/models/" + name; }
std::string FixtureReferenceDir(const std::string& name) {
  return FixturesDir() + "/reference/" + name;
}
std::string SsmqBinary() { return SSMQ_BINARY; }

namespace {
struct TempRoot {
  std::string path;
  TempRoot() {
    std::string tmpl = (fs::temp_directory_path() / "ssmq_test_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
TempRoot& Root() {
  static TempRoot root;
  return root;
}
}  // namespace

std::string MakeTempDir(const std::string& tag) {
  static int counter = 0;
  fs::path p = fs::path(Root().path) / (tag + "_" + std::to_string(counter++));
  fs::create_directories(p);
  return p.string();
}

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::string ReadFileText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

int RunCommand(const std::string& cmd, std::string* stdout_text) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  if (stdout_text) *stdout_text = std::move(out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const Model& FixtureModel(const std::string& name) {
  static std::map<std::string, Model> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  auto model = ImportHfDirectory(FixtureModelDir(name));
  if (!model.ok()) {
    std::fprintf(stderr, "importing fixture %s: %s\n", name.c_str(),
                 model.status().ToString().c_str());
    std::abort();
  }
  return cache.emplace(name, std::move(model).value()).first->second;
}

std::vector<int32_t> ReferenceInputIds(const std::string& name) {
  auto st = SafetensorsFile::Open(FixtureReferenceDir(name) + "/ref.safetensors");
  const SafetensorsTensor* ids = st.ok() ? (*st)->Find("input_ids") : nullptr;
  if (!ids || ids->dtype != "I64") {
    std::fprintf(stderr, "fixture %s: ref.safetensors has no I64 input_ids\n", name.c_str());
    std::abort();
  }
  std::vector<int32_t> out(ids->data.size() / 8);
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t v;
    std::memcpy(&v, ids->data.data() + 8 * i, 8);
    out[i] = static_cast<int32_t>(v);
  }
  return out;
}

namespace {
// <exe dir>/test_artifacts/<exe>.<mtime ns>.<size>: a new key whenever the
// executable is relinked (any change to the code it runs).
const std::string& SharedArtifactDir() {
  static const std::string dir = [] {
    const fs::path exe = fs::read_symlink("/proc/self/exe");
    struct stat st {};
    if (stat(exe.c_str(), &st) != 0) throw std::runtime_error("stat " + exe.string());
    const std::string prefix = exe.filename().string() + ".";
    const std::string key =
        prefix + std::to_string(static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec) +
        "." + std::to_string(static_cast<long long>(st.st_size));
    const fs::path root = exe.parent_path() / "test_artifacts";
    fs::create_directories(root / key);
    // The caches of earlier builds of this executable are stale: remove them.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec)) {
      const std::string name = e.path().filename().string();
      if (name != key && name.rfind(prefix, 0) == 0) fs::remove_all(e.path(), ec);
    }
    return (root / key).string();
  }();
  return dir;
}
}  // namespace

std::string SharedArtifact(const std::string& name,
                           const std::function<bool(const std::string& path)>& make) {
  const std::string path = SharedArtifactDir() + "/" + name;
  const int lock = open((path + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock < 0) throw std::runtime_error("cannot open " + path + ".lock");
  while (flock(lock, LOCK_EX) != 0) {
    if (errno != EINTR) throw std::runtime_error("flock " + path + ".lock");
  }
  bool ok = fs::exists(path);
  if (!ok) {
    const std::string tmp = path + ".tmp." + std::to_string(getpid());
    ok = make(tmp);
    std::error_code ec;
    if (ok) fs::rename(tmp, path, ec);
    ok = ok && !ec;
    fs::remove(tmp, ec);
  }
  flock(lock, LOCK_UN);
  close(lock);
  return ok ? path : std::string();
}

}  // namespace ssmq::testing
