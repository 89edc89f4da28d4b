// The C API (include/ssmq.h) over the C++ libraries. Every entry point
// catches everything: no exception crosses the boundary; failures set the
// thread's last error message and return a status code.
#include "include/ssmq.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "convert/gguf_import.h"
#include "format/ssmq_file.h"
#include "model/arch.h"
#include "model/model_io.h"
#include "runtime_cpu/runtime.h"
#include "tokenizer/tokenizer.h"

namespace {

thread_local std::string g_last_error;

ssmq_status Fail(const ssmq::Status& st) {
  g_last_error = st.ToString();
  return static_cast<ssmq_status>(st.code());
}
ssmq_status Fail(ssmq_status code, const std::string& message) {
  g_last_error = message;
  return code;
}

// Runs fn, turning a stray exception into SSMQ_ERR_INTERNAL.
template <class F>
ssmq_status Guard(F&& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return Fail(SSMQ_ERR_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    return Fail(SSMQ_ERR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return Fail(SSMQ_ERR_INTERNAL, "internal error");
  }
}

#define SSMQ_C_REQUIRE(cond, what) \
  if (!(cond)) return Fail(SSMQ_ERR_INVALID_ARGUMENT, what)

}  // namespace

namespace ssmq_capi_detail {
// What a model handle and its contexts share.
struct ModelData {
  std::vector<uint8_t> buffer;  // the bytes, when opened from memory
  std::shared_ptr<ssmq::SsmqFile> file;
  ssmq::Model model;
  std::unique_ptr<ssmq::Tokenizer> tokenizer;  // null when the model has none
  std::string arch;
};
}  // namespace ssmq_capi_detail
using ssmq_capi_detail::ModelData;

struct ssmq_model {
  std::shared_ptr<ModelData> data;
};

struct ssmq_context {
  std::shared_ptr<ModelData> data;
  std::unique_ptr<ssmq::Runtime> runtime;
  ssmq::RecurrentState state;
  std::vector<float> logits;       // [n_vocab] after the last token
  std::vector<float> prefill_out;  // scratch [n][n_vocab]
  bool has_logits = false;
};

extern "C" {

const char* ssmq_version(void) { return "0.1.0"; }

const char* ssmq_status_name(ssmq_status status) {
  if (status == SSMQ_ERR_BUFFER_TOO_SMALL) return "buffer_too_small";
  if (status == SSMQ_ERR_INTERNAL) return "internal";
  return ssmq::StatusCodeName(static_cast<ssmq::StatusCode>(status));
}

const char* ssmq_last_error(void) { return g_last_error.c_str(); }

static ssmq_status FinishOpen(std::shared_ptr<ModelData> d, ssmq::Result<std::unique_ptr<ssmq::SsmqFile>> file,
                              ssmq_model** out) {
  if (!file.ok()) return Fail(file.status());
  d->file = std::shared_ptr<ssmq::SsmqFile>(std::move(file).value());
  ssmq::Result<ssmq::Model> m = ssmq::LoadModelFromFile(d->file);
  if (!m.ok()) return Fail(m.status());
  d->model = std::move(m).value();
  d->arch = ssmq::ArchName(d->model.hp.arch);
  if (!d->model.tokenizer_json.empty()) {
    auto tok = ssmq::Tokenizer::FromJson(d->model.tokenizer_json);
    if (!tok.ok()) return Fail(tok.status().WithContext("embedded tokenizer"));
    d->tokenizer = std::move(tok).value();
  }
  *out = new ssmq_model{std::move(d)};
  return SSMQ_OK;
}

ssmq_status ssmq_model_open(const char* path, ssmq_model** out) {
  return Guard([&] {
    SSMQ_C_REQUIRE(path && out, "ssmq_model_open: path and out must not be NULL");
    *out = nullptr;
    auto d = std::make_shared<ModelData>();
    return FinishOpen(d, ssmq::SsmqFile::OpenMmap(path), out);
  });
}

ssmq_status ssmq_model_open_memory(const void* data, size_t size, ssmq_model** out) {
  return Guard([&] {
    SSMQ_C_REQUIRE((data || size == 0) && out, "ssmq_model_open_memory: data and out must not be NULL");
    *out = nullptr;
    auto d = std::make_shared<ModelData>();
    d->buffer.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
    return FinishOpen(d, ssmq::SsmqFile::OpenBuffer(d->buffer), out);
  });
}

void ssmq_model_free(ssmq_model* model) { delete model; }

ssmq_status ssmq_model_get_info(const ssmq_model* model, ssmq_model_info* out) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && out, "ssmq_model_get_info: model and out must not be NULL");
    const ModelData& d = *model->data;
    const ssmq::HParams& hp = d.model.hp;
    *out = ssmq_model_info{};
    out->architecture = d.arch.c_str();
    out->d_model = hp.d_model;
    out->n_layer = hp.n_layer;
    out->vocab_size = hp.vocab_size;
    out->d_inner = hp.d_inner;
    out->d_state = hp.d_state;
    out->d_conv = hp.d_conv;
    out->dt_rank = hp.dt_rank;
    out->n_groups = hp.n_groups;
    out->n_heads = hp.n_heads;
    out->head_dim = hp.head_dim;
    out->bos_id = d.tokenizer ? d.tokenizer->bos_id() : -1;
    out->eos_id = d.tokenizer ? d.tokenizer->eos_id() : -1;
    out->tokenizer_vocab_size = d.tokenizer ? d.tokenizer->vocab_size() : 0;
    return SSMQ_OK;
  });
}

