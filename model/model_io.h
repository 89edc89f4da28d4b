// Model <-> .ssmq file. The loader views tensors zero-copy in the mapping
// (the Model keeps the SsmqFile alive); compressed tensors are decompressed.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "format/ssmq_file.h"
#include "model/model.h"

namespace ssmq {

struct SaveOptions {
  uint32_t alignment = kDefaultAlignment;
  bool zstd = false;  // compress tensors where it saves space
  std::function<void(uint64_t, uint64_t)> progress;
};

Status SaveModel(const Model& model, const std::string& path, const SaveOptions& opts = {});
Result<std::vector<uint8_t>> SaveModelToBuffer(const Model& model, const SaveOptions& opts = {});

// Opens, validates the file, reads hparams from metadata, checks every
// expected tensor's shape (Model::Validate).
Result<Model> LoadModel(const std::string& path, const OpenOptions& opts = {});
Result<Model> LoadModelFromFile(std::shared_ptr<SsmqFile> file);

}  // namespace ssmq
