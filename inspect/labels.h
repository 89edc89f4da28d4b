// Labels a tensor name with its role in the architecture and its layer,
// using model/arch.h's tables when the file's hyper-parameters can be read,
// and the naming scheme (blk.{i}., .scale/.zero, perm.) otherwise.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "format/metadata.h"
#include "model/arch.h"

namespace ssmq::inspect {

struct TensorLabel {
  std::string role;            // "in_proj", "scale", "zero", "perm", "other", ...
  int layer = -1;              // -1 for global tensors
  std::string base;            // for ".scale"/".zero": the quantized tensor it belongs to
  bool is_matmul_weight = false;
  bool known = false;          // listed by the architecture table
  std::optional<std::vector<int64_t>> expected_shape;
};

// Stable lower-case name of a role ("token_embd", "in_proj", "dt_proj_b", ...).
const char* RoleName(TensorRole role);

// Layer index parsed from a "blk.{i}." prefix; -1 when absent or malformed.
int LayerOfName(const std::string& name);

class TensorLabeler {
 public:
  explicit TensorLabeler(const Metadata& md);
  TensorLabel Label(const std::string& name) const;

  // The hyper-parameters when the metadata holds a valid set.
  const std::optional<HParams>& hparams() const { return hparams_; }
  // Why hparams() is empty ("" when it is not).
  const std::string& hparams_error() const { return hparams_error_; }

 private:
  std::optional<HParams> hparams_;
  std::string hparams_error_;
  std::map<std::string, TensorSpec> specs_;
};

}  // namespace ssmq::inspect
