#include "runtime_cpu/decode_traffic.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>

#include "model/act_sites.h"

namespace ssmq {

namespace {

enum class Role { kMatmul, kSmall, kOutputNorm, kLmHead, kEmbedding, kUnread };

bool IsOneOf(std::string_view s, std::initializer_list<std::string_view> set) {
  for (std::string_view x : set)
    if (s == x) return true;
  return false;
}

// Strips a ".scale" / ".zero" companion suffix; sets *companion.
std::string_view BaseName(std::string_view name, bool* companion) {
  for (std::string_view suf : {std::string_view(".scale"), std::string_view(".zero")}) {
    if (name.size() > suf.size() && name.ends_with(suf)) {
      *companion = true;
      return name.substr(0, name.size() - suf.size());
    }
  }
  *companion = false;
  return name;
}

// What the step does with tensor `name` (model/arch.h names; the runtime's
// LoadLayer/Create read exactly these).
Role Classify(const HParams& hp, std::string_view name) {
  if (name.starts_with("blk.")) {
    std::string_view rest = name.substr(4);
    const size_t dot = rest.find('.');
    if (dot == std::string_view::npos || dot == 0) return Role::kUnread;
    const std::string layer_text(rest.substr(0, dot));
    char* end = nullptr;
    const long layer = std::strtol(layer_text.c_str(), &end, 10);
    if (*end != '\0' || layer < 0 || layer >= hp.n_layer) return Role::kUnread;
    const std::string_view suffix = rest.substr(dot + 1);
    // Static activation scales: blk.{i}.act.{site}.scale (model/act_sites.h).
    if (suffix.starts_with("act.") && suffix.ends_with(".scale")) return Role::kSmall;
    bool companion = false;
    const std::string_view base = BaseName(suffix, &companion);
    if (IsOneOf(base, {"ssm_in.weight", "ssm_x.weight", "ssm_dt.weight", "ssm_out.weight"}))
      return Role::kMatmul;
    if (IsOneOf(base, {"norm.weight", "ssm_in.bias", "ssm_conv1d.weight", "ssm_conv1d.bias",
                       "ssm_dt.bias", "ssm_a_log", "ssm_d", "ssm_norm.weight", "ssm_out.bias"}))
      return Role::kSmall;
    return Role::kUnread;
  }
  bool companion = false;
  const std::string_view base = BaseName(name, &companion);
  if (base == "token_embd.weight") return hp.tied_embeddings ? Role::kLmHead : Role::kEmbedding;
  if (base == "output.weight") return hp.tied_embeddings ? Role::kUnread : Role::kLmHead;
  if (base == "output_norm.weight") return Role::kOutputNorm;
  return Role::kUnread;
}

// Bytes of `batch` rows of a token_embd.* tensor: a row per sequence when the
// tensor has one per token (codes, per-row or per-group scales); a
// per-tensor scale is read whole.
uint64_t EmbeddingRows(const HParams& hp, const ModelTensor& t, uint64_t bytes, uint64_t batch) {
  if (t.shape.empty() || t.shape[0] != hp.vocab_size || hp.vocab_size <= 0) return bytes;
  return batch * (bytes / static_cast<uint64_t>(hp.vocab_size));
}

}  // namespace

double DecodeTraffic::RooflineTokensPerSecond(double bandwidth_bytes_per_s) const {
  if (bandwidth_bytes_per_s <= 0 || total_bytes() == 0) return 0.0;
  return static_cast<double>(batch) * bandwidth_bytes_per_s / static_cast<double>(total_bytes());
}

DecodeTraffic ComputeDecodeTraffic(const Model& model, int64_t batch, bool f16_state) {
  const HParams& hp = model.hp;
  DecodeTraffic d;
  d.batch = batch;
  const uint64_t b = static_cast<uint64_t>(batch);
  for (const ModelTensor& t : model.tensors()) {
    const uint64_t bytes = t.data.size();
    const Role role = Classify(hp, t.name);
    bool companion = false;
    const bool embedding = BaseName(t.name, &companion) == "token_embd.weight";
    switch (role) {
      case Role::kMatmul: d.layer_matmul_bytes += bytes; break;
      case Role::kSmall: d.layer_small_bytes += bytes; break;
      case Role::kOutputNorm: d.output_norm_bytes += bytes; break;
      case Role::kLmHead: d.lm_head_bytes += bytes; break;
      case Role::kEmbedding: {
        const uint64_t rows = EmbeddingRows(hp, t, bytes, b);
        d.unread_bytes += bytes - std::min(bytes, rows);
        break;
      }
      case Role::kUnread: d.unread_bytes += bytes; break;
    }
    if (embedding) d.embedding_rows_bytes += EmbeddingRows(hp, t, bytes, b);  // tied or not
  }
  d.weight_bytes = d.layer_matmul_bytes + d.layer_small_bytes + d.output_norm_bytes +
                   d.lm_head_bytes + d.embedding_rows_bytes;
  const uint64_t ssm_elems = static_cast<uint64_t>(
      hp.arch == Arch::kMamba1 ? hp.d_inner * hp.d_state : hp.n_heads * hp.head_dim * hp.d_state);
  const uint64_t conv_elems = static_cast<uint64_t>(hp.conv_dim() * (hp.d_conv - 1));
  for (int l = 0; l < hp.n_layer; ++l) {
    const bool int8 = model.extra.Find(ActModeKey(l, ActSite::kSsmState)) != nullptr;
    d.int8_state_layers += int8;
    d.ssm_state_bytes += 2 * b * ssm_elems * (int8 ? 1 : f16_state ? 2 : 4);
    d.conv_state_bytes += 2 * b * conv_elems * 4;
  }
  d.state_bytes = d.ssm_state_bytes + d.conv_state_bytes;
  return d;
}

}  // namespace ssmq
