#include "inspect/diff.h"

#include "inspect/stats.h"
#include "inspect/text_format.h"

namespace ssmq::inspect {

namespace {

bool SameValue(const MetaValue& x, const MetaValue& y) {
  return x.type == y.type && (x.type != MetaType::kArray || x.elem_type == y.elem_type) &&
         x.v == y.v;
}

bool SameQuant(const QuantInfo& x, const QuantInfo& y) {
  return x.granularity == y.granularity && x.group_size == y.group_size &&
         x.has_zero_point == y.has_zero_point;
}

bool IsNumeric(TensorType t) {
  const TensorTypeTraits& tr = TraitsOf(t);
  return tr.is_float || tr.is_quantized;
}

std::string Shown(const MetaValue& v) { return Printable(v.ToDisplayString(60), 60); }

void DiffMetadata(const Metadata& a, const Metadata& b, DiffReport& d) {
  for (const auto& e : a.entries()) {
    const MetaValue* other = b.Find(e.key);
    if (!other) {
      d.metadata.push_back({e.key, "removed", Shown(e.value), ""});
    } else if (!SameValue(e.value, *other)) {
      d.metadata.push_back({e.key, "changed", Shown(e.value), Shown(*other)});
    } else {
      ++d.same_metadata;
    }
  }
  for (const auto& e : b.entries())
    if (!a.Find(e.key)) d.metadata.push_back({e.key, "added", "", Shown(e.value)});
}

}  // namespace

Result<DiffReport> DiffFiles(const SsmqFile& a, const SsmqFile& b, const std::string& a_label,
                             const std::string& b_label, const DiffOptions& opts) {
  DiffReport d;
  d.a_label = a_label;
  d.b_label = b_label;
  DiffMetadata(a.metadata(), b.metadata(), d);

  for (const TensorInfo& ta : a.tensors()) {
    const TensorInfo* tb = b.FindTensor(ta.name);
    TensorChange c;
    c.name = ta.name;
    c.a_type = std::string(TensorTypeName(ta.type));
    c.a_shape = ta.shape;
    if (!tb) {
      c.kind = "removed";
      d.tensors.push_back(std::move(c));
      continue;
    }
    std::vector<std::string> what;
    if (ta.type != tb->type) what.push_back("type");
    if (ta.shape != tb->shape) what.push_back("shape");
    if (!SameQuant(ta.quant, tb->quant)) what.push_back("quant");
    if (what.empty() && (ta.checksum != tb->checksum || ta.size != tb->size))
      what.push_back("values");
    if (what.empty()) {
      ++d.same_tensors;
      continue;
    }
    c.kind = "changed";
    c.b_type = std::string(TensorTypeName(tb->type));
    c.b_shape = tb->shape;
    for (size_t i = 0; i < what.size(); ++i) c.what += (i ? "," : "") + what[i];
    if (opts.compute_sqnr && ta.numel() == tb->numel() && IsNumeric(ta.type) &&
        IsNumeric(tb->type)) {
      SSMQ_ASSIGN_OR_RETURN(std::vector<float> va, ReadTensorValues(a, ta));
      SSMQ_ASSIGN_OR_RETURN(std::vector<float> vb, ReadTensorValues(b, *tb));
      c.error = CompareToReference(va, vb);
    }
    d.tensors.push_back(std::move(c));
  }
  for (const TensorInfo& tb : b.tensors()) {
    if (a.FindTensor(tb.name)) continue;
    TensorChange c;
    c.name = tb.name;
    c.kind = "added";
    c.b_type = std::string(TensorTypeName(tb.type));
    c.b_shape = tb.shape;
    d.tensors.push_back(std::move(c));
  }
  return d;
}

std::string RenderDiffText(const DiffReport& d) {
  std::string out = "--- " + d.a_label + "\n+++ " + d.b_label + "\n";
  out += "Metadata: " + std::to_string(d.metadata.size()) + " different, " +
         std::to_string(d.same_metadata) + " same\n";
  if (!d.metadata.empty()) {
    TextTable t;
    t.AddColumn("");
    t.AddColumn("key");
    t.AddColumn("a");
    t.AddColumn("b");
    for (const auto& m : d.metadata)
      t.AddRow({m.kind == "added" ? "+" : (m.kind == "removed" ? "-" : "~"), m.key, m.a, m.b});
    out += t.Render();
  }
  out += "Tensors: " + std::to_string(d.tensors.size()) + " different, " +
         std::to_string(d.same_tensors) + " same\n";
  if (!d.tensors.empty()) {
    TextTable t;
    t.AddColumn("");
    t.AddColumn("name");
    t.AddColumn("a");
    t.AddColumn("b");
    t.AddColumn("what");
    t.AddColumn("sqnr_db", TextTable::Align::kRight);
    t.AddColumn("max_abs_err", TextTable::Align::kRight);
    for (const auto& c : d.tensors) {
      auto side = [](const std::string& type, const std::vector<int64_t>& shape) {
        return type.empty() ? std::string("-") : type + " " + FormatShape(shape);
      };
      t.AddRow({c.kind == "added" ? "+" : (c.kind == "removed" ? "-" : "~"), c.name,
                side(c.a_type, c.a_shape), side(c.b_type, c.b_shape), c.what.empty() ? "-" : c.what,
                c.error ? FormatDouble(c.error->sqnr_db, 4) : "-",
                c.error ? FormatDouble(c.error->max_abs_err) : "-"});
    }
    out += t.Render();
  }
  out += d.identical() ? "The files are identical in metadata and tensors.\n" : "";
  return out;
}

nlohmann::ordered_json DiffToJson(const DiffReport& d) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["a"] = d.a_label;
  j["b"] = d.b_label;
  j["identical"] = d.identical();
  j["same_metadata"] = d.same_metadata;
  j["same_tensors"] = d.same_tensors;
  j["metadata"] = ordered_json::array();
  for (const auto& m : d.metadata)
    j["metadata"].push_back({{"key", m.key}, {"kind", m.kind}, {"a", m.a}, {"b", m.b}});
  j["tensors"] = ordered_json::array();
  for (const auto& c : d.tensors) {
    ordered_json o;
    o["name"] = c.name;
    o["kind"] = c.kind;
    o["a"] = c.a_type.empty() ? ordered_json(nullptr)
                              : ordered_json{{"type", c.a_type}, {"shape", c.a_shape}};
    o["b"] = c.b_type.empty() ? ordered_json(nullptr)
                              : ordered_json{{"type", c.b_type}, {"shape", c.b_shape}};
    o["what"] = c.what;
    o["error"] = c.error ? ErrorToJson(*c.error) : ordered_json(nullptr);
    j["tensors"].push_back(std::move(o));
  }
  return j;
}

}  // namespace ssmq::inspect
