#include "cli/cli_common.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "convert/hf_import.h"
#include "model/model_io.h"

namespace ssmq::cli {

Result<Model> OpenModel(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return ImportHfDirectory(path);
  if (!std::filesystem::exists(path, ec))
    return Status(StatusCode::kNotFound, "no such file or directory: " + path);
  return LoadModel(path);
}

Result<std::unique_ptr<Tokenizer>> ModelTokenizer(const Model& model) {
  if (model.tokenizer_json.empty())
    return Status(StatusCode::kNotFound, "the model has no embedded tokenizer");
  return Tokenizer::FromJson(model.tokenizer_json);
}

Result<std::string> ReadTextFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status(StatusCode::kIoError, "cannot open text file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status(StatusCode::kIoError, "cannot read text file " + path);
  return ss.str();
}

Result<TextSplit> ParseSplit(const std::string& s) {
  if (s == "all") return TextSplit::kAll;
  if (s == "train") return TextSplit::kTrain;
  if (s == "val") return TextSplit::kVal;
  return Status(StatusCode::kInvalidArgument, "--split must be all, train or val, not '" + s + "'");
}

std::string_view SelectSplit(std::string_view text, TextSplit split) {
  if (split == TextSplit::kAll) return text;
  // Count code points (bytes that are not UTF-8 continuation bytes).
  size_t n_chars = 0;
  for (unsigned char c : text) n_chars += (c & 0xC0) != 0x80;
  const size_t cut_chars = static_cast<size_t>(0.9 * static_cast<double>(n_chars));
  size_t byte = 0, chars = 0;
  for (; byte < text.size(); ++byte) {
    if ((static_cast<unsigned char>(text[byte]) & 0xC0) != 0x80) {
      if (chars == cut_chars) break;
      ++chars;
    }
  }
  return split == TextSplit::kTrain ? text.substr(0, byte) : text.substr(byte);
}

}  // namespace ssmq::cli
