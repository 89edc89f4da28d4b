// ssmq tokenize MODEL --text STRING [--json]
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/command.h"

namespace ssmq::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string text;
  std::string file;
  bool json = false;
};

Status RunTokenize(const TokenizeArgs& a) {
  SSMQ_ASSIGN_OR_RETURN(Model model, OpenModel(a.model));
  SSMQ_ASSIGN_OR_RETURN(auto tokenizer, ModelTokenizer(model));
  std::string text = a.text;
  if (!a.file.empty()) {
    SSMQ_ASSIGN_OR_RETURN(text, ReadTextFile(a.file));
  }
  const std::vector<int32_t> ids = tokenizer->Encode(text);
  if (a.json) {
    nlohmann::json j;
    j["ids"] = ids;
    std::printf("%s\n", j.dump().c_str());
    return Status::Ok();
  }
  for (int32_t id : ids) {
    nlohmann::json piece = tokenizer->DecodeToken(id);
    std::printf("%6d  %s\n", id,
                piece.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  std::printf("%zu tokens\n", ids.size());
  return Status::Ok();
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  auto* sub = app.add_subcommand("tokenize", "Show the token ids of a text");
  sub->add_option("model", args->model, ".ssmq file or Hugging Face directory")->required();
  auto* text = sub->add_option("--text", args->text, "text to tokenize");
  auto* file = sub->add_option("--file", args->file, "read the text from a file");
  text->excludes(file);
  sub->add_flag("--json", args->json, "print {\"ids\": [...]}");
  sub->callback([args, text, file] {
    if (text->count() == 0 && file->count() == 0) {
      ReportError(Status(StatusCode::kInvalidArgument, "give --text or --file"));
      return;
    }
    Status st = RunTokenize(*args);
    if (!st.ok()) ReportError(st);
  });
}
SSMQ_REGISTER_COMMAND(30, Setup);

}  // namespace
}  // namespace ssmq::cli
