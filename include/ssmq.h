/* ssmq C API: read .ssmq model files and run them on the reference CPU
 * runtime from C or any language with a C FFI.
 *
 * Conventions
 *  - Every handle is opaque and created/freed by the library (ssmq_*_free
 *    accepts NULL). Handles are not thread-safe: use one context per thread.
 *  - Functions that can fail return ssmq_status (SSMQ_OK = 0). The message of
 *    the last failure on the calling thread is ssmq_last_error(); it names
 *    the field or tensor and stays valid until the next failing call on that
 *    thread. Nothing throws or exits across this boundary.
 *  - Strings are UTF-8. Returned `const char*` are owned by the handle they
 *    come from and valid while it lives.
 *  - Buffer-filling functions take a capacity and always report the size
 *    needed; too small a buffer gives SSMQ_ERR_BUFFER_TOO_SMALL.
 */
#ifndef SSMQ_H_
#define SSMQ_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SSMQ_API
#else
#define SSMQ_API __attribute__((visibility("default")))
#endif

#define SSMQ_VERSION_MAJOR 0
#define SSMQ_VERSION_MINOR 1
#define SSMQ_VERSION_PATCH 0

/* "0.1.0": the library's version (may differ from the header's macros). */
SSMQ_API const char* ssmq_version(void);

/* Same numbers as the C++ ssmq::StatusCode; never renumbered. */
typedef enum ssmq_status {
  SSMQ_OK = 0,
  SSMQ_ERR_IO = 1,
  SSMQ_ERR_TRUNCATED = 2,
  SSMQ_ERR_BAD_MAGIC = 3,
  SSMQ_ERR_UNSUPPORTED_VERSION = 4,
  SSMQ_ERR_BAD_BYTE_ORDER = 5,
  SSMQ_ERR_BAD_HEADER = 6,
  SSMQ_ERR_CHECKSUM_MISMATCH = 7,
  SSMQ_ERR_BAD_METADATA = 8,
  SSMQ_ERR_DUPLICATE_KEY = 9,
  SSMQ_ERR_DUPLICATE_TENSOR = 10,
  SSMQ_ERR_BAD_TENSOR_INFO = 11,
  SSMQ_ERR_OUT_OF_BOUNDS = 12,
  SSMQ_ERR_OVERLAP = 13,
  SSMQ_ERR_MISALIGNED = 14,
  SSMQ_ERR_UNKNOWN_TYPE = 15,
  SSMQ_ERR_LIMIT_EXCEEDED = 16,
  SSMQ_ERR_BAD_SHAPE = 17,
  SSMQ_ERR_INVALID_ARGUMENT = 18,
  SSMQ_ERR_NOT_FOUND = 19,
  SSMQ_ERR_TYPE_MISMATCH = 20,
  SSMQ_ERR_COMPRESSION = 21,
  SSMQ_ERR_UNSUPPORTED = 22,
  SSMQ_ERR_BAD_VALUE = 23,
  SSMQ_ERR_BAD_CONFIG = 24,
  SSMQ_ERR_PARSE = 25,
  SSMQ_ERR_CANCELLED = 26,
  SSMQ_ERR_BUFFER_TOO_SMALL = 64, /* C API only */
  SSMQ_ERR_INTERNAL = 65          /* C API only: an unexpected C++ exception was caught */
} ssmq_status;

/* "truncated", "not_found", ... */
SSMQ_API const char* ssmq_status_name(ssmq_status status);
/* Message of the last failure on this thread ("" if none). */
SSMQ_API const char* ssmq_last_error(void);

/* ---- model files ---- */

typedef struct ssmq_model ssmq_model;

/* Opens and validates a .ssmq file (memory-mapped). */
SSMQ_API ssmq_status ssmq_model_open(const char* path, ssmq_model** out);
/* Same from bytes in memory; the bytes are copied. */
SSMQ_API ssmq_status ssmq_model_open_memory(const void* data, size_t size, ssmq_model** out);
SSMQ_API void ssmq_model_free(ssmq_model* model);

typedef struct ssmq_model_info {
  const char* architecture; /* "mamba" or "mamba2" */
  int64_t d_model, n_layer, vocab_size, d_inner, d_state, d_conv;
  int64_t dt_rank;                     /* mamba */
  int64_t n_groups, n_heads, head_dim; /* mamba2 */
  int32_t bos_id, eos_id;              /* -1 when none */
  int32_t tokenizer_vocab_size;        /* ids the tokenizer can produce; 0 without tokenizer */
} ssmq_model_info;
SSMQ_API ssmq_status ssmq_model_get_info(const ssmq_model* model, ssmq_model_info* out);

