// Helpers shared by the CLI verbs: open a model from a .ssmq file or a
// Hugging Face directory, get its tokenizer, text splits, JSON output.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "format/status.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace ssmq::cli {

// A path that is a directory is imported as a Hugging Face checkpoint;
// anything else is opened as a .ssmq file.
Result<Model> OpenModel(const std::string& path);

Result<std::unique_ptr<Tokenizer>> ModelTokenizer(const Model& model);

Result<std::string> ReadTextFile(const std::string& path);

// The fixtures' split: the first floor(0.9 * n) Unicode code points are
// train, the rest val (Python string semantics on UTF-8 text).
enum class TextSplit { kAll, kTrain, kVal };
Result<TextSplit> ParseSplit(const std::string& s);
std::string_view SelectSplit(std::string_view text, TextSplit split);

// Help of --f16-state (run, eval, bench: RuntimeOptions::f16_state).
inline constexpr const char* kF16StateHelp =
    "keep the float SSM state in f16 between steps (half the state memory and decode traffic)";

}  // namespace ssmq::cli
