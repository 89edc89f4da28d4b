// Synthetic Hugging Face checkpoints at the published Mamba shapes (synth.h).
// Shapes come from the preset table and model/arch.h's ExpectedTensors (the
// same table the importer checks against); values are drawn per tensor from
// a (seed, name) stream and streamed to model.safetensors in chunks, so the
// largest preset (~2.8 GB in f16) never sits in memory.
#include "convert/synth.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "convert/safetensors.h"
#include "format/quant.h"
#include "model/arch.h"
#include "tokenizer/byte_level.h"

namespace ssmq {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// Published shapes. Mamba1: state-spaces/mamba-*-hf (vocab 50277 padded to a
// multiple of 8 = 50280). Mamba2: state-spaces/mamba2-* (vocab 50277 padded to
// a multiple of 16 = 50288, pad_vocab_size_multiple 16 in their config.json).
// All tie the LM head to the embedding; conv bias yes, linear biases no.
constexpr SynthPreset kPresets[] = {
    // name           arch           d_model n_layer vocab  d_state d_conv expand head_dim n_groups chunk
    {"mamba-130m", Arch::kMamba1, 768, 24, 50280, 16, 4, 2, 0, 1, 0},
    {"mamba-370m", Arch::kMamba1, 1024, 48, 50280, 16, 4, 2, 0, 1, 0},
    {"mamba-790m", Arch::kMamba1, 1536, 48, 50280, 16, 4, 2, 0, 1, 0},
    {"mamba-1.4b", Arch::kMamba1, 2048, 48, 50280, 16, 4, 2, 0, 1, 0},
    {"mamba2-130m", Arch::kMamba2, 768, 24, 50288, 128, 4, 2, 64, 1, 256},
    {"mamba2-370m", Arch::kMamba2, 1024, 48, 50288, 128, 4, 2, 64, 1, 256},
    {"mamba2-780m", Arch::kMamba2, 1536, 48, 50288, 128, 4, 2, 64, 1, 256},
    {"mamba2-1.3b", Arch::kMamba2, 2048, 48, 50288, 128, 4, 2, 64, 1, 256},
};

std::string PresetList() {
  std::string s;
  for (const SynthPreset& p : kPresets) s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

inline uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

const char* DtypeName(TensorType t) {
  switch (t) {
    case TensorType::kF32: return "F32";
    case TensorType::kF16: return "F16";
    case TensorType::kBF16: return "BF16";
    default: return nullptr;
  }
}

const char* TorchDtypeName(TensorType t) {
  switch (t) {
    case TensorType::kF32: return "float32";
    case TensorType::kF16: return "float16";
    default: return "bfloat16";
  }
}

// Checkpoint names of our tensors (the inverse of model/arch.h's
// MapHfTensorName, which the tests check against).
std::string HfName(Arch arch, const TensorSpec& spec) {
  const std::string layer = "backbone.layers." + std::to_string(spec.layer) + ".";
  switch (spec.role) {
    case TensorRole::kTokenEmbd: return "backbone.embeddings.weight";
    case TensorRole::kOutputNorm: return "backbone.norm_f.weight";
    case TensorRole::kOutput: return "lm_head.weight";
    case TensorRole::kNorm: return layer + "norm.weight";
    case TensorRole::kInProj: return layer + "mixer.in_proj.weight";
    case TensorRole::kInProjBias: return layer + "mixer.in_proj.bias";
    case TensorRole::kConvW: return layer + "mixer.conv1d.weight";
    case TensorRole::kConvB: return layer + "mixer.conv1d.bias";
    case TensorRole::kXProj: return layer + "mixer.x_proj.weight";
    case TensorRole::kDtProjW: return layer + "mixer.dt_proj.weight";
    case TensorRole::kDtProjB: return layer + (arch == Arch::kMamba1 ? "mixer.dt_proj.bias" : "mixer.dt_bias");
    case TensorRole::kALog: return layer + "mixer.A_log";
    case TensorRole::kD: return layer + "mixer.D";
    case TensorRole::kSsmNorm: return layer + "mixer.norm.weight";
    case TensorRole::kOutProj: return layer + "mixer.out_proj.weight";
    case TensorRole::kOutProjBias: return layer + "mixer.out_proj.bias";
  }
  return spec.name;
}

}  // namespace

std::span<const SynthPreset> SynthPresets() { return kPresets; }

Result<Arch> ParseSynthArch(std::string_view name) {
  if (name == "mamba") return Arch::kMamba1;
  if (name == "mamba2") return Arch::kMamba2;
  return Status(StatusCode::kInvalidArgument, "unknown architecture '" + std::string(name) + "' (mamba or mamba2)");
}

Result<SynthPreset> FindSynthPreset(std::string_view name, std::optional<Arch> arch) {
  for (const SynthPreset& p : kPresets) {
    const std::string_view full = p.name;
    const std::string_view size = full.substr(full.find('-') + 1);
    if (name == full) {
      if (arch && *arch != p.arch)
        return Status(StatusCode::kInvalidArgument, "preset '" + std::string(name) + "' is a " + ArchName(p.arch) +
                                                        " model, not " + ArchName(*arch));
      return p;
    }
    if (arch && *arch == p.arch && name == size) return p;
  }
  return Status(StatusCode::kNotFound, "unknown preset '" + std::string(name) + "' (presets: " + PresetList() + ")");
}

HParams SynthHParams(const SynthPreset& p) {
  HParams hp;
  hp.arch = p.arch;
  hp.d_model = p.d_model;
  hp.n_layer = p.n_layer;
  hp.vocab_size = p.vocab_size;
  hp.d_inner = p.expand * p.d_model;
  hp.d_state = p.d_state;
  hp.d_conv = p.d_conv;
  hp.tied_embeddings = true;
  hp.conv_bias = true;
  hp.proj_bias = false;
  hp.residual_in_fp32 = true;
  hp.norm_eps = 1e-5;
  if (p.arch == Arch::kMamba1) {
    hp.dt_rank = (p.d_model + 15) / 16;
  } else {
    hp.head_dim = p.head_dim;
    hp.n_heads = hp.d_inner / p.head_dim;
    hp.n_groups = p.n_groups;
    hp.chunk_size = p.chunk_size;
    hp.norm_group_size = hp.d_inner;
  }
  return hp;
}

uint64_t SynthTensor::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::vector<SynthTensor> SynthTensorPlan(const HParams& hp) {
  std::vector<SynthTensor> plan;
  const double n_layer = static_cast<double>(hp.n_layer);
  auto inv_sqrt = [](int64_t fan_in) { return 1.0 / std::sqrt(static_cast<double>(fan_in)); };
  for (const TensorSpec& spec : ExpectedTensors(hp)) {
    SynthTensor t;
    t.hf_name = HfName(hp.arch, spec);
    t.shape = spec.shape;
    switch (spec.role) {
      case TensorRole::kTokenEmbd:
      case TensorRole::kOutput:
        t.init = SynthInit::kNormal;  // nn.init.normal_(std=0.02)
        t.scale = 0.02;
        break;
      case TensorRole::kOutputNorm:
      case TensorRole::kNorm:
      case TensorRole::kSsmNorm:
      case TensorRole::kD:
        t.init = SynthInit::kOnes;
        break;
      case TensorRole::kInProj:
      case TensorRole::kXProj:
      case TensorRole::kDtProjW:  // mamba_ssm dt_init "random": U(+-dt_rank^-0.5)
        t.init = SynthInit::kUniform;  // nn.Linear's kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))
        t.scale = inv_sqrt(spec.shape[1]);
        break;
      case TensorRole::kOutProj:  // rescale_prenorm_residual: / sqrt(n_residuals_per_layer * n_layer)
        t.init = SynthInit::kUniform;
        t.scale = inv_sqrt(spec.shape[1]) / std::sqrt(n_layer);
        break;
      case TensorRole::kConvW:  // nn.Conv1d, depthwise: fan_in = d_conv; stored [C, 1, K]
        t.init = SynthInit::kUniform;
        t.scale = inv_sqrt(hp.d_conv);
        t.shape = {spec.shape[0], 1, spec.shape[1]};
        break;
      case TensorRole::kConvB:
        t.init = SynthInit::kUniform;
        t.scale = inv_sqrt(hp.d_conv);
        break;
      case TensorRole::kInProjBias:
      case TensorRole::kOutProjBias:
        t.init = SynthInit::kUniform;
        t.scale = inv_sqrt(spec.role == TensorRole::kInProjBias ? hp.d_model : hp.d_inner);
        break;
      case TensorRole::kDtProjB:
        t.init = SynthInit::kDtBias;
        break;
      case TensorRole::kALog:
        t.init = hp.arch == Arch::kMamba1 ? SynthInit::kALogMamba1 : SynthInit::kALogMamba2;
        break;
    }
    plan.push_back(std::move(t));
  }
  return plan;
}

// ---- random stream ----

SynthRng::SynthRng(uint64_t seed, std::string_view stream) {
  uint64_t x = seed ^ Fnv1a64(stream);
  for (uint64_t& s : s_) s = SplitMix64(x);
}

uint64_t SynthRng::Next() {  // xoshiro256**
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double SynthRng::Uniform01() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

double SynthRng::Normal() {  // Marsaglia's polar method (no trigonometry)
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2.0 * Uniform01() - 1.0;
    v = 2.0 * Uniform01() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double m = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * m;
  has_spare_ = true;
  return u * m;
}

// ---- tokenizer ----

Result<std::string> SynthTokenizerJson(int64_t vocab_size) {
  constexpr int64_t kBase = 257;  // <|endoftext|> + 256 byte tokens
  if (vocab_size < kBase || vocab_size > kBase + 256 * 256)
    return Status(StatusCode::kInvalidArgument, "synthetic tokenizer: vocab_size " + std::to_string(vocab_size) +
                                                    " is outside [257, 65793]");
  // Byte tokens in GPT-2's order (printable bytes first, as in its vocab).
  std::vector<uint8_t> byte_order;
  for (int b = 0; b < 256; ++b)
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) byte_order.push_back(static_cast<uint8_t>(b));
  for (int b = 0; b < 256; ++b)
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) byte_order.push_back(static_cast<uint8_t>(b));

