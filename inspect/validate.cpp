#include "inspect/validate.h"

#include <algorithm>
#include <set>

#include "inspect/labels.h"
#include "inspect/text_format.h"
#include "inspect/transforms.h"

namespace ssmq::inspect {

namespace {

// The tensor a status is about: the longest tensor name quoted in its message,
// else the tensor whose stored range holds its offset.
std::string TensorOfStatus(const SsmqFile* file, const Status& st) {
  if (!file) return "";
  std::string best;
  for (const TensorInfo& t : file->tensors()) {
    if (t.name.size() > best.size() &&
        st.message().find("'" + t.name + "'") != std::string::npos)
      best = t.name;
  }
  if (!best.empty() || !st.has_offset()) return best;
  for (const TensorInfo& t : file->tensors())
    if (st.offset() >= t.offset && st.offset() < t.offset + std::max<uint64_t>(t.stored_size, 1))
      return t.name;
  return "";
}

Problem ProblemOf(const SsmqFile* file, const Status& st, std::string tensor = "") {
  Problem p;
  p.code = StatusCodeName(st.code());
  p.offset = st.offset();
  p.tensor = tensor.empty() ? TensorOfStatus(file, st) : std::move(tensor);
  p.message = st.message();
  return p;
}

void CheckTensorChecksums(const SsmqFile& file, ValidationReport& r) {
  std::set<std::string> reported;
  for (const Problem& p : r.problems)
    if (!p.tensor.empty()) reported.insert(p.tensor);
  for (const TensorInfo& t : file.tensors()) {
    ++r.tensors_checked;
    if (reported.count(t.name)) continue;
    Result<std::span<const uint8_t>> data = file.TensorData(t, /*verify=*/true);
    if (!data.ok()) {
      Status st = data.status();
      if (!st.has_offset()) st = Status(st.code(), st.message(), t.offset);
      r.problems.push_back(ProblemOf(&file, st, t.name));
    }
  }
}

// Bytes the writer does not define are zero (spec/format.md 1): the padding
// between the directory and the data section and between tensors. A flipped
// bit there changes no checksum, so look at the bytes directly.
void CheckPadding(const SsmqFile& file, ValidationReport& r) {
  const FileHeader& h = file.header();
  const std::span<const uint8_t> bytes = file.raw_bytes();
  auto check_gap = [&](uint64_t from, uint64_t to, const char* where) {
    to = std::min<uint64_t>(to, bytes.size());
    for (uint64_t i = from; i < to; ++i) {
      if (bytes[i] != 0) {
        r.problems.push_back({StatusCodeName(StatusCode::kBadValue), i, "",
                              std::string("non-zero padding byte ") + where});
        return;
      }
    }
  };
  const uint64_t directory_end = h.directory_offset + h.directory_size;
  if (h.directory_offset < h.data_offset && directory_end < h.data_offset)
    check_gap(directory_end, h.data_offset, "before the data section");

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const TensorInfo& t : file.tensors()) ranges.emplace_back(t.offset, t.offset + t.stored_size);
  std::sort(ranges.begin(), ranges.end());
  uint64_t pos = h.data_offset;
  for (const auto& [begin, stop] : ranges) {
    if (begin > pos) check_gap(pos, begin, "between tensors");
    pos = std::max(pos, stop);
  }
  check_gap(pos, h.data_offset + h.data_size, "at the end of the data section");
}

void CheckArchitecture(const SsmqFile& file, ValidationReport& r) {
  if (!file.metadata().Find("general.architecture")) return;  // not a model file
  TensorLabeler labeler(file.metadata());
  if (!labeler.hparams()) {
    r.problems.push_back({StatusCodeName(StatusCode::kBadConfig), Status::kNoOffset, "",
                          "hyper-parameters: " + labeler.hparams_error()});
    return;
  }
  for (const TensorSpec& spec : ExpectedTensors(*labeler.hparams())) {
    const TensorInfo* t = file.FindTensor(spec.name);
    if (!t) {
      if (spec.required)
        r.problems.push_back({StatusCodeName(StatusCode::kNotFound), Status::kNoOffset, spec.name,
                              "required tensor '" + spec.name + "' is missing"});
      continue;
    }
    if (t->shape != spec.shape)
      r.problems.push_back({StatusCodeName(StatusCode::kBadShape), t->entry_offset, spec.name,
                            "tensor '" + spec.name + "' has shape " + FormatShape(t->shape) +
                                ", the architecture expects " + FormatShape(spec.shape)});
  }
}

void CheckTransforms(const SsmqFile& file, ValidationReport& r) {
  const TransformsReport transforms = BuildTransforms(file);
  for (const HadamardReport& h : transforms.hadamards)
    if (!h.problem.empty())
      r.problems.push_back({StatusCodeName(StatusCode::kBadMetadata), Status::kNoOffset, "",
                            "hadamard descriptor of layer " + std::to_string(h.layer) + " site '" +
                                h.site + "': " + h.problem});
  for (const PermutationReport& p : transforms.permutations) {
    if (p.valid) continue;
    const TensorInfo* t = file.FindTensor(p.name);
    r.problems.push_back({StatusCodeName(StatusCode::kBadValue), t ? t->offset : Status::kNoOffset,
                          p.name, "permutation '" + p.name + "': " + p.problem});
  }
}

ValidationReport ValidateOpened(Result<std::unique_ptr<SsmqFile>> opened, const std::string& label) {
  ValidationReport r;
  r.file_label = label;
  if (!opened.ok()) {
    r.problems.push_back(ProblemOf(nullptr, opened.status()));
    return r;
  }
  r.opened = true;
  ValidateOpenedFile(**opened, r);
  return r;
}

}  // namespace