size_t ssmq_model_metadata_count(const ssmq_model* model) {
  return model ? model->data->file->metadata().size() : 0;
}

const char* ssmq_model_metadata_key(const ssmq_model* model, size_t index) {
  if (!model || index >= model->data->file->metadata().size()) return nullptr;
  return model->data->file->metadata().entries()[index].key.c_str();
}

static const ssmq::MetaValue* FindMeta(const ssmq_model* model, const char* key) {
  return model->data->file->metadata().Find(key);
}

ssmq_status ssmq_model_metadata_int(const ssmq_model* model, const char* key, int64_t* out) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && key && out, "ssmq_model_metadata_int: arguments must not be NULL");
    const ssmq::MetaValue* v = FindMeta(model, key);
    if (!v) return Fail(SSMQ_ERR_NOT_FOUND, std::string("metadata key '") + key + "' not found");
    auto r = v->AsInt();
    if (!r.ok()) return Fail(r.status().WithContext(std::string("metadata '") + key + "'"));
    *out = *r;
    return SSMQ_OK;
  });
}

ssmq_status ssmq_model_metadata_double(const ssmq_model* model, const char* key, double* out) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && key && out, "ssmq_model_metadata_double: arguments must not be NULL");
    const ssmq::MetaValue* v = FindMeta(model, key);
    if (!v) return Fail(SSMQ_ERR_NOT_FOUND, std::string("metadata key '") + key + "' not found");
    auto r = v->AsDouble();
    if (!r.ok()) return Fail(r.status().WithContext(std::string("metadata '") + key + "'"));
    *out = *r;
    return SSMQ_OK;
  });
}

ssmq_status ssmq_model_metadata_string(const ssmq_model* model, const char* key, const char** out) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && key && out, "ssmq_model_metadata_string: arguments must not be NULL");
    const ssmq::MetaValue* v = FindMeta(model, key);
    if (!v) return Fail(SSMQ_ERR_NOT_FOUND, std::string("metadata key '") + key + "' not found");
    const std::string* s = std::get_if<std::string>(&v->v);
    if (v->type != ssmq::MetaType::kString || !s)
      return Fail(SSMQ_ERR_TYPE_MISMATCH, std::string("metadata '") + key + "' is not a string");
    *out = s->c_str();
    return SSMQ_OK;
  });
}

size_t ssmq_model_tensor_count(const ssmq_model* model) { return model ? model->data->file->tensors().size() : 0; }

ssmq_status ssmq_model_tensor_info(const ssmq_model* model, size_t index, ssmq_tensor_info* out) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && out, "ssmq_model_tensor_info: model and out must not be NULL");
    const auto& tensors = model->data->file->tensors();
    if (index >= tensors.size())
      return Fail(SSMQ_ERR_INVALID_ARGUMENT, "tensor index " + std::to_string(index) + " out of range");
    const ssmq::TensorInfo& t = tensors[index];
    *out = ssmq_tensor_info{};
    out->name = t.name.c_str();
    out->type = static_cast<uint32_t>(t.type);
    out->type_name = ssmq::TensorTypeName(t.type).data();  // the table's names are literals (NUL-terminated)
    out->rank = static_cast<uint32_t>(t.shape.size());
    for (size_t i = 0; i < t.shape.size() && i < SSMQ_MAX_RANK; ++i) out->shape[i] = t.shape[i];
    out->n_elements = t.numel();
    out->n_bytes = t.size;
    out->is_quantized = ssmq::TraitsOf(t.type).is_quantized ? 1 : 0;
    return SSMQ_OK;
  });
}