  // Merge priority: common English characters first, then the rest by value.
  const std::string common =
      " etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ\n0123456789.,'\"-!?;:()[]&*/_#$%@+=<>^`{|}~\\\t";
  std::vector<uint8_t> priority;
  std::vector<bool> used(256, false);
  for (unsigned char c : common)
    if (!used[c]) used[c] = true, priority.push_back(c);
  for (int b = 0; b < 256; ++b)
    if (!used[b]) priority.push_back(static_cast<uint8_t>(b));

  auto spell = [](uint8_t b) {
    std::string s;
    AppendUtf8(ByteToUnicode(b), &s);
    return s;
  };
  // vocab and merges are written as text: nlohmann's ordered_json finds keys
  // by linear search, which is quadratic for 50k entries.
  // (Appended piece by piece: `"," + std::string&&` sets off GCC 12's false
  // -Wrestrict on the inlined insert, GCC bug 105329.)
  auto quoted = [](const std::string& s) { return Json(s).dump(); };
  std::string vocab = "{";
  vocab += quoted("<|endoftext|>");
  vocab += ":0";
  int64_t id = 1;
  auto add_vocab = [&](const std::string& token) {
    vocab += ',';
    vocab += quoted(token);
    vocab += ':';
    vocab += std::to_string(id++);
  };
  for (uint8_t b : byte_order) add_vocab(spell(b));
  // Two-byte tokens: all pairs among the first k priority bytes before any
  // pair that involves byte k+1.
  std::string merges = "[";
  for (size_t k = 0; k < priority.size() && id < vocab_size; ++k) {
    auto add = [&](uint8_t a, uint8_t b) {
      if (id >= vocab_size) return;
      add_vocab(spell(a) + spell(b));
      merges += merges.size() > 1 ? ",[" : "[";
      merges += quoted(spell(a));
      merges += ',';
      merges += quoted(spell(b));
      merges += ']';
    };
    for (size_t j = 0; j < k; ++j) {
      add(priority[j], priority[k]);
      add(priority[k], priority[j]);
    }
    add(priority[k], priority[k]);
  }
  vocab += "}";
  merges += "]";

