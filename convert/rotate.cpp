// Residual-stream and out_proj-input Hadamard rotations.
#include "convert/rotate.h"

#include <string>
#include <vector>

#include "model/arch.h"
#include "runtime_cpu/hadamard.h"

namespace ssmq {

namespace {

// f32 copy of a float tensor; kNotFound / kUnsupported otherwise.
Result<std::vector<float>> ReadFloat(const Model& model, const std::string& name) {
  const ModelTensor* t = model.Find(name);
  if (!t) return Status(StatusCode::kNotFound, "rotate: tensor '" + name + "' not found");
  if (!TraitsOf(t->type).is_float) {
    return Status(StatusCode::kUnsupported,
                  "rotate: tensor '" + name + "' is " + std::string(TensorTypeName(t->type)) +
                      "; rotations run on float models, before quantization");
  }
  return model.ReadAsF32(name);
}

void WriteFloat(Model& model, const std::string& name, const std::vector<float>& values) {
  const std::vector<int64_t> shape = model.Find(name)->shape;
  model.SetTensor(ModelTensor::FromF32(name, shape, values));
}

// Each row r of a [rows][cols] matrix: row <- H row (i.e. W <- W H^T).
void TransformRows(const HadamardKind& kind, std::vector<float>& w, int64_t rows) {
  HadamardTransformRows(kind, w.data(), rows, kind.size(), 0);
}

// Each column of a [rows][cols] matrix: col <- H col (i.e. W <- H W); rows = H size.
void TransformColumns(const HadamardKind& kind, std::vector<float>& w, int64_t cols) {
  const int64_t rows = kind.size();
  std::vector<float> col(static_cast<size_t>(rows));
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) col[r] = w[r * cols + c];
    HadamardTransform(kind, col.data());
    for (int64_t r = 0; r < rows; ++r) w[r * cols + c] = col[r];
  }
}

// W <- W diag(g) for a [rows][g.size()] matrix.
void ScaleColumns(std::vector<float>& w, const std::vector<float>& g) {
  const size_t cols = g.size();
  for (size_t i = 0; i < w.size(); ++i) w[i] *= g[i % cols];
}

}  // namespace

Status RotateResidual(Model& model) {
  const HParams& hp = model.hp;
  const int64_t dm = hp.d_model;
  SSMQ_ASSIGN_OR_RETURN(const HadamardKind kind, ChooseHadamard(dm));

  SSMQ_ASSIGN_OR_RETURN(std::vector<float> embd, ReadFloat(model, "token_embd.weight"));
  if (hp.tied_embeddings) {
    const std::vector<int64_t> shape = model.Find("token_embd.weight")->shape;
    model.SetTensor(ModelTensor::FromF32("output.weight", shape, embd));
    model.hp.tied_embeddings = false;
  }
  if (model.extra.Find("quant.residual_hadamard.size")) {
    return Status(StatusCode::kInvalidArgument, "rotate: the residual stream is already rotated");
  }
  // Provenance (spec §4.1): tools comparing activations with the float model
  // (ssmq validate) rotate the float model's residual-basis values the same way.
  model.extra.Set("quant.residual_hadamard.size", MetaValue::U32(static_cast<uint32_t>(dm)));
  model.extra.Set("quant.residual_hadamard.base", MetaValue::U32(static_cast<uint32_t>(kind.base)));
  // LM head: fold the final norm, rotate its input.
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> head, ReadFloat(model, "output.weight"));
  SSMQ_ASSIGN_OR_RETURN(std::vector<float> final_norm, ReadFloat(model, "output_norm.weight"));
  ScaleColumns(head, final_norm);
  TransformRows(kind, head, static_cast<int64_t>(head.size()) / dm);
  WriteFloat(model, "output.weight", head);
  WriteFloat(model, "output_norm.weight", std::vector<float>(static_cast<size_t>(dm), 1.0f));
  // Embedding rows e' = H e.
  TransformRows(kind, embd, static_cast<int64_t>(embd.size()) / dm);
  WriteFloat(model, "token_embd.weight", embd);

  for (int l = 0; l < hp.n_layer; ++l) {
    const std::string norm_name = LayerTensorName(l, "norm.weight");
    const std::string in_name = LayerTensorName(l, "ssm_in.weight");
    const std::string out_name = LayerTensorName(l, "ssm_out.weight");
    const std::string out_bias_name = LayerTensorName(l, "ssm_out.bias");
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> norm, ReadFloat(model, norm_name));
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> in_proj, ReadFloat(model, in_name));
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> out_proj, ReadFloat(model, out_name));
    ScaleColumns(in_proj, norm);
    TransformRows(kind, in_proj, static_cast<int64_t>(in_proj.size()) / dm);
    TransformColumns(kind, out_proj, static_cast<int64_t>(out_proj.size()) / dm);
    WriteFloat(model, in_name, in_proj);
    WriteFloat(model, out_name, out_proj);
    WriteFloat(model, norm_name, std::vector<float>(static_cast<size_t>(dm), 1.0f));
    if (model.Find(out_bias_name)) {
      SSMQ_ASSIGN_OR_RETURN(std::vector<float> bias, ReadFloat(model, out_bias_name));
      HadamardTransform(kind, bias.data());
      WriteFloat(model, out_bias_name, bias);
    }
  }
  return Status::Ok();
}

Status RotateOutProjInput(Model& model) {
  const HParams& hp = model.hp;
  SSMQ_ASSIGN_OR_RETURN(const HadamardKind kind, ChooseHadamard(hp.d_inner));
  for (int l = 0; l < hp.n_layer; ++l) {
    SSMQ_ASSIGN_OR_RETURN(const std::optional<HadamardKind> existing,
                          ReadHadamardDescriptor(model.extra, l, "ssm_out"));
    if (existing) {
      return Status(StatusCode::kInvalidArgument,
                    "rotate: block " + std::to_string(l) + " already has an out_proj-input Hadamard");
    }
  }
  for (int l = 0; l < hp.n_layer; ++l) {
    const std::string out_name = LayerTensorName(l, "ssm_out.weight");
    SSMQ_ASSIGN_OR_RETURN(std::vector<float> out_proj, ReadFloat(model, out_name));
    TransformRows(kind, out_proj, static_cast<int64_t>(out_proj.size()) / hp.d_inner);
    WriteFloat(model, out_name, out_proj);
    WriteHadamardDescriptor(model.extra, l, "ssm_out", kind);
  }
  return Status::Ok();
}

}  // namespace ssmq
