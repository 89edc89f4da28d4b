// Model, ModelTensor and HParams::Validate. Shapes are PyTorch order; a
// tensor's bytes are either owned or a view kept alive by `keepalive`.
#include "model/model.h"

#include <cstring>
#include <string>
#include <utility>

#include "model/arch.h"

namespace ssmq {

const char* ArchName(Arch a) { return a == Arch::kMamba1 ? "mamba" : "mamba2"; }

namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Status Bad(const std::string& what) {
  return Status(StatusCode::kBadConfig, std::string("hparams: ") + what);
}

// Largest dimension we accept anywhere (keeps products of two dims in int64).
constexpr int64_t kMaxDim = int64_t{1} << 28;

}  // namespace

Status HParams::Validate() const {
  struct Dim {
    const char* name;
    int64_t value;
  };
  const Dim common[] = {{"d_model", d_model}, {"n_layer", n_layer}, {"vocab_size", vocab_size},
                        {"d_inner", d_inner}, {"d_state", d_state}, {"d_conv", d_conv}};
  for (const Dim& d : common) {
    if (d.value <= 0 || d.value > kMaxDim)
      return Bad(std::string(d.name) + " = " + std::to_string(d.value) + " is out of range");
  }
  if (n_layer > kMaxLayers)
    return Bad("n_layer = " + std::to_string(n_layer) + " is out of range (at most " +
               std::to_string(kMaxLayers) + ")");
  if (!(norm_eps > 0.0) || !std::isfinite(norm_eps))
    return Bad("norm_eps must be a positive finite number");
  if (arch == Arch::kMamba1) {
    if (dt_rank <= 0 || dt_rank > kMaxDim)
      return Bad("dt_rank = " + std::to_string(dt_rank) + " is out of range");
    return Status::Ok();
  }
  const Dim mamba2[] = {{"n_groups", n_groups}, {"head_dim", head_dim}, {"n_heads", n_heads},
                        {"chunk_size", chunk_size}, {"norm_group_size", norm_group_size}};
  for (const Dim& d : mamba2) {
    if (d.value <= 0 || d.value > kMaxDim)
      return Bad(std::string(d.name) + " = " + std::to_string(d.value) + " is out of range");
  }
  if (chunk_size > kMaxChunkSize)
    return Bad("chunk_size = " + std::to_string(chunk_size) + " is out of range (at most " +
               std::to_string(kMaxChunkSize) + ")");
  if (n_heads * head_dim != d_inner)
    return Bad("n_heads (" + std::to_string(n_heads) + ") * head_dim (" +
               std::to_string(head_dim) + ") != d_inner (" + std::to_string(d_inner) + ")");
  if (n_heads % n_groups != 0)
    return Bad("n_heads (" + std::to_string(n_heads) + ") is not a multiple of n_groups (" +
               std::to_string(n_groups) + ")");
  if (d_inner % norm_group_size != 0)
    return Bad("d_inner (" + std::to_string(d_inner) + ") is not a multiple of norm_group_size (" +
               std::to_string(norm_group_size) + ")");
  if (std::isnan(dt_limit_min) || std::isnan(dt_limit_max) || dt_limit_min < 0.0 ||
      dt_limit_max < dt_limit_min)
    return Bad("dt_limit must satisfy 0 <= min <= max");
  return Status::Ok();
}

// ---- ModelTensor ----

uint64_t ModelTensor::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

const float* ModelTensor::f32() const {
  if (type != TensorType::kF32) return nullptr;
  return reinterpret_cast<const float*>(data.data());
}

ModelTensor ModelTensor::Owned(std::string name, TensorType type, std::vector<int64_t> shape,
                               std::vector<uint8_t> bytes) {
  ModelTensor t;
  t.name = std::move(name);
  t.type = type;
  t.shape = std::move(shape);
  t.owned = std::move(bytes);
  t.data = std::span<const uint8_t>(t.owned.data(), t.owned.size());
  return t;
}

ModelTensor ModelTensor::FromF32(std::string name, std::vector<int64_t> shape,
                                 const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return Owned(std::move(name), TensorType::kF32, std::move(shape), std::move(bytes));
}

void ModelTensor::BindOwned() {
  if (!owned.empty() || (!keepalive && data.empty()))
    data = std::span<const uint8_t>(owned.data(), owned.size());
}

// ---- Model ----

Model::Model(const Model& other)
    : hp(other.hp),
      tokenizer_json(other.tokenizer_json),
      extra(other.extra),
      tensors_(other.tensors_),
      index_(other.index_) {
  for (ModelTensor& t : tensors_) t.BindOwned();
}

Model& Model::operator=(const Model& other) {
  if (this == &other) return *this;
  Model copy(other);
  *this = std::move(copy);
  return *this;
}

