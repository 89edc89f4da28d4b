// ssmq run MODEL -p PROMPT -n N [--greedy | --temperature T --top-p P --seed S]
// Streams the generated text as it comes; --json prints {"ids": [...], "text": ...}.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/command.h"
#include "runtime_cpu/runtime.h"

namespace ssmq::cli {
namespace {

struct RunArgs {
  std::string model;
  std::string prompt;
  int n_new = 64;
  bool greedy = false;
  bool f16_state = false;
  float temperature = 0.8f;
  float top_p = 0.95f;
  uint64_t seed = 0;
  int threads = 0;
  bool json = false;
};

// Bytes of `s` that form complete UTF-8 sequences (a trailing partial
// character is held back until its remaining bytes arrive).
size_t CompleteUtf8Prefix(const std::string& s) {
  size_t i = s.size();
  size_t back = 0;
  while (i > 0 && back < 4) {
    const unsigned char c = static_cast<unsigned char>(s[i - 1]);
    if ((c & 0xC0) == 0x80) { --i; ++back; continue; }
    size_t need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    return (back + 1 >= need) ? s.size() : i - 1;
  }
  return s.size();
}

Status RunGenerate(const RunArgs& a) {
  SSMQ_ASSIGN_OR_RETURN(Model model, OpenModel(a.model));
  SSMQ_ASSIGN_OR_RETURN(auto tokenizer, ModelTokenizer(model));
  RuntimeOptions ro;
  ro.n_threads = a.threads;
  ro.f16_state = a.f16_state;
  SSMQ_ASSIGN_OR_RETURN(auto runtime, Runtime::Create(model, ro));
  if (a.n_new < 0) return Status(StatusCode::kInvalidArgument, "-n must be >= 0");

  std::vector<int32_t> prompt = tokenizer->Encode(a.prompt);
  if (prompt.empty()) {
    if (tokenizer->bos_id() < 0)
      return Status(StatusCode::kInvalidArgument, "empty prompt and the tokenizer has no BOS token");
    prompt.push_back(tokenizer->bos_id());
  }
  SamplingOptions opts;
  opts.greedy = a.greedy || a.temperature <= 0.0f;
  opts.temperature = a.temperature;
  opts.top_p = a.top_p;
  opts.seed = a.seed;
  opts.max_token_id = tokenizer->vocab_size();

  std::vector<int32_t> generated;
  std::string printed;  // bytes of generated text already written to stdout
  if (!a.json) {
    std::fputs(a.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  auto on_token = [&](int32_t id) {
    if (a.json) return;
    generated.push_back(id);
    std::string text = tokenizer->Decode(generated);
    const size_t ready = CompleteUtf8Prefix(text);
    if (ready > printed.size()) {
      std::fwrite(text.data() + printed.size(), 1, ready - printed.size(), stdout);
      std::fflush(stdout);
      printed.assign(text, 0, ready);
    }
  };
  SSMQ_ASSIGN_OR_RETURN(std::vector<int32_t> ids, Generate(*runtime, prompt, a.n_new, opts, on_token));
  if (a.json) {
    nlohmann::json j;
    j["ids"] = ids;
    j["text"] = tokenizer->Decode(ids);
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::string text = tokenizer->Decode(generated);
    if (text.size() > printed.size()) std::fwrite(text.data() + printed.size(), 1, text.size() - printed.size(), stdout);
    std::printf("\n");
  }
  return Status::Ok();
}

void Setup(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  auto* sub = app.add_subcommand("run", "Generate text from a prompt");
  sub->add_option("model", args->model, ".ssmq file or Hugging Face directory")->required();
  sub->add_option("-p,--prompt", args->prompt, "prompt text")->required();
  sub->add_option("-n,--n-predict", args->n_new, "tokens to generate")->capture_default_str();
  auto* greedy = sub->add_flag("--greedy", args->greedy, "argmax decoding");
  sub->add_option("--temperature", args->temperature, "sampling temperature")
      ->capture_default_str()->excludes(greedy);
  sub->add_option("--top-p", args->top_p, "nucleus sampling mass")->capture_default_str()->excludes(greedy);
  sub->add_option("--seed", args->seed, "sampling seed")->capture_default_str();
  sub->add_option("-t,--threads", args->threads, "threads (0 = all cores)")->capture_default_str();
  sub->add_flag("--f16-state", args->f16_state, kF16StateHelp);
  sub->add_flag("--json", args->json, "print {\"ids\": [...], \"text\": ...}");
  sub->callback([args] {
    Status st = RunGenerate(*args);
    if (!st.ok()) ReportError(st);
  });
}
SSMQ_REGISTER_COMMAND(20, Setup);

}  // namespace
}  // namespace ssmq::cli
