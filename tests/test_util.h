// Helpers shared by the tests: where the test data is, temp dirs, file I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"

namespace ssmq::testing {

// tests/ in the source tree (fixtures under tests/fixtures, goldens under tests/data).
std::string TestDir();
std::string FixturesDir();             // tests/fixtures
std::string FixtureModelDir(const std::string& name);      // tests/fixtures/models/<name>
std::string FixtureReferenceDir(const std::string& name);  // tests/fixtures/reference/<name>
std::string SsmqBinary();              // path of the built `ssmq` executable

// A fresh empty directory under the build's temp area, removed at exit.
std::string MakeTempDir(const std::string& tag);

std::vector<uint8_t> ReadFileBytes(const std::string& path);
std::string ReadFileText(const std::string& path);
void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes);

// Runs a shell command, returns exit status and captured stdout.
int RunCommand(const std::string& cmd, std::string* stdout_text);

// The fixture checkpoint `name` imported from tests/fixtures/models (once per
// test program; aborts the program if the import fails).
const Model& FixtureModel(const std::string& name);

// The reference input_ids [2][64] of fixture `name`, row-major.
std::vector<int32_t> ReferenceInputIds(const std::string& name);

// A file made once and then shared by every test process of this build of
// the test executable. ctest runs each test case in its own process, so a
// per-process cache does not stop two tests from calibrating the same model
// twice; this one lives on disk, in
//   <executable's dir>/test_artifacts/<executable>.<mtime>.<size>/<name>,
// so a rebuilt (relinked) executable starts a fresh cache and the caches of
// earlier builds are removed. `make(path)` writes the file and returns false
// on failure; concurrent processes wait on a lock instead of making it twice,
// and the file appears under its name only once complete (temp + rename).
// Returns the path, or "" when `make` failed. Inputs other than the code
// (fixtures, parameters) must be part of `name`.
std::string SharedArtifact(const std::string& name,
                           const std::function<bool(const std::string& path)>& make);

}  // namespace ssmq::testing

namespace ssmq::testing {
// False in sanitizer builds (ASan/UBSan run 5-20x slower): tests that score
// the whole validation split skip there, the release build runs them.
inline bool HeavyTestsEnabled() {
#if defined(__SANITIZE_ADDRESS__)
  return false;
#else
  return true;
#endif
}
}  // namespace ssmq::testing
