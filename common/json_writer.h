// JsonWriter: a small streaming JSON builder for responses (simdjson 3.0.1
// has no writer). Escapes strings per RFC 8259; non-finite numbers become
// null. Not thread-safe; reuse one per response.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace rapport {

class JsonWriter {
 public:
  JsonWriter() { out_.reserve(256); }

  JsonWriter& begin_object() { return open('{'); }
  JsonWriter& end_object() { return close('}'); }
  JsonWriter& begin_array() { return open('['); }
  JsonWriter& end_array() { return close(']'); }

  JsonWriter& key(std::string_view k) {
    comma();
    append_string(k);
    out_.push_back(':');
    after_key_ = true;
    return *this;
  }
  JsonWriter& value(std::string_view s) {
    comma();
    append_string(s);
    return *this;
  }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(bool b) {
    comma();
    out_ += b ? "true" : "false";
    return *this;
  }
  JsonWriter& value(double d) {
    comma();
    if (!std::isfinite(d)) {
      out_ += "null";
    } else {
      // Same text as printf's "%.10g", without printf's locale and parsing work.
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::general, 10);
      out_.append(buf, r.ptr);
    }
    return *this;
  }
  JsonWriter& value(std::int64_t i) {
    comma();
    return append_integer(i);
  }
  JsonWriter& value(std::uint64_t i) {
    comma();
    return append_integer(i);
  }
  JsonWriter& value(int i) { return value(static_cast<std::int64_t>(i)); }
  JsonWriter& value(unsigned i) { return value(static_cast<std::uint64_t>(i)); }
  JsonWriter& null() {
    comma();
    out_ += "null";
    return *this;
  }
  // Inserts already-serialised JSON as a value.
  JsonWriter& raw(std::string_view json) {
    comma();
    out_ += json;
    return *this;
  }
  template <typename T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

  // Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
  static std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return 0;
    }
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
    }
    return n;
  }

  // Escapes per RFC 8259; bytes that are not valid UTF-8 become U+FFFD so the output is always valid JSON.
  static void append_escaped(std::string& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x80) {
        const std::size_t n = utf8_sequence(s, i);
        if (n == 0) {
          out += "\ufffd";
        } else {
          out.append(s.substr(i, n));
          i += n - 1;
        }
        continue;
      }
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20) {
            out += "\\u00";
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xf]);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
    }
  }

 private:
  template <typename Integer>
  JsonWriter& append_integer(Integer i) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, i);
    out_.append(buf, r.ptr);
    return *this;
  }
  JsonWriter& open(char c) {
    comma();
    out_.push_back(c);
    first_ = true;
    return *this;
  }
  JsonWriter& close(char c) {
    out_.push_back(c);
    first_ = false;
    return *this;
  }
  void comma() {
    if (after_key_) {
      after_key_ = false;
      first_ = false;
      return;
    }
    if (!first_ && !out_.empty()) out_.push_back(',');
    first_ = false;
  }
  void append_string(std::string_view s) {
    out_.push_back('"');
    append_escaped(out_, s);
    out_.push_back('"');
  }

  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace rapport
