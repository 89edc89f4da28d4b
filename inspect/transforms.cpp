#include "inspect/transforms.h"

#include <cstdlib>
#include <cstring>
#include <map>

#include "inspect/labels.h"
#include "inspect/text_format.h"

namespace ssmq::inspect {

PermutationReport AnalyzePermutation(const std::vector<int64_t>& values) {
  PermutationReport r;
  r.size = values.size();
  std::vector<bool> seen(values.size(), false);
  for (size_t i = 0; i < values.size(); ++i) {
    const int64_t v = values[i];
    if (v < 0 || static_cast<uint64_t>(v) >= values.size()) {
      if (r.problem.empty())
        r.problem = "entry " + std::to_string(i) + " = " + std::to_string(v) + " is out of range";
      continue;
    }
    if (seen[static_cast<size_t>(v)] && r.problem.empty())
      r.problem = "value " + std::to_string(v) + " appears twice (again at entry " +
                  std::to_string(i) + ")";
    seen[static_cast<size_t>(v)] = true;
    if (static_cast<uint64_t>(v) != i) ++r.moved;
  }
  r.valid = r.problem.empty();
  return r;
}

namespace {

std::vector<int64_t> ReadIntTensor(const SsmqFile& file, const TensorInfo& t, std::string* err) {
  Result<std::span<const uint8_t>> data = file.TensorData(t);
  if (!data.ok()) {
    *err = data.status().ToString();
    return {};
  }
  const uint64_t n = t.numel();
  std::vector<int64_t> out(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (t.type == TensorType::kI32) {
      int32_t v;
      std::memcpy(&v, data->data() + 4 * i, 4);
      out[i] = v;
    } else {
      std::memcpy(&out[i], data->data() + 8 * i, 8);
    }
  }
  return out;
}

void AddGroups(const Metadata& md, PermutationReport& r) {
  const MetaValue* groups = md.Find(r.name + ".groups");
  if (!groups) return;
  if (const auto* u = std::get_if<std::vector<uint64_t>>(&groups->v)) {
    for (uint64_t g : *u) r.group_sizes.push_back(static_cast<int64_t>(g));
  } else if (const auto* s = std::get_if<std::vector<int64_t>>(&groups->v)) {
    r.group_sizes = *s;
  } else if (Result<int64_t> one = groups->AsInt(); one.ok()) {
    r.group_sizes.push_back(*one);  // a single group size for all groups
  }
  if (r.group_sizes.size() > 1) {
    int64_t total = 0;
    for (int64_t g : r.group_sizes) total += g;
    if (total != static_cast<int64_t>(r.size) && r.problem.empty()) {
      r.problem = "group sizes sum to " + std::to_string(total) + ", not " + std::to_string(r.size);
      r.valid = false;
    }
  }
}

std::string GroupsDisplay(const std::vector<int64_t>& g) {
  if (g.empty()) return "-";
  bool all_equal = true;
  for (int64_t x : g) all_equal &= (x == g[0]);
  if (all_equal) return std::to_string(g.size()) + " x " + std::to_string(g[0]);
  std::string s;
  for (size_t i = 0; i < g.size() && i < 16; ++i) {
    if (i) s += ',';
    s += std::to_string(g[i]);
  }
  if (g.size() > 16) {
    s += ",... (";
    s += std::to_string(g.size());
    s += " groups)";
  }
  return s;
}

// spec/format.md 6.4: N = m * 2^k with m in {1, 12, 20, 28, 40}.
std::string CheckHadamardSize(const std::string& size_text, const std::string& base_text) {
  if (size_text.empty() || base_text.empty()) return "";
  char* end = nullptr;
  const long long n = std::strtoll(size_text.c_str(), &end, 10);
  if (*end != '\0' || n <= 0) return "size " + size_text + " is not a positive integer";
  const long long m = std::strtoll(base_text.c_str(), &end, 10);
  if (*end != '\0' || (m != 1 && m != 12 && m != 20 && m != 28 && m != 40))
    return "base " + base_text + " is not one of 1, 12, 20, 28, 40";
  const long long pow2 = n / m;
  if (n % m != 0 || (pow2 & (pow2 - 1)) != 0)
    return "size " + size_text + " is not " + base_text + " * 2^k";
  return "";
}

}  // namespace

TransformsReport BuildTransforms(const SsmqFile& file) {
  TransformsReport report;
  for (const TensorInfo& t : file.tensors()) {
    const int layer = LayerOfName(t.name);
    const size_t at = t.name.find(".perm.");
    if (layer < 0 || at == std::string::npos) continue;
    PermutationReport r;
    if (t.type != TensorType::kI32 && t.type != TensorType::kI64) {
      r.problem = "stored as " + std::string(TensorTypeName(t.type)) + ", expected i32";
      r.size = t.numel();
    } else {
      std::string err;
      std::vector<int64_t> values = ReadIntTensor(file, t, &err);
      r = err.empty() ? AnalyzePermutation(values) : PermutationReport{};
      if (!err.empty()) r.problem = err;
    }
    r.valid = r.problem.empty();
    r.name = t.name;
    r.layer = layer;
    r.site = t.name.substr(at + std::strlen(".perm."));
    AddGroups(file.metadata(), r);
    report.permutations.push_back(std::move(r));
  }

  // Hadamard descriptors: keys "<prefix>hadamard.<site>.<field>" where prefix
  // is "" or "blk.{i}.". Grouped by (prefix, site) in file order.
  std::map<std::string, size_t> index;
  for (const auto& e : file.metadata().entries()) {
    size_t at;
    int layer = -1;
    if (e.key.rfind("hadamard.", 0) == 0) {
      at = 0;
    } else {
      layer = LayerOfName(e.key);
      at = e.key.find(".hadamard.");
      if (layer < 0 || at == std::string::npos) continue;
      ++at;
    }
    const std::string rest = e.key.substr(at + std::strlen("hadamard."));
    const size_t dot = rest.rfind('.');
    const std::string site = dot == std::string::npos ? rest : rest.substr(0, dot);
    const std::string field = dot == std::string::npos ? "value" : rest.substr(dot + 1);
    const std::string group_key = e.key.substr(0, at) + "|" + site;
    auto [it, inserted] = index.emplace(group_key, report.hadamards.size());
    if (inserted) {
      HadamardReport h;
      h.layer = layer;
      h.site = site;
      report.hadamards.push_back(std::move(h));
    }
    HadamardReport& h = report.hadamards[it->second];
    const auto* str = std::get_if<std::string>(&e.value.v);
    std::string value = Printable(str ? *str : e.value.ToDisplayString(60), 60);
    if (field == "size" || field == "n") h.size = value;
    if (field == "kind") h.kind = value;
    if (field == "base") h.base = value;
    h.fields.emplace_back(field, std::move(value));
  }
  for (HadamardReport& h : report.hadamards) h.problem = CheckHadamardSize(h.size, h.base);
  return report;
}

std::string RenderTransformsText(const TransformsReport& r) {
  std::string out;
  if (r.permutations.empty()) {
    out += "Permutations: none\n";
  } else {
    out += "Permutations:\n";
    TextTable t;
    t.AddColumn("tensor");
    t.AddColumn("layer", TextTable::Align::kRight);
    t.AddColumn("site");
    t.AddColumn("size", TextTable::Align::kRight);
    t.AddColumn("valid");
    t.AddColumn("moved", TextTable::Align::kRight);
    t.AddColumn("groups");
    t.AddColumn("problem");
    for (const auto& p : r.permutations)
      t.AddRow({p.name, std::to_string(p.layer), p.site, std::to_string(p.size),
                p.valid ? "yes" : "NO", std::to_string(p.moved), GroupsDisplay(p.group_sizes),
                p.problem});
    out += t.Render();
  }
  if (r.hadamards.empty()) {
    out += "Hadamard transforms: none\n";
  } else {
    out += "Hadamard transforms:\n";
    TextTable t;
    t.AddColumn("layer", TextTable::Align::kRight);
    t.AddColumn("site");
    t.AddColumn("size", TextTable::Align::kRight);
    t.AddColumn("base", TextTable::Align::kRight);
    t.AddColumn("kind");
    t.AddColumn("problem");
    auto or_dash = [](const std::string& v) { return v.empty() ? std::string("-") : v; };
    for (const auto& h : r.hadamards)
      t.AddRow({h.layer < 0 ? "-" : std::to_string(h.layer), h.site, or_dash(h.size),
                or_dash(h.base), or_dash(h.kind), h.problem});
    out += t.Render();
  }
  return out;
}

nlohmann::ordered_json TransformsToJson(const TransformsReport& r) {
  nlohmann::ordered_json j;
  j["permutations"] = nlohmann::ordered_json::array();
  for (const auto& p : r.permutations) {
    nlohmann::ordered_json o;
    o["name"] = p.name;
    o["layer"] = p.layer;
    o["site"] = p.site;
    o["size"] = p.size;
    o["valid"] = p.valid;
    o["moved"] = p.moved;
    o["group_sizes"] = p.group_sizes;
    o["problem"] = p.problem;
    j["permutations"].push_back(std::move(o));
  }
  j["hadamard"] = nlohmann::ordered_json::array();
  for (const auto& h : r.hadamards) {
    nlohmann::ordered_json o;
    o["layer"] = h.layer;
    o["site"] = h.site;
    o["size"] = h.size;
    o["base"] = h.base;
    o["kind"] = h.kind;
    o["problem"] = h.problem;
    o["fields"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : h.fields) o["fields"][k] = v;
    j["hadamard"].push_back(std::move(o));
  }
  return j;
}

}  // namespace ssmq::inspect
