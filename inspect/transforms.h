// Permutations ("blk.{i}.perm.<site>", i32 tensors) and Hadamard descriptors
// (metadata "blk.{i}.hadamard.<site>.<field>", e.g. .size and .kind) of a file.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "format/ssmq_file.h"

namespace ssmq::inspect {

struct PermutationReport {
  std::string name;               // tensor name
  int layer = -1;
  std::string site;               // "<site>" of "blk.{i}.perm.<site>"
  uint64_t size = 0;              // entries
  bool valid = false;             // a permutation of 0..size-1
  std::string problem;            // why not valid ("" when valid)
  uint64_t moved = 0;             // entries with p[i] != i
  std::vector<int64_t> group_sizes;  // from metadata "<name>.groups" (empty when absent)
};

struct HadamardReport {
  int layer = -1;                 // -1 for a file-wide descriptor "hadamard.<site>.*"
  std::string site;
  std::string size;               // display of the ".size" field ("" when absent)
  std::string kind;               // display of the ".kind" field ("" when absent)
  std::string base;               // display of the ".base" field: m of N = m * 2^k
  std::string problem;            // size/base inconsistent ("" when fine or unknown)
  std::vector<std::pair<std::string, std::string>> fields;  // every field, file order
};

struct TransformsReport {
  std::vector<PermutationReport> permutations;
  std::vector<HadamardReport> hadamards;
};

// Checks that values is a permutation of 0..n-1 and counts moved entries.
PermutationReport AnalyzePermutation(const std::vector<int64_t>& values);

TransformsReport BuildTransforms(const SsmqFile& file);

std::string RenderTransformsText(const TransformsReport& r);
nlohmann::ordered_json TransformsToJson(const TransformsReport& r);

}  // namespace ssmq::inspect