void Model::SetTensor(ModelTensor t) {
  t.BindOwned();
  auto it = index_.find(t.name);
  if (it != index_.end()) {
    tensors_[it->second] = std::move(t);
    return;
  }
  index_.emplace(t.name, tensors_.size());
  tensors_.push_back(std::move(t));
}

const ModelTensor* Model::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

ModelTensor* Model::FindMutable(const std::string& name) {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

bool Model::Erase(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return false;
  tensors_.erase(tensors_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  return true;
}

Status Model::Validate() const {
  SSMQ_RETURN_IF_ERROR(hp.Validate());
  // Every block has tensors: a count beyond the tensors held is refused
  // before ExpectedTensors lists ~10 names per claimed block.
  if (static_cast<uint64_t>(hp.n_layer) > tensors_.size())
    return Status(StatusCode::kBadShape, "n_layer = " + std::to_string(hp.n_layer) +
                                             " but the model holds only " +
                                             std::to_string(tensors_.size()) + " tensors");
  for (const TensorSpec& spec : ExpectedTensors(hp)) {
    const ModelTensor* t = Find(spec.name);
    if (!t) {
      if (!spec.required) continue;
      return Status(StatusCode::kBadShape, "tensor '" + spec.name + "' is missing (expected shape " +
                                               ShapeString(spec.shape) + ")");
    }
    if (t->shape != spec.shape)
      return Status(StatusCode::kBadShape, "tensor '" + spec.name + "' has shape " +
                                               ShapeString(t->shape) + ", expected " +
                                               ShapeString(spec.shape));
  }
  for (const ModelTensor& t : tensors_) {
    std::optional<uint64_t> bytes = TensorBytes(t.type, t.numel());
    if (!bytes || *bytes != t.data.size())
      return Status(StatusCode::kBadTensorInfo,
                    "tensor '" + t.name + "' holds " + std::to_string(t.data.size()) +
                        " bytes, its type and shape " + ShapeString(t.shape) + " need " +
                        (bytes ? std::to_string(*bytes) : std::string("too many")));
  }
  return Status::Ok();
}

Result<std::vector<float>> Model::ReadAsF32(const std::string& name) const {
  const ModelTensor* t = Find(name);
  if (!t) return Status(StatusCode::kNotFound, "tensor '" + name + "' not found");
  const uint64_t n = t->numel();
  std::optional<uint64_t> bytes = TensorBytes(t->type, n);
  if (!bytes || *bytes != t->data.size())
    return Status(StatusCode::kBadTensorInfo, "tensor '" + name + "' byte size does not match its shape");
  std::vector<float> out(n);
  const TensorTypeTraits& traits = TraitsOf(t->type);
  if (traits.is_float) {
    Status st = FloatToF32(t->type, t->data, out);
    if (!st.ok()) return st.WithContext("tensor '" + name + "'");
    return out;
  }
  if (!traits.is_quantized)
    return Status(StatusCode::kTypeMismatch, "tensor '" + name + "' has type " +
                                                 std::string(TensorTypeName(t->type)) +
                                                 ", not a float or quantized type");
  // Quantized: rows x cols with cols = the last dim (the input dimension).
  const uint64_t cols = t->shape.empty() ? 1 : static_cast<uint64_t>(t->shape.back());
  const uint64_t rows = cols == 0 ? 0 : n / cols;
  const ModelTensor* scale_t = Find(name + ".scale");
  if (!scale_t)
    return Status(StatusCode::kNotFound, "tensor '" + name + ".scale' (scales of '" + name + "') not found");
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> scales, ReadAsF32(name + ".scale"));
  if (scales.size() != ScaleCount(t->quant, rows, cols))
    return Status(StatusCode::kBadShape, "tensor '" + name + ".scale' has " +
                                             std::to_string(scales.size()) + " scales, expected " +
                                             std::to_string(ScaleCount(t->quant, rows, cols)));
  Status st;
  if (t->type == TensorType::kQ8) {
    st = DequantizeQ8(t->data, scales, rows, cols, t->quant, out);
  } else {
    std::span<const uint8_t> zeros;
    if (t->quant.has_zero_point) {
      const ModelTensor* zero_t = Find(name + ".zero");
      if (!zero_t || zero_t->type != TensorType::kU8)
        return Status(StatusCode::kNotFound, "tensor '" + name + ".zero' (u8 zero points of '" +
                                                 name + "') not found");
      if (zero_t->data.size() != scales.size())
        return Status(StatusCode::kBadShape, "tensor '" + name + ".zero' has " +
                                                 std::to_string(zero_t->data.size()) +
                                                 " zero points, expected " +
                                                 std::to_string(scales.size()));
      zeros = zero_t->data;
    }
    st = DequantizeQ4(t->data, scales, zeros, rows, cols, t->quant, out);
  }
  if (!st.ok()) return st.WithContext("tensor '" + name + "'");
  return out;
}

}  // namespace ssmq
