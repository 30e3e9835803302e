#include "ingest/submission.h"

namespace rapport {
namespace {

char lower_ascii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// "auth" (any case) then more key characters, closing quotes and blanks, then ':'.
bool auth_word_then_colon(std::string_view s) {
  for (std::size_t i = 0; i + 4 <= s.size(); ++i) {
    if (lower_ascii(s[i]) != 'a' || lower_ascii(s[i + 1]) != 'u' || lower_ascii(s[i + 2]) != 't' ||
        lower_ascii(s[i + 3]) != 'h') {
      continue;
    }
    std::size_t j = i + 4;
    while (j < s.size() && is_key_char(s[j])) ++j;
    while (j < s.size() && (s[j] == '"' || s[j] == '\'' || is_space(s[j]))) ++j;
    if (j < s.size() && s[j] == ':') return true;
  }
  return false;
}

// A quoted string followed by ':' (a key) that contains a backslash escape.
bool escaped_key(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '"') continue;
    bool escaped = false;
    std::size_t j = i + 1;
    while (j < s.size() && s[j] != '"') {
      if (s[j] == '\\') {
        escaped = true;
        ++j;
      }
      ++j;
    }
    if (j >= s.size()) return false;
    std::size_t k = j + 1;
    while (k < s.size() && is_space(s[k])) ++k;
    if (escaped && k < s.size() && s[k] == ':') return true;
    i = j;
  }
  return false;
}

}  // namespace

bool has_auth_key(std::string_view text) { return auth_word_then_colon(text) || escaped_key(text); }

std::string dead_letter_payload(std::string_view item, std::size_t max_bytes) {
  if (has_auth_key(item)) return std::string(kRedactedPayload);
  return std::string(item.substr(0, max_bytes));
}

std::string_view transport_name(Transport transport) {
  switch (transport) {
    case Transport::kTcp:
      return "tcp";
    case Transport::kHttp:
      return "http";
    case Transport::kImport:
      return "import";
    case Transport::kKafka:
      return "kafka";
  }
  return "unknown";
}

}  // namespace rapport
