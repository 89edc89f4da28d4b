// Model <-> .ssmq. Metadata order: general.architecture and the "{arch}.*"
// hyper-parameters, the tokenizer json, then Model::extra in its order;
// tensors in Model order. Loading views tensors in the mapping; the SsmqFile
// lives as long as any tensor (ModelTensor::keepalive).
#include "model/model_io.h"

#include <set>

#include "model/arch.h"

namespace ssmq {
namespace {

Status FillWriter(const Model& model, const SaveOptions& opts, SsmqWriter& writer) {
  SSMQ_RETURN_IF_ERROR(model.Validate().WithContext("cannot save an invalid model"));
  Metadata& md = writer.metadata();
  HParamsToMetadata(model.hp, md);
  if (!model.tokenizer_json.empty()) md.Set(keys::kTokenizerJson, MetaValue::String(model.tokenizer_json));
  for (const Metadata::Entry& e : model.extra.entries()) md.Set(e.key, e.value);
  for (const ModelTensor& t : model.tensors()) {
    TensorInfo info;
    info.name = t.name;
    info.type = t.type;
    info.shape = t.shape;
    info.quant = t.quant;
    info.compression = opts.zstd ? Compression::kZstd : Compression::kNone;
    SSMQ_RETURN_IF_ERROR(writer.AddTensor(std::move(info), t.data).WithContext("tensor '" + t.name + "'"));
  }
  return Status::Ok();
}

}  // namespace

Status SaveModel(const Model& model, const std::string& path, const SaveOptions& opts) {
  SsmqWriter writer(opts.alignment);
  SSMQ_RETURN_IF_ERROR(FillWriter(model, opts, writer));
  return writer.WriteFile(path, opts.progress);
}

Result<std::vector<uint8_t>> SaveModelToBuffer(const Model& model, const SaveOptions& opts) {
  SsmqWriter writer(opts.alignment);
  SSMQ_RETURN_IF_ERROR(FillWriter(model, opts, writer));
  return writer.WriteBuffer();
}

Result<Model> LoadModel(const std::string& path, const OpenOptions& opts) {
  Result<std::unique_ptr<SsmqFile>> file = SsmqFile::OpenMmap(path, opts);
  if (!file.ok()) return file.status().WithContext(path);
  return LoadModelFromFile(std::shared_ptr<SsmqFile>(std::move(file).value()));
}

Result<Model> LoadModelFromFile(std::shared_ptr<SsmqFile> file) {
  if (!file) return Status(StatusCode::kInvalidArgument, "LoadModelFromFile: null file");
  const Metadata& md = file->metadata();
  Model model;
  SSMQ_ASSIGN_OR_RETURN(model.hp, HParamsFromMetadata(md));

  // Everything SaveModel derives from hp / tokenizer_json is not "extra".
  Metadata derived;
  HParamsToMetadata(model.hp, derived);
  std::set<std::string> skip;
  for (const Metadata::Entry& e : derived.entries()) skip.insert(e.key);
  skip.insert(keys::kTokenizerJson);
  if (md.Find(keys::kTokenizerJson)) {
    Result<std::string> tok = md.GetString(keys::kTokenizerJson);
    if (!tok.ok()) return tok.status().WithContext(std::string("metadata '") + keys::kTokenizerJson + "'");
    model.tokenizer_json = std::move(tok).value();
  }
  for (const Metadata::Entry& e : md.entries())
    if (!skip.count(e.key)) model.extra.Set(e.key, e.value);

  for (const TensorInfo& info : file->tensors()) {
    Result<std::span<const uint8_t>> bytes = file->TensorData(info);
    if (!bytes.ok()) return bytes.status().WithContext("tensor '" + info.name + "'");
    ModelTensor t;
    t.name = info.name;
    t.type = info.type;
    t.shape = info.shape;
    t.quant = info.quant;
    t.data = *bytes;
    t.keepalive = file;
    model.SetTensor(std::move(t));
  }
  SSMQ_RETURN_IF_ERROR(model.Validate());
  return model;
}

}  // namespace ssmq
