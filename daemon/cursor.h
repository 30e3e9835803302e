// Opaque keyset cursors of the HTTP API's paged listings: a tag naming the
// listing (and its version), fixed unsigned fields and a trailing byte string
// (an id), as text safe in a query string:
//   <tag>.<u64 hex>. ... .<bytes hex>
// Decoding fails on anything not made by encode_cursor with the same tag and
// field count. Pure; no I/O.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace rapport {

std::string encode_cursor(std::string_view tag, std::span<const std::uint64_t> fields, std::string_view bytes);

// Fills `fields` (its size is the expected count) and `bytes` (1..max_bytes long); false when malformed.
bool decode_cursor(std::string_view text, std::string_view tag, std::span<std::uint64_t> fields, std::string& bytes,
                   std::size_t max_bytes);

}  // namespace rapport
