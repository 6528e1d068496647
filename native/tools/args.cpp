#include "tools/args.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"

namespace calmkit_tools {

using calmkit::Error;
namespace code = calmkit::code;

Args parseArgs(int argc, char** argv, const std::set<std::string>& flags) {
  Args a;
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--no-", 0) == 0 || (s.rfind("--", 0) == 0 && flags.count(s.substr(2)))) {
      a.options[s.substr(2)] = "1";  // --no-X and the listed flags take no value
    } else if (s.rfind("--", 0) == 0) {
      if (i + 1 >= argc) throw Error(code::kInvalidArgument, "option " + s + " needs a value");
      a.options[s.substr(2)] = argv[++i];
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

int64_t toInt(const std::string& s, const std::string& what) {
  try {
    size_t used = 0;
    long long v = std::stoll(s, &used);
    if (used != s.size()) throw std::invalid_argument(s);
    return v;
  } catch (const std::exception&) {
    throw Error(code::kInvalidArgument, what + " must be an integer; got '" + s + "'");
  }
}

double toDouble(const std::string& s, const std::string& what) {
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used != s.size() || !std::isfinite(v)) throw std::invalid_argument(s);
    return v;
  } catch (const std::exception&) {
    throw Error(code::kInvalidArgument, what + " must be a number; got '" + s + "'");
  }
}

std::vector<int> parseLayers(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(static_cast<int>(toInt(item, "layer")));
  return out;
}

void writeNpy(const std::string& path, const void* data, size_t bytes, const char* descr,
              const std::vector<int64_t>& shape) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i)
    dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(code::kInvalidArgument, path + ": cannot be written");
  const unsigned short len = static_cast<unsigned short>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(reinterpret_cast<const char*>(&len), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!f) throw Error(code::kInvalidArgument, path + ": write failed");
}

}  // namespace calmkit_tools
