#include "core/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace calmkit::json {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void Object::key(const std::string& k) {
  if (!first_) body_ += ",";
  first_ = false;
  body_ += quote(k) + ":";
}

Object& Object::num(const std::string& k, double v) {
  key(k);
  body_ += number(v);
  return *this;
}

Object& Object::integer(const std::string& k, int64_t v) {
  key(k);
  body_ += std::to_string(v);
  return *this;
}

Object& Object::boolean(const std::string& k, bool v) {
  key(k);
  body_ += v ? "true" : "false";
  return *this;
}

Object& Object::str(const std::string& k, const std::string& v) {
  key(k);
  body_ += quote(v);
  return *this;
}

Object& Object::null(const std::string& k) {
  key(k);
  body_ += "null";
  return *this;
}

Object& Object::raw(const std::string& k, const std::string& json) {
  key(k);
  body_ += json;
  return *this;
}

Object& Object::arr(const std::string& k, const Array& v) { return raw(k, v.dump()); }

Array& Array::raw(const std::string& json) {
  if (!body_.empty()) body_ += ",";
  body_ += json;
  return *this;
}

Array numbers(const std::vector<double>& v) {
  Array a;
  for (double x : v) a.num(x);
  return a;
}

namespace {

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw Error(code::kInternal, "not a JSON object (" + why + "): " + text.substr(0, 200));
}

size_t skipSpace(const std::string& s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

// A string literal starting at s[i] == '"': its unescaped value; i moves past the closing quote.
std::string readString(const std::string& s, size_t& i) {
  std::string out;
  for (++i; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      ++i;
      return out;
    }
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i >= s.size()) break;
    switch (s[i]) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'u': {
        if (i + 4 >= s.size()) bad(s, "short \\u escape");
        const long cp = std::strtol(s.substr(i + 1, 4).c_str(), nullptr, 16);
        // The reference's messages are ASCII; anything else is kept as UTF-8 of the BMP code point.
        if (cp < 0x80) {
          out += static_cast<char>(cp);
        } else if (cp < 0x800) {
          out += static_cast<char>(0xC0 | (cp >> 6));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          out += static_cast<char>(0xE0 | (cp >> 12));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        }
        i += 4;
        break;
      }
      default:
        out += s[i];
    }
  }
  bad(s, "unterminated string");
}

// The raw text of a value at s[i] (number, literal, nested object or array); i moves past it.
std::string readRaw(const std::string& s, size_t& i) {
  const size_t start = i;
  int depth = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      readString(s, i);
      --i;
      continue;
    }
    if (c == '{' || c == '[') ++depth;
    if (c == '}' || c == ']') {
      if (depth == 0) break;
      --depth;
    }
    if (c == ',' && depth == 0) break;
  }
  std::string raw = s.substr(start, i - start);
  while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' || raw.back() == '\t'))
    raw.pop_back();
  return raw;
}

}  // namespace

Flat Flat::parse(const std::string& text) {
  Flat f;
  size_t i = skipSpace(text, 0);
  if (i >= text.size() || text[i] != '{') bad(text, "no opening brace");
  i = skipSpace(text, i + 1);
  if (i < text.size() && text[i] == '}') return f;
  while (i < text.size()) {
    if (text[i] != '"') bad(text, "a key must be a string");
    const std::string k = readString(text, i);
    i = skipSpace(text, i);
    if (i >= text.size() || text[i] != ':') bad(text, "no colon after a key");
    i = skipSpace(text, i + 1);
    Field field;
    if (i < text.size() && text[i] == '"') {
      field.text = readString(text, i);
      field.isString = true;
    } else {
      field.text = readRaw(text, i);
      if (field.text.empty()) bad(text, "a value is missing");
    }
    f.fields_[k] = field;
    i = skipSpace(text, i);
    if (i < text.size() && text[i] == ',') {
      i = skipSpace(text, i + 1);
      continue;
    }
    if (i < text.size() && text[i] == '}') return f;
    bad(text, "expected ',' or '}'");
  }
  bad(text, "no closing brace");
}

std::optional<double> Flat::number(const std::string& k) const {
  auto it = fields_.find(k);
  if (it == fields_.end() || it->second.isString) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(it->second.text.c_str(), &end);
  if (end == it->second.text.c_str() || *end != '\0') return std::nullopt;
  return v;
}

std::optional<bool> Flat::boolean(const std::string& k) const {
  auto it = fields_.find(k);
  if (it == fields_.end() || it->second.isString) return std::nullopt;
  if (it->second.text == "true") return true;
  if (it->second.text == "false") return false;
  return std::nullopt;
}

std::optional<std::string> Flat::string(const std::string& k) const {
  auto it = fields_.find(k);
  if (it == fields_.end() || !it->second.isString) return std::nullopt;
  return it->second.text;
}

}  // namespace calmkit::json