/* Metadata: file order. Values are read with a type check (an integer read
 * as double is fine; a string read as a number is SSMQ_ERR_TYPE_MISMATCH). */
SSMQ_API size_t ssmq_model_metadata_count(const ssmq_model* model);
SSMQ_API const char* ssmq_model_metadata_key(const ssmq_model* model, size_t index); /* NULL if out of range */
SSMQ_API ssmq_status ssmq_model_metadata_int(const ssmq_model* model, const char* key, int64_t* out);
SSMQ_API ssmq_status ssmq_model_metadata_double(const ssmq_model* model, const char* key, double* out);
/* String values only; *out valid while the model lives. */
SSMQ_API ssmq_status ssmq_model_metadata_string(const ssmq_model* model, const char* key, const char** out);

/* Tensors: file order. */
#define SSMQ_MAX_RANK 8
typedef struct ssmq_tensor_info {
  const char* name;
  uint32_t type;         /* ssmq tensor type id: 0 f32, 1 f16, 2 bf16, 3 i8, 4 i32, 5 q8, 6 q4, 7 u8, 8 i64 */
  const char* type_name; /* "f32", "q4", ... */
  uint32_t rank;
  int64_t shape[SSMQ_MAX_RANK]; /* PyTorch order (outermost first) */
  uint64_t n_elements;
  uint64_t n_bytes;      /* logical bytes (what ssmq_model_tensor_data returns) */
  int is_quantized;      /* q8/q4: codes whose scales are in "<name>.scale" */
} ssmq_tensor_info;
SSMQ_API size_t ssmq_model_tensor_count(const ssmq_model* model);
SSMQ_API ssmq_status ssmq_model_tensor_info(const ssmq_model* model, size_t index, ssmq_tensor_info* out);
SSMQ_API ssmq_status ssmq_model_find_tensor(const ssmq_model* model, const char* name, size_t* index);
/* Raw stored bytes (decompressed if the file compressed them). */
SSMQ_API ssmq_status ssmq_model_tensor_data(const ssmq_model* model, size_t index, const void** data,
                                           size_t* n_bytes);
/* Dequantizes / converts a float or quantized tensor to n_elements floats. */
SSMQ_API ssmq_status ssmq_model_tensor_to_f32(const ssmq_model* model, size_t index, float* out,
                                             size_t capacity, size_t* n_written);

/* ---- tokenizer (the one embedded in the model) ---- */

SSMQ_API ssmq_status ssmq_tokenize(const ssmq_model* model, const char* text, size_t text_len, int32_t* ids,
                                  size_t capacity, size_t* n_ids);
/* Writes the text and a terminating NUL; *text_len excludes the NUL. */
SSMQ_API ssmq_status ssmq_detokenize(const ssmq_model* model, const int32_t* ids, size_t n_ids, char* text,
                                    size_t capacity, size_t* text_len);

/* ---- runtime context: one sequence with its recurrent state ---- */

typedef struct ssmq_context ssmq_context;

/* n_threads <= 0: the runtime's default. The context keeps what it needs of
 * the model alive (the model may be freed first). q8/q4 weights and the int8
 * activation sites of w8a8 / w4a8 files are executed as stored (integer
 * kernels), exactly like the `ssmq` CLI. */
SSMQ_API ssmq_status ssmq_context_create(const ssmq_model* model, int n_threads, ssmq_context** out);
SSMQ_API void ssmq_context_free(ssmq_context* ctx);

/* Feeds tokens after those already fed (one or many; state carries over).
 * Afterwards ssmq_context_logits gives the next-token logits. */
SSMQ_API ssmq_status ssmq_context_feed(ssmq_context* ctx, const int32_t* tokens, size_t n_tokens);
/* Logits after the last fed token (NULL before any token); *n_vocab = rows of the embedding. */
SSMQ_API const float* ssmq_context_logits(const ssmq_context* ctx, size_t* n_vocab);
/* argmax of the logits over ids the tokenizer can produce (ties: lowest id). */
SSMQ_API ssmq_status ssmq_context_greedy_token(const ssmq_context* ctx, int32_t* token);
/* Zeroes the state (a new sequence). */
SSMQ_API ssmq_status ssmq_context_reset(ssmq_context* ctx);
/* The recurrent state (conv + ssm f32, int8 ssm codes for w8a8 / w4a8 files)
 * and the last logits as bytes; restore accepts only a state saved by the
 * same model. */
SSMQ_API size_t ssmq_context_state_size(const ssmq_context* ctx);
SSMQ_API ssmq_status ssmq_context_state_save(const ssmq_context* ctx, void* buf, size_t capacity);
SSMQ_API ssmq_status ssmq_context_state_restore(ssmq_context* ctx, const void* buf, size_t size);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SSMQ_H_ */
