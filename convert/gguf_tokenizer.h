// The tokenizer between GGUF's tokenizer.ggml.* keys and the Hugging Face
// tokenizer.json text a Model carries. Only byte-level BPE ("gpt2" in GGUF,
// model type "BPE" with a ByteLevel pre-tokenizer in tokenizer.json) with the
// GPT-2 pre-tokenizer regex ("gpt-2" in GGUF) is supported both ways.
//
// token_type values (llama.cpp's LLAMA_TOKEN_TYPE): 1 normal, 2 unknown,
// 3 control (special added tokens), 4 user defined (non-special added
// tokens), 5 unused (padding ids "[PAD<i>]"), 6 byte.
#pragma once

#include <cstdint>
#include <string>

#include "convert/gguf_writer.h"
#include "format/metadata.h"
#include "format/status.h"

namespace ssmq::gguf {

// Synthesizes an equivalent tokenizer.json from tokenizer.ggml.{model, pre,
// tokens, token_type, merges}: vocab = tokens (minus unused padding ids),
// merges, control/user-defined tokens as added_tokens, ByteLevel
// pre-tokenizer/post-processor/decoder. kUnsupported for other models or
// pre-tokenizers, kBadMetadata for inconsistent arrays.
Result<std::string> TokenizerJsonFromGguf(const Metadata& md);

// Writes tokenizer.ggml.* keys the way llama.cpp's converter does for a
// gpt2 BPE tokenizer: model, pre, tokens (vocab_size of them, "[PAD<i>]"
// for ids the tokenizer lacks), token_type, merges ("a b"), then the
// bos/eos/unknown/padding ids from `extra` (tokenizer.bos_id, .eos_id,
// .unk_id, .pad_id; unknown falls back to the BPE unk_token, then to eos).
Status WriteGgufTokenizer(const std::string& tokenizer_json, int64_t vocab_size, const Metadata& extra,
                          GgufWriter& w);

}  // namespace ssmq::gguf