void ValidateOpenedFile(const SsmqFile& file, ValidationReport& r) {
  for (const Status& st : file.ValidateAll()) r.problems.push_back(ProblemOf(&file, st));
  CheckTensorChecksums(file, r);
  CheckPadding(file, r);
  CheckArchitecture(file, r);
  CheckTransforms(file, r);
}

ValidationReport ValidateFile(const std::string& path, const std::string& file_label) {
  return ValidateOpened(SsmqFile::OpenMmap(path), file_label);
}

ValidationReport ValidateBuffer(std::span<const uint8_t> bytes, const std::string& file_label) {
  return ValidateOpened(SsmqFile::OpenBuffer(bytes), file_label);
}

std::string RenderValidationText(const ValidationReport& r) {
  std::string out = "Validate: " + r.file_label + "\n";
  if (!r.opened) {
    out += "  the file cannot be opened: its header, metadata or directory is damaged or cut short\n";
  } else {
    out += "  tensors checked: " + std::to_string(r.tensors_checked) + "\n";
  }
  if (r.problems.empty()) return out + "  OK: the file is intact\n";
  out += "  " + std::to_string(r.problems.size()) + " problem(s):\n";
  TextTable t;
  t.AddColumn("offset", TextTable::Align::kRight);
  t.AddColumn("code");
  t.AddColumn("tensor");
  t.AddColumn("message");
  for (const Problem& p : r.problems)
    t.AddRow({p.offset == Status::kNoOffset ? "-" : std::to_string(p.offset), p.code,
              p.tensor.empty() ? "-" : p.tensor, p.message});
  return out + t.Render();
}

nlohmann::ordered_json ValidationToJson(const ValidationReport& r) {
  nlohmann::ordered_json j;
  j["file"] = r.file_label;
  j["intact"] = r.intact();
  j["opened"] = r.opened;
  j["tensors_checked"] = r.tensors_checked;
  j["problems"] = nlohmann::ordered_json::array();
  for (const Problem& p : r.problems) {
    nlohmann::ordered_json o;
    o["code"] = p.code;
    o["offset"] = p.offset == Status::kNoOffset ? nlohmann::ordered_json(nullptr)
                                                : nlohmann::ordered_json(p.offset);
    o["tensor"] = p.tensor;
    o["message"] = p.message;
    j["problems"].push_back(std::move(o));
  }
  return j;
}

}  // namespace ssmq::inspect