ssmq_status ssmq_model_find_tensor(const ssmq_model* model, const char* name, size_t* index) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && name && index, "ssmq_model_find_tensor: arguments must not be NULL");
    const auto& tensors = model->data->file->tensors();
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].name == name) {
        *index = i;
        return SSMQ_OK;
      }
    }
    return Fail(SSMQ_ERR_NOT_FOUND, std::string("tensor '") + name + "' not found");
  });
}

ssmq_status ssmq_model_tensor_data(const ssmq_model* model, size_t index, const void** data, size_t* n_bytes) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && data && n_bytes, "ssmq_model_tensor_data: arguments must not be NULL");
    const auto& tensors = model->data->file->tensors();
    if (index >= tensors.size())
      return Fail(SSMQ_ERR_INVALID_ARGUMENT, "tensor index " + std::to_string(index) + " out of range");
    auto bytes = model->data->file->TensorData(tensors[index]);
    if (!bytes.ok()) return Fail(bytes.status());
    *data = bytes->data();
    *n_bytes = bytes->size();
    return SSMQ_OK;
  });
}

ssmq_status ssmq_model_tensor_to_f32(const ssmq_model* model, size_t index, float* out, size_t capacity,
                                     size_t* n_written) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && (out || capacity == 0), "ssmq_model_tensor_to_f32: model/out must not be NULL");
    const auto& tensors = model->data->file->tensors();
    if (index >= tensors.size())
      return Fail(SSMQ_ERR_INVALID_ARGUMENT, "tensor index " + std::to_string(index) + " out of range");
    const ssmq::TensorInfo& t = tensors[index];
    if (n_written) *n_written = t.numel();
    if (capacity < t.numel())
      return Fail(SSMQ_ERR_BUFFER_TOO_SMALL, "tensor '" + t.name + "' has " + std::to_string(t.numel()) +
                                                 " elements, the buffer holds " + std::to_string(capacity));
    auto values = model->data->file->ReadAsF32(t);
    if (!values.ok()) return Fail(values.status());
    if (!values->empty()) std::memcpy(out, values->data(), values->size() * sizeof(float));
    return SSMQ_OK;
  });
}

ssmq_status ssmq_tokenize(const ssmq_model* model, const char* text, size_t text_len, int32_t* ids, size_t capacity,
                          size_t* n_ids) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && (text || text_len == 0) && (ids || capacity == 0) && n_ids,
                   "ssmq_tokenize: arguments must not be NULL");
    if (!model->data->tokenizer) return Fail(SSMQ_ERR_NOT_FOUND, "the model has no embedded tokenizer");
    const std::vector<int32_t> v = model->data->tokenizer->Encode(std::string_view(text ? text : "", text_len));
    *n_ids = v.size();
    if (capacity < v.size())
      return Fail(SSMQ_ERR_BUFFER_TOO_SMALL, "the text has " + std::to_string(v.size()) +
                                                 " tokens, the buffer holds " + std::to_string(capacity));
    if (!v.empty()) std::memcpy(ids, v.data(), v.size() * sizeof(int32_t));
    return SSMQ_OK;
  });
}

ssmq_status ssmq_detokenize(const ssmq_model* model, const int32_t* ids, size_t n_ids, char* text, size_t capacity,
                            size_t* text_len) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && (ids || n_ids == 0) && (text || capacity == 0) && text_len,
                   "ssmq_detokenize: arguments must not be NULL");
    if (!model->data->tokenizer) return Fail(SSMQ_ERR_NOT_FOUND, "the model has no embedded tokenizer");
    const std::string s = model->data->tokenizer->Decode(std::span<const int32_t>(ids, n_ids));
    *text_len = s.size();
    if (capacity < s.size() + 1)
      return Fail(SSMQ_ERR_BUFFER_TOO_SMALL, "the text needs " + std::to_string(s.size() + 1) +
                                                 " bytes with its NUL, the buffer holds " + std::to_string(capacity));
    std::memcpy(text, s.data(), s.size());
    text[s.size()] = '\0';
    return SSMQ_OK;
  });
}

