// Hexadecimal digits, for percent-decoding and the API's cursors.
#pragma once

namespace rapport {

// The value of one hex digit (either case); -1 for anything else.
constexpr int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace rapport