  auto byte_level = [](bool add_prefix_space) {
    return Json{{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true},
                {"use_regex", true}};
  };
  Json j = Json::object();
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = Json::array({Json{{"id", 0}, {"content", "<|endoftext|>"}, {"single_word", false},
                                        {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                                        {"special", true}}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = byte_level(false);
  j["post_processor"] = byte_level(true);
  j["decoder"] = byte_level(true);
  j["model"] = Json{{"type", "BPE"},
                    {"dropout", nullptr},
                    {"unk_token", nullptr},
                    {"continuing_subword_prefix", nullptr},
                    {"end_of_word_suffix", nullptr},
                    {"fuse_unk", false},
                    {"byte_fallback", false},
                    {"ignore_merges", false},
                    {"vocab", "@VOCAB@"},
                    {"merges", "@MERGES@"}};
  std::string text = j.dump();
  for (auto [marker, value] : {std::pair<const char*, const std::string*>{"\"@VOCAB@\"", &vocab},
                               std::pair<const char*, const std::string*>{"\"@MERGES@\"", &merges}}) {
    const size_t at = text.find(marker);
    text.replace(at, std::strlen(marker), *value);
  }
  return text;
}

// ---- the checkpoint ----

namespace {

Json ConfigJson(const SynthPreset& p, const HParams& hp, const SynthOptions& opts) {
  Json c = Json::object();
  const bool m1 = hp.arch == Arch::kMamba1;
  c["architectures"] = Json::array({m1 ? "MambaForCausalLM" : "Mamba2ForCausalLM"});
  c["bos_token_id"] = 0;
  if (!m1) c["chunk_size"] = hp.chunk_size;
  c["conv_kernel"] = hp.d_conv;
  c["dtype"] = TorchDtypeName(opts.dtype);
  c["eos_token_id"] = 0;
  c["expand"] = p.expand;
  if (!m1) c["head_dim"] = hp.head_dim;
  c["hidden_act"] = "silu";
  c["hidden_size"] = hp.d_model;
  c["initializer_range"] = 0.1;
  if (m1) c["intermediate_size"] = hp.d_inner;
  c["layer_norm_epsilon"] = hp.norm_eps;
  c["model_type"] = ArchName(hp.arch);
  if (!m1) {
    c["n_groups"] = hp.n_groups;
    c["norm_before_gate"] = false;
    c["num_heads"] = hp.n_heads;
  }
  c["num_hidden_layers"] = hp.n_layer;
  c["pad_token_id"] = 0;
  c["rescale_prenorm_residual"] = true;
  c["residual_in_fp32"] = hp.residual_in_fp32;
  if (!m1) c["rms_norm"] = true;
  c["state_size"] = hp.d_state;
  c["tie_word_embeddings"] = true;
  c["time_step_floor"] = 1e-4;
  if (!m1) c["time_step_limit"] = Json::array({0.0, Json{{"__float__", "Infinity"}}});
  if (m1) c["time_step_init_scheme"] = "random";
  c["time_step_max"] = 0.1;
  c["time_step_min"] = 0.001;
  c["time_step_rank"] = m1 ? hp.dt_rank : (hp.d_model + 15) / 16;
  if (m1) c["time_step_scale"] = 1.0;
  c["use_bias"] = hp.proj_bias;
  c["use_cache"] = true;
  c["use_conv_bias"] = hp.conv_bias;
  c["vocab_size"] = hp.vocab_size;
  c["ssmq_synth"] = Json{{"preset", p.name},
                         {"seed", opts.seed},
                         {"note", "random weights at the published shapes (ssmq synth); not a trained model"}};
  return c;
}

Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status(StatusCode::kIoError, path.string() + ": cannot create");
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  f.close();
  if (!f) return Status(StatusCode::kIoError, path.string() + ": write failed");
  return Status::Ok();
}

// Fills `out` with the next values of tensor t (element offset `first`).
void Generate(const SynthTensor& t, SynthRng& rng, uint64_t first, std::span<float> out, int64_t d_state) {
  switch (t.init) {
    case SynthInit::kNormal:
      for (float& v : out) v = static_cast<float>(t.scale * rng.Normal());
      break;
    case SynthInit::kUniform:
      for (float& v : out) v = static_cast<float>(t.scale * (2.0 * rng.Uniform01() - 1.0));
      break;
    case SynthInit::kOnes:
      std::fill(out.begin(), out.end(), 1.0f);
      break;
    case SynthInit::kDtBias:
      for (float& v : out) {
        const double lo = std::log(1e-3), hi = std::log(1e-1);
        const double dt = std::max(std::exp(lo + (hi - lo) * rng.Uniform01()), 1e-4);
        v = static_cast<float>(dt + std::log(-std::expm1(-dt)));  // softplus^-1
      }
      break;
    case SynthInit::kALogMamba1:
      for (size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<float>(std::log(static_cast<double>((first + i) % static_cast<uint64_t>(d_state) + 1)));
      break;
    case SynthInit::kALogMamba2:
      for (float& v : out) v = static_cast<float>(std::log(1.0 + 15.0 * rng.Uniform01()));
      break;
  }
}

void Encode(std::span<const float> in, TensorType type, uint8_t* out) {
  if (type == TensorType::kF32) {
    std::memcpy(out, in.data(), in.size() * 4);
    return;
  }
  uint16_t* h = reinterpret_cast<uint16_t*>(out);
  if (type == TensorType::kF16) {
    for (size_t i = 0; i < in.size(); ++i) h[i] = F32ToF16(in[i]);
  } else {
    for (size_t i = 0; i < in.size(); ++i) h[i] = F32ToBF16(in[i]);
  }
}

// out_dir without trailing slashes ("a/b/" -> "a/b").
fs::path CleanDir(const std::string& dir) {
  std::string s = dir;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return fs::path(s);
}

}  // namespace

Result<SynthSummary> WriteSynthCheckpoint(const SynthPreset& preset, const std::string& out_dir,
                                          const SynthOptions& opts) {
  const char* dtype = DtypeName(opts.dtype);
  if (!dtype) return Status(StatusCode::kInvalidArgument, "synth: dtype must be f16, bf16 or f32");
  if (out_dir.empty()) return Status(StatusCode::kInvalidArgument, "synth: no output directory given");
  SynthPreset p = preset;
  if (opts.n_layer) {
    if (*opts.n_layer <= 0) return Status(StatusCode::kInvalidArgument, "synth: n_layer must be positive");
    p.n_layer = *opts.n_layer;
  }
  const HParams hp = SynthHParams(p);
  SSMQ_RETURN_IF_ERROR(hp.Validate());

  const fs::path out = CleanDir(out_dir);
  std::error_code ec;
  const bool exists = fs::exists(fs::symlink_status(out, ec));
  if (exists && !opts.force)
    return Status(StatusCode::kInvalidArgument, out.string() + " already exists (pass --force to replace it)");
  const fs::path tmp = out.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec)
    return Status(StatusCode::kIoError, tmp.string() + ": cannot create directory: " + ec.message());
  struct Cleanup {
    fs::path dir;
    bool keep = false;
    ~Cleanup() {
      std::error_code e;
      if (!keep) fs::remove_all(dir, e);
    }
  } cleanup{tmp};

  const std::vector<SynthTensor> plan = SynthTensorPlan(hp);
  SynthSummary summary;
  summary.hp = hp;
  std::vector<SafetensorsWriteTensor> headers;
  const uint64_t elem = TraitsOf(opts.dtype).block_bytes;
  for (const SynthTensor& t : plan) {
    headers.push_back({t.hf_name, dtype, t.shape, {}});
    summary.n_params += t.numel();
  }
  summary.weight_bytes = summary.n_params * elem;

  constexpr uint64_t kChunk = 1 << 20;  // elements per write
  std::vector<float> values;
  std::vector<uint8_t> bytes;
  uint64_t done = 0;
  if (opts.progress) opts.progress(0, summary.weight_bytes);
  Status st = WriteSafetensorsStreamed(
      (tmp / "model.safetensors").string(), headers,
      [&](size_t i, const SafetensorsWriteFn& write) -> Status {
        const SynthTensor& t = plan[i];
        SynthRng rng(opts.seed, t.hf_name);
        const uint64_t n = t.numel();
        for (uint64_t first = 0; first < n; first += kChunk) {
          const uint64_t m = std::min(kChunk, n - first);
          values.resize(m);
          bytes.resize(m * elem);
          Generate(t, rng, first, values, hp.d_state);
          Encode(values, opts.dtype, bytes.data());
          SSMQ_RETURN_IF_ERROR(write(bytes));
          done += m * elem;
          if (opts.progress) opts.progress(done, summary.weight_bytes);
        }
        return Status::Ok();
      },
      {{"format", "pt"}});
  if (!st.ok()) return st;

  SSMQ_RETURN_IF_ERROR(WriteText(tmp / "config.json", ConfigJson(p, hp, opts).dump(2) + "\n"));
  SSMQ_ASSIGN_OR_RETURN(std::string tokenizer, SynthTokenizerJson(hp.vocab_size));
  SSMQ_RETURN_IF_ERROR(WriteText(tmp / "tokenizer.json", tokenizer));
  const Json tokenizer_config = Json{{"tokenizer_class", "PreTrainedTokenizerFast"},
                                     {"bos_token", "<|endoftext|>"},
                                     {"eos_token", "<|endoftext|>"},
                                     {"unk_token", "<|endoftext|>"},
                                     {"model_max_length", 1000000000}};
  SSMQ_RETURN_IF_ERROR(WriteText(tmp / "tokenizer_config.json", tokenizer_config.dump(2) + "\n"));

  // Swap into place: an old directory is moved aside first and removed after.
  fs::path old;
  if (exists) {
    old = out.string() + ".old." + std::to_string(::getpid());
    fs::remove_all(old, ec);
    fs::rename(out, old, ec);
    if (ec) return Status(StatusCode::kIoError, out.string() + ": cannot move the existing output aside: " + ec.message());
  }
  fs::rename(tmp, out, ec);
  if (ec) {
    const std::string msg = ec.message();
    if (!old.empty()) fs::rename(old, out, ec);  // put the old one back
    return Status(StatusCode::kIoError, "cannot rename " + tmp.string() + " onto " + out.string() + ": " + msg);
  }
  cleanup.keep = true;
  if (!old.empty()) fs::remove_all(old, ec);
  return summary;
}

}  // namespace ssmq
