// Minimal JSON for the core's machine-readable output (the benchmark engine's reports, calmkit-core's lines) and
// for reading the flat one-line replies of the Python reference. LibTorch ships no JSON library, and the core
// needs only to write documents it builds itself and to read objects of numbers, strings and booleans.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace calmkit::json {

// A JSON string literal of `s` (quotes, backslashes and control characters escaped).
std::string quote(const std::string& s);
// A number with full precision (%.9g), or null when not finite.
std::string number(double v);

class Array;

// One JSON object, fields in insertion order.
class Object {
 public:
  Object& num(const std::string& k, double v);
  Object& integer(const std::string& k, int64_t v);
  Object& boolean(const std::string& k, bool v);
  Object& str(const std::string& k, const std::string& v);
  Object& null(const std::string& k);
  // A field whose value is already JSON text.
  Object& raw(const std::string& k, const std::string& json);
  Object& obj(const std::string& k, const Object& v) { return raw(k, v.dump()); }
  Object& arr(const std::string& k, const Array& v);
  bool empty() const { return first_; }
  std::string dump() const { return "{" + body_ + "}"; }

 private:
  void key(const std::string& k);
  std::string body_;
  bool first_ = true;
};

class Array {
 public:
  Array& num(double v) { return raw(number(v)); }
  Array& integer(int64_t v) { return raw(std::to_string(v)); }
  Array& str(const std::string& v) { return raw(quote(v)); }
  Array& obj(const Object& v) { return raw(v.dump()); }
  Array& raw(const std::string& json);
  std::string dump() const { return "[" + body_ + "]"; }
  bool empty() const { return body_.empty(); }

 private:
  std::string body_;
};

Array numbers(const std::vector<double>& v);

// A parsed flat object: each field's value as JSON text (strings unquoted and unescaped; nested objects and
// arrays kept as their text). Throws calmkit::Error(ERR_INTERNAL) on text that is not one JSON object.
class Flat {
 public:
  static Flat parse(const std::string& text);
  bool has(const std::string& k) const { return fields_.count(k) > 0; }
  std::optional<double> number(const std::string& k) const;
  std::optional<bool> boolean(const std::string& k) const;
  std::optional<std::string> string(const std::string& k) const;

 private:
  struct Field {
    std::string text;
    bool isString = false;
  };
  std::map<std::string, Field> fields_;
};

}  // namespace calmkit::json