ssmq_status ssmq_context_create(const ssmq_model* model, int n_threads, ssmq_context** out) {
  return Guard([&] {
    SSMQ_C_REQUIRE(model && out, "ssmq_context_create: model and out must not be NULL");
    *out = nullptr;
    auto ctx = std::make_unique<ssmq_context>();
    ctx->data = model->data;
    // The runtime executes q8/q4 weights and int8 activation sites as stored.
    const ssmq::Model* run_model = &ctx->data->model;
    auto rt = ssmq::Runtime::Create(*run_model, n_threads > 0 ? n_threads : 0);
    if (!rt.ok()) return Fail(rt.status());
    ctx->runtime = std::move(rt).value();
    ctx->state = ctx->runtime->NewState(1);
    *out = ctx.release();
    return SSMQ_OK;
  });
}

void ssmq_context_free(ssmq_context* ctx) { delete ctx; }

ssmq_status ssmq_context_feed(ssmq_context* ctx, const int32_t* tokens, size_t n_tokens) {
  return Guard([&] {
    SSMQ_C_REQUIRE(ctx && tokens && n_tokens > 0, "ssmq_context_feed: needs a context and at least one token");
    const int64_t vocab = ctx->runtime->hparams().vocab_size;
    for (size_t i = 0; i < n_tokens; ++i)
      if (tokens[i] < 0 || tokens[i] >= vocab)
        return Fail(SSMQ_ERR_INVALID_ARGUMENT, "token " + std::to_string(tokens[i]) + " at position " +
                                                   std::to_string(i) + " is outside the vocabulary");
    ssmq::Status st;
    if (n_tokens == 1) {
      st = ctx->runtime->Step(std::span<const int32_t>(tokens, 1), ctx->state, ctx->logits);
    } else {
      st = ctx->runtime->Prefill(std::span<const int32_t>(tokens, n_tokens), 1, static_cast<int64_t>(n_tokens),
                                 ctx->state, ctx->prefill_out);
      if (st.ok())
        ctx->logits.assign(ctx->prefill_out.end() - vocab, ctx->prefill_out.end());
    }
    if (!st.ok()) {
      ctx->has_logits = false;
      return Fail(st);
    }
    ctx->has_logits = true;
    return SSMQ_OK;
  });
}

const float* ssmq_context_logits(const ssmq_context* ctx, size_t* n_vocab) {
  if (n_vocab) *n_vocab = ctx && ctx->has_logits ? ctx->logits.size() : 0;
  return ctx && ctx->has_logits ? ctx->logits.data() : nullptr;
}

ssmq_status ssmq_context_greedy_token(const ssmq_context* ctx, int32_t* token) {
  return Guard([&] {
    SSMQ_C_REQUIRE(ctx && token, "ssmq_context_greedy_token: arguments must not be NULL");
    if (!ctx->has_logits) return Fail(SSMQ_ERR_INVALID_ARGUMENT, "no logits yet: feed tokens first");
    size_t n = ctx->logits.size();
    if (ctx->data->tokenizer && ctx->data->tokenizer->vocab_size() > 0)
      n = std::min(n, static_cast<size_t>(ctx->data->tokenizer->vocab_size()));
    size_t best = 0;
    for (size_t i = 1; i < n; ++i)
      if (ctx->logits[i] > ctx->logits[best]) best = i;
    *token = static_cast<int32_t>(best);
    return SSMQ_OK;
  });
}

ssmq_status ssmq_context_reset(ssmq_context* ctx) {
  return Guard([&] {
    SSMQ_C_REQUIRE(ctx, "ssmq_context_reset: ctx must not be NULL");
    ctx->runtime->ResetState(ctx->state);
    ctx->has_logits = false;
    return SSMQ_OK;
  });
}

// Saved state layout: u32 magic "SQS2", u32 has_logits, u64 n_conv, u64 n_ssm,
// u64 n_ssm_q, u64 n_logits, then conv and ssm (f32), the int8 state codes
// (w8a8 / w4a8 files), logits (f32).
namespace {
constexpr uint32_t kStateMagic = 0x32535153;
constexpr size_t kStateHeader = 40;
}  // namespace

