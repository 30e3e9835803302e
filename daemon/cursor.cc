#include "daemon/cursor.h"

#include <charconv>

#include "common/hex.h"

namespace rapport {
namespace {

bool parse_u64_hex(std::string_view text, std::uint64_t& out) {
  if (text.empty() || text.size() > 16) return false;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out, 16);
  return ec == std::errc() && p == text.data() + text.size();
}

}  // namespace

std::string encode_cursor(std::string_view tag, std::span<const std::uint64_t> fields, std::string_view bytes) {
  std::string out(tag);
  out.push_back('.');
  for (const std::uint64_t field : fields) {
    char buf[17];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, field, 16);
    out.append(buf, end);
    out.push_back('.');
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  for (const unsigned char ch : bytes) {
    out.push_back(kDigits[ch >> 4]);
    out.push_back(kDigits[ch & 15]);
  }
  return out;
}

bool decode_cursor(std::string_view text, std::string_view tag, std::span<std::uint64_t> fields, std::string& bytes,
                   std::size_t max_bytes) {
  if (text.size() <= tag.size() || text.substr(0, tag.size()) != tag || text[tag.size()] != '.') return false;
  text.remove_prefix(tag.size() + 1);
  for (std::uint64_t& field : fields) {
    const auto dot = text.find('.');
    if (dot == std::string_view::npos || !parse_u64_hex(text.substr(0, dot), field)) return false;
    text.remove_prefix(dot + 1);
  }
  if (text.empty() || text.size() % 2 != 0 || text.size() > 2 * max_bytes) return false;
  bytes.clear();
  for (std::size_t i = 0; i < text.size(); i += 2) {
    const int hi = hex_digit(text[i]), lo = hex_digit(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    bytes.push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

}  // namespace rapport
