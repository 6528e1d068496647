// What the calmkit-core subcommands share: `--name value` options after positional arguments, number parsing with
// errors that name the option, a .npy writer, and the core's JSON writer for machine-readable output.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/json.h"

namespace calmkit_tools {

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::string get(const std::string& k, const std::string& fallback) const {
    auto it = options.find(k);
    return it == options.end() ? fallback : it->second;
  }
  bool has(const std::string& k) const { return options.count(k) > 0; }
};

// `flags` name the options that take no value (present: "1").
Args parseArgs(int argc, char** argv, const std::set<std::string>& flags = {});
int64_t toInt(const std::string& s, const std::string& what);
double toDouble(const std::string& s, const std::string& what);
std::vector<int> parseLayers(const std::string& s);

// .npy format 1.0: little-endian, C order.
void writeNpy(const std::string& path, const void* data, size_t bytes, const char* descr,
              const std::vector<int64_t>& shape);

// The core's JSON writer (core/json.h): one object, fields in insertion order, non-finite numbers as null.
using JsonObject = calmkit::json::Object;
inline std::string jsonString(const std::string& s) { return calmkit::json::quote(s); }

}  // namespace calmkit_tools