size_t ssmq_context_state_size(const ssmq_context* ctx) {
  if (!ctx) return 0;
  return kStateHeader +
         (ctx->state.conv.size() + ctx->state.ssm.size() + ctx->logits.size()) * sizeof(float) +
         ctx->state.ssm_q.size();
}

ssmq_status ssmq_context_state_save(const ssmq_context* ctx, void* buf, size_t capacity) {
  return Guard([&] {
    SSMQ_C_REQUIRE(ctx && (buf || capacity == 0), "ssmq_context_state_save: arguments must not be NULL");
    const size_t need = ssmq_context_state_size(ctx);
    if (capacity < need)
      return Fail(SSMQ_ERR_BUFFER_TOO_SMALL, "the state needs " + std::to_string(need) + " bytes");
    uint8_t* p = static_cast<uint8_t*>(buf);
    const uint32_t head[2] = {kStateMagic, ctx->has_logits ? 1u : 0u};
    const uint64_t sizes[4] = {ctx->state.conv.size(), ctx->state.ssm.size(),
                               ctx->state.ssm_q.size(), ctx->logits.size()};
    std::memcpy(p, head, 8);
    std::memcpy(p + 8, sizes, 32);
    p += kStateHeader;
    for (const std::vector<float>* v : {&ctx->state.conv, &ctx->state.ssm}) {
      if (!v->empty()) std::memcpy(p, v->data(), v->size() * sizeof(float));
      p += v->size() * sizeof(float);
    }
    if (!ctx->state.ssm_q.empty()) std::memcpy(p, ctx->state.ssm_q.data(), ctx->state.ssm_q.size());
    p += ctx->state.ssm_q.size();
    if (!ctx->logits.empty()) std::memcpy(p, ctx->logits.data(), ctx->logits.size() * sizeof(float));
    return SSMQ_OK;
  });
}

ssmq_status ssmq_context_state_restore(ssmq_context* ctx, const void* buf, size_t size) {
  return Guard([&] {
    SSMQ_C_REQUIRE(ctx && buf, "ssmq_context_state_restore: arguments must not be NULL");
    if (size < kStateHeader) return Fail(SSMQ_ERR_TRUNCATED, "saved state is shorter than its header");
    const uint8_t* p = static_cast<const uint8_t*>(buf);
    uint32_t head[2];
    uint64_t sizes[4];
    std::memcpy(head, p, 8);
    std::memcpy(sizes, p + 8, 32);
    if (head[0] != kStateMagic) return Fail(SSMQ_ERR_BAD_MAGIC, "not a saved ssmq context state");
    const int64_t vocab = ctx->runtime->hparams().vocab_size;
    if (sizes[0] != ctx->state.conv.size() || sizes[1] != ctx->state.ssm.size() ||
        sizes[2] != ctx->state.ssm_q.size() ||
        (sizes[3] != 0 && sizes[3] != static_cast<uint64_t>(vocab)))
      return Fail(SSMQ_ERR_BAD_SHAPE, "saved state was made by a different model");
    const size_t need = kStateHeader + (sizes[0] + sizes[1] + sizes[3]) * sizeof(float) + sizes[2];
    if (size != need)
      return Fail(SSMQ_ERR_TRUNCATED, "saved state has " + std::to_string(size) + " bytes, expected " +
                                          std::to_string(need));
    p += kStateHeader;
    std::memcpy(ctx->state.conv.data(), p, sizes[0] * sizeof(float));
    p += sizes[0] * sizeof(float);
    if (sizes[1]) std::memcpy(ctx->state.ssm.data(), p, sizes[1] * sizeof(float));
    p += sizes[1] * sizeof(float);
    if (sizes[2]) std::memcpy(ctx->state.ssm_q.data(), p, sizes[2]);
    p += sizes[2];
    std::vector<float> logits(sizes[3]);
    if (sizes[3]) std::memcpy(logits.data(), p, sizes[3] * sizeof(float));
    ctx->logits = std::move(logits);
    ctx->has_logits = head[1] != 0 && sizes[3] != 0;
    return SSMQ_OK;
  });
}

}  // extern "C"
