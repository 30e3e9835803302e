// Decoder: wire bytes -> validated Events (contract in decoder.h).
//
// Why the DOM API and not On-Demand: On-Demand validates only what is touched
// and does not reject trailing content (`{...} x`). The DOM parser validates
// the whole item -- structure, UTF-8, trailing bytes, depth -- before a single
// field is looked at, so "valid JSON" means the same thing for every line.
//
// Why parse_into_document with our own document: dom::parser::parse() grows
// its internal document to the longest line seen so far, i.e. it reallocates
// in the steady state; a document we allocate once to max_line_bytes does not.
#include "ingest/decoder.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace rapport {
namespace {

namespace dom = simdjson::dom;

// Nesting limit of an event object (the object itself is level 1). Deeper
// documents are rejected as kTooLarge: depth is a resource limit, like length.
constexpr std::size_t kMaxDepth = 32;
constexpr std::int64_t kMaxTsMs = 253402300800000;  // 10000-01-01T00:00:00Z
// An integer `ts` below this (1973-03-03T09:46:40Z in ms) can only be epoch seconds: rejected.
constexpr std::int64_t kMinIntegerTsMs = 100000000000;
constexpr std::string_view kBom = "\xEF\xBB\xBF";
// Array bodies get their own parser; memory above this is released after the
// body (a 16 MiB body costs ~15x its size in parser buffers).
constexpr std::size_t kInitialBodyBytes = 64 * 1024;
constexpr std::size_t kRetainedBodyBytes = 1024 * 1024;
// Numbers longer than this are not re-parsed when classifying a NUMBER_ERROR.
constexpr std::size_t kMaxNumberToken = 512;
constexpr std::string_view kWantObject = "a JSON object";
constexpr std::string_view kWantArray = "a JSON array";
// Values quoted in messages are cut to this many bytes.
constexpr std::size_t kMaxQuotedBytes = 64;

// ---------------------------------------------------------------------------
// Known fields

enum Field : std::uint8_t {
  kEventId,
  kCustomerId,
  kTs,
  kType,
  kChannel,
  kAmount,
  kCost,
  kSentiment,
  kNps,
  kCsat,
  kRating,
  kFieldCount,
};
constexpr int kFirstNumeric = kAmount;
constexpr int kNoField = -1;

using FieldNames = std::array<std::string_view, kFieldCount>;
constexpr FieldNames kFlatNames = {"event_id", "customer_id", "ts",  "type", "channel", "amount",
                                   "cost",     "sentiment",   "nps", "csat", "rating"};
// CloudEvents: envelope attributes for ids/time/type, the rest from `data`.
constexpr FieldNames kCloudNames = {"id",           "subject",     "time",       "type",
                                    "data.channel", "data.amount", "data.cost",  "data.sentiment",
                                    "data.nps",     "data.csat",   "data.rating"};
constexpr std::string_view kDataCustomerId = "data.customer_id";
constexpr std::string_view kDataTs = "data.ts";
constexpr std::string_view kAliases = "aliases";
constexpr std::string_view kDataAliases = "data.aliases";
constexpr std::string_view kIdentifyType = "identify";

struct NumericRange {
  double lo;
  double hi;
  std::string_view text;
};
constexpr std::array<NumericRange, kFieldCount - kFirstNumeric> kRanges = {{
    {0, 1e9, "[0, 1e9]"},  // amount
    {0, 1e9, "[0, 1e9]"},  // cost
    {-1, 1, "[-1, 1]"},    // sentiment
    {0, 10, "[0, 10]"},    // nps
    {1, 5, "[1, 5]"},      // csat
    {1, 5, "[1, 5]"},      // rating
}};

// Switch on length first: one or two memcmp per key instead of eleven.
int match_field(std::string_view key) {
  switch (key.size()) {
    case 2:
      return key == "ts" ? kTs : kNoField;
    case 3:
      return key == "nps" ? kNps : kNoField;
    case 4:
      if (key == "type") return kType;
      if (key == "cost") return kCost;
      return key == "csat" ? kCsat : kNoField;
    case 6:
      if (key == "amount") return kAmount;
      return key == "rating" ? kRating : kNoField;
    case 7:
      return key == "channel" ? kChannel : kNoField;
    case 8:
      return key == "event_id" ? kEventId : kNoField;
    case 9:
      return key == "sentiment" ? kSentiment : kNoField;
    case 11:
      return key == "customer_id" ? kCustomerId : kNoField;
    default:
      return kNoField;
  }
}

enum CloudAttr : std::uint8_t { kSpecVersion, kId, kSource, kCeType, kTime, kSubject, kData, kCloudAttrCount };
constexpr std::array<std::string_view, kCloudAttrCount> kCloudAttrNames = {"specversion", "id",      "source", "type",
                                                                           "time",        "subject", "data"};

int match_cloud_attr(std::string_view key) {
  for (std::size_t i = 0; i < kCloudAttrNames.size(); ++i) {
    if (kCloudAttrNames[i] == key) return static_cast<int>(i);
  }
  return kNoField;
}

// The known fields of one item, gathered in a single pass over its members so
// that validation runs in a fixed order whatever the member order on the wire.
struct Fields {
  std::array<dom::element, kFieldCount> value{};
  FieldNames name = kFlatNames;       // wire names, for messages
  std::uint32_t present = 0;          // non-null values only: null means absent
  bool dotted_type = false;           // CloudEvents: event type is the last '.' segment
  std::string_view channel_fallback;  // CloudEvents: last path segment of `source`
  dom::element aliases;               // identify events: "aliases" (CloudEvents: data.aliases)
  bool has_aliases = false;           // non-null "aliases" present
  std::string_view aliases_name = kAliases;

  bool has(int f) const { return (present >> f) & 1U; }
  void set(int f, dom::element e) {
    if (e.is_null()) return;
    value[f] = e;
    present |= 1U << f;
  }
};

// ---------------------------------------------------------------------------
// Timestamps

bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int m) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// Days since 1970-01-01 (H. Hinnant's days_from_civil), for y >= 0.
std::int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = y / 400;
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// Parses "fraction and offset" after the seconds; returns false on junk.
bool parse_frac_and_offset(std::string_view s, std::size_t pos, int& ms, int& offset_min) {
  ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    const std::size_t start = ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (pos - start < 3) ms = ms * 10 + (s[pos] - '0');
      ++pos;
    }
    const std::size_t digits = pos - start;
    if (digits == 0) return false;
    for (std::size_t i = digits; i < 3; ++i) ms *= 10;  // ".5" is 500 ms
  }
  if (pos >= s.size()) return false;
  const char c = s[pos];
  if (c == 'Z' || c == 'z') {
    offset_min = 0;
    return pos + 1 == s.size();
  }
  if (c != '+' && c != '-') return false;
  int oh = 0;
  int om = 0;
  if (pos + 6 != s.size() || !read_digits(s, pos + 1, 2, oh) || s[pos + 3] != ':' || !read_digits(s, pos + 4, 2, om)) {
    return false;
  }
  if (oh > 23 || om > 59) return false;
  offset_min = (c == '-' ? -1 : 1) * (oh * 60 + om);
  return true;
}

// RFC 3339 date-time ("2026-11-01T12:00:00.5+02:00"), years 1970..9999,
// leap second (60) rejected. Returns epoch milliseconds.
std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (s.size() < 20 || !read_digits(s, 0, 4, y) || s[4] != '-' || !read_digits(s, 5, 2, mo) || s[7] != '-' ||
      !read_digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't') || !read_digits(s, 11, 2, h) || s[13] != ':' ||
      !read_digits(s, 14, 2, mi) || s[16] != ':' || !read_digits(s, 17, 2, sec)) {
    return std::nullopt;
  }
  int ms = 0;
  int offset_min = 0;
  if (!parse_frac_and_offset(s, 19, ms, offset_min)) return std::nullopt;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59) {
    return std::nullopt;
  }
  const std::int64_t secs = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + sec - offset_min * 60;
  const std::int64_t t = secs * 1000 + ms;
  if (t < 0 || t >= kMaxTsMs) return std::nullopt;
  return t;
}

// A date-time that would be valid with a "Z" appended: "2024-05-01T12:00:00"
// is the local time of an unknown zone, not an instant.
bool lacks_utc_offset(std::string_view s) {
  std::array<char, 64> buf{};
  if (s.empty() || s.size() >= buf.size() || s.back() < '0' || s.back() > '9') return false;
  std::memcpy(buf.data(), s.data(), s.size());
  buf[s.size()] = 'Z';
  return parse_rfc3339(std::string_view(buf.data(), s.size() + 1)).has_value();
}

// Why a `ts` value was not usable (each gets its own message).
enum class TsError : std::uint8_t { kNone, kForm, kNoOffset, kSeconds };

TsError parse_ts(dom::element e, std::int64_t& out) {
  std::string_view s;
  if (e.get_string().get(s) == simdjson::SUCCESS) {
    const std::optional<std::int64_t> t = parse_rfc3339(s);
    if (!t) return lacks_utc_offset(s) ? TsError::kNoOffset : TsError::kForm;
    out = *t;
    return TsError::kNone;
  }
  // Only a JSON integer counts as epoch ms: 1.7e12 or 1700000000000.0 is
  // probably seconds-or-float confusion upstream and is rejected.
  if (e.type() != dom::element_type::INT64) return TsError::kForm;
  const std::int64_t v = e.get_int64().value_unsafe();
  if (v < 0 || v >= kMaxTsMs) return TsError::kForm;
  // Below 10^11 ms (1973-03-03) an integer is almost surely epoch seconds (10^11 s is the year 5138).
  if (v < kMinIntegerTsMs) return TsError::kSeconds;
  out = v;
  return TsError::kNone;
}

// ---------------------------------------------------------------------------
// Parse-error classification helpers

int hex4(std::string_view s, std::size_t pos) {
  if (pos + 4 > s.size()) return -1;
  int v = 0;
  for (std::size_t i = pos; i < pos + 4; ++i) {
    const char c = s[i];
    int digit = 0;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return -1;
    }
    v = v * 16 + digit;
  }
  return v;
}

// simdjson reports an escaped lone surrogate ("\ud800") as a generic
// STRING_ERROR; this tells it apart from other bad escapes ("\x").
bool has_lone_surrogate_escape(std::string_view s) {
  for (std::size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] != '\\') continue;
    if (s[i + 1] != 'u') {
      ++i;  // skip the escaped character, which may itself be a backslash
      continue;
    }
    const int cp = hex4(s, i + 2);
    if (cp < 0) continue;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return true;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      const int lo = i + 7 < s.size() && s[i + 6] == '\\' && s[i + 7] == 'u' ? hex4(s, i + 8) : -1;
      if (lo < 0xDC00 || lo > 0xDFFF) return true;
      i += 11;
      continue;
    }
    i += 5;
  }
  return false;
}

// TAPE_ERROR covers truncation, trailing content and bad structure alike;
// matching brackets (outside strings) tells the first two apart for the message.
std::string_view describe_structure_error(std::string_view s) {
  static constexpr std::string_view kGeneric = "malformed JSON (bad structure)";
  const std::size_t start = s.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos || (s[start] != '{' && s[start] != '[')) return kGeneric;
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = start; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      const bool trailing = s.find_first_not_of(" \t\r\n", i + 1) != std::string_view::npos;
      return trailing ? "malformed JSON (trailing content after the value)" : kGeneric;
    }
  }
  return "malformed JSON (truncated)";
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool is_json_number(std::string_view t) {
  std::size_t i = 0;
  auto digits = [&] {
    const std::size_t start = i;
    while (i < t.size() && is_digit(t[i])) ++i;
    return i - start;
  };
  if (i < t.size() && t[i] == '-') ++i;
  if (i < t.size() && t[i] == '0') {
    ++i;
  } else if (i >= t.size() || t[i] < '1' || t[i] > '9' || digits() == 0) {
    return false;
  }
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == t.size();
}

bool is_number_char(char c) { return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'; }

std::string_view element_type_name(dom::element e) {
  switch (e.type()) {
    case dom::element_type::ARRAY:
      return "an array";
    case dom::element_type::OBJECT:
      return "an object";
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
    case dom::element_type::DOUBLE:
      return "a number";
    case dom::element_type::STRING:
      return "a string";
    case dom::element_type::BOOL:
      return "a boolean";
    case dom::element_type::NULL_VALUE:
      return "null";
  }
  return "a value";
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

std::string_view skip_json_space(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  return s.substr(i);
}

// "https://host/connectors/web/" -> "web"; "urn:x" -> "urn:x".
std::string_view last_path_segment(std::string_view s) {
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  const std::size_t slash = s.rfind('/');
  return slash == std::string_view::npos ? s : s.substr(slash + 1);
}

// A quoted value in a message: cut on a UTF-8 boundary, control bytes masked
// so a message is always one printable line.
struct Quoted {
  std::string_view s;
  std::string_view prefix = {};  // written inside the quotes, uncut ("data.")
};

}  // namespace

std::string_view reject_reason_label(RejectReason reason) {
  static constexpr std::array<std::string_view, kRejectReasonCount> kLabels = {
      "malformed_json", "invalid_utf8",  "not_an_object",    "missing_field",   "wrong_type", "out_of_range",
      "unknown_type",   "bad_timestamp", "future_timestamp", "duplicate_field", "too_large",  "identity_refused",
  };
  const auto i = static_cast<std::size_t>(reason);
  return i < kLabels.size() ? kLabels[i] : std::string_view("unknown");
}

// ---------------------------------------------------------------------------

struct Decoder::Impl {
  explicit Impl(const DecodeOptions& options) {
    message.reserve(256);
    // On failure the first line retries and reports kTooLarge.
    grow_line_buffers(options.max_line_bytes);
  }

  // --- state ---------------------------------------------------------------
  dom::parser line_parser;
  dom::document line_doc;
  std::vector<char> line_buf;  // the line copied with SIMDJSON_PADDING spare bytes
  std::size_t line_capacity = 0;

  dom::parser body_parser;
  dom::document body_doc;
  std::vector<char> body_buf;
  std::size_t body_capacity = 0;

  dom::parser token_parser;  // re-parses single numbers (classify_number_error); sized on first use

  RejectReason reason = RejectReason::kMalformedJson;
  std::string message;  // capacity persists across calls
  // Of the last item decoded: its event id when it could be read (points into
  // the parsed document), and whether it was not an object at all.
  std::string_view event_id;
  bool unusable = false;
  // Of the last item decoded successfully: whether it was an identify event, and its aliases.
  bool identify = false;
  std::vector<std::string> aliases;

  // --- messages --------------------------------------------------------------
  void append(std::string_view s) { message.append(s); }
  void append(std::uint64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    message.append(buf, r.ptr);
  }
  void append(std::int64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    message.append(buf, r.ptr);
  }
  void append(Quoted q) {
    std::string_view s = q.s;
    bool cut = false;
    if (s.size() > kMaxQuotedBytes) {
      std::size_t n = kMaxQuotedBytes;
      while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // not inside a code point
      s = s.substr(0, n);
      cut = true;
    }
    message.push_back('"');
    message.append(q.prefix);
    for (const char c : s) message.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7F ? '?' : c);
    message.append(cut ? "...\"" : "\"");
  }

  template <typename... Parts>
  bool fail(RejectReason r, const Parts&... parts) {
    reason = r;
    message.clear();
    (append(parts), ...);
    return false;
  }

  // --- buffers ---------------------------------------------------------------
  bool grow_line_buffers(std::size_t bytes) {
    bytes = std::max<std::size_t>(bytes, 64);
    if (bytes <= line_capacity) return true;
    line_capacity = 0;
    if (line_parser.allocate(bytes, kMaxDepth) != simdjson::SUCCESS || line_doc.allocate(bytes) != simdjson::SUCCESS) {
      return false;
    }
    line_buf.resize(bytes + simdjson::SIMDJSON_PADDING);
    line_capacity = bytes;
    return true;
  }

  bool grow_body_buffers(std::size_t bytes) {
    bytes = std::max(bytes, kInitialBodyBytes);
    if (bytes <= body_capacity) return true;
    body_capacity = 0;
    // One extra level: the enclosing array, so each element gets kMaxDepth.
    if (body_parser.allocate(bytes, kMaxDepth + 1) != simdjson::SUCCESS ||
        body_doc.allocate(bytes) != simdjson::SUCCESS) {
      return false;
    }
    body_buf.resize(bytes + simdjson::SIMDJSON_PADDING);
    body_capacity = bytes;
    return true;
  }

  void release_large_body_buffers() {
    if (body_capacity <= kRetainedBodyBytes) return;
    body_parser = dom::parser{};
    body_doc = dom::document{};
    std::vector<char>().swap(body_buf);
    body_capacity = 0;
  }

  // --- parsing ----------------------------------------------------------------
  // Parses `text` (already size-checked) into `doc`; on failure sets reason/message.
  // `expected` names what the caller wants at the root, for messages.
  bool parse(std::string_view text, std::string_view expected, dom::parser& parser, dom::document& doc,
             std::vector<char>& buf, dom::element& root) {
    // simdjson rejects NUL inside strings only as "unescaped characters" and
    // outside strings as structure errors; the contract calls it invalid text.
    if (std::memchr(text.data(), 0, text.size()) != nullptr) {
      return fail(RejectReason::kInvalidUtf8, "NUL byte in the input");
    }
    const std::string_view start = skip_json_space(text);
    if (!start.empty() && (start.front() == '-' || is_digit(start.front()))) return reject_root_number(text, expected);
    std::memcpy(buf.data(), text.data(), text.size());
    const simdjson::error_code err = parser.parse_into_document(doc, buf.data(), text.size(), false).get(root);
    return err == simdjson::SUCCESS || classify_parse_error(err, text);
  }

  // simdjson copies a root-level number into a heap buffer before parsing it.
  // A number is never an event, so we judge it here without simdjson and keep
  // the reject path allocation-free too.
  bool reject_root_number(std::string_view text, std::string_view expected) {
    if (!simdjson::validate_utf8(text.data(), text.size())) return fail(RejectReason::kInvalidUtf8, "invalid UTF-8");
    std::string_view number = skip_json_space(text);
    while (!number.empty() &&
           (number.back() == ' ' || number.back() == '\t' || number.back() == '\r' || number.back() == '\n')) {
      number.remove_suffix(1);
    }
    if (!is_json_number(number)) return fail(RejectReason::kMalformedJson, "malformed JSON (bad structure)");
    return fail(RejectReason::kNotAnObject, "expected ", expected, ", got a number");
  }

  bool classify_parse_error(simdjson::error_code err, std::string_view text) {
    using RR = RejectReason;
    switch (err) {
      case simdjson::UTF8_ERROR:
        return fail(RR::kInvalidUtf8, "invalid UTF-8");
      case simdjson::DEPTH_ERROR:
        return fail(RR::kTooLarge, "nesting deeper than ", std::uint64_t{kMaxDepth}, " levels");
      case simdjson::STRING_ERROR:
        if (has_lone_surrogate_escape(text)) return fail(RR::kInvalidUtf8, "escaped lone surrogate in a string");
        return fail(RR::kMalformedJson, "invalid escape in a string");
      case simdjson::UNESCAPED_CHARS:
        return fail(RR::kMalformedJson, "unescaped control character in a string");
      case simdjson::UNCLOSED_STRING:
        return fail(RR::kMalformedJson, "unclosed string");
      case simdjson::NUMBER_ERROR:
        return classify_number_error(text);
      case simdjson::EMPTY:
        return fail(RR::kMalformedJson, "empty document");
      case simdjson::T_ATOM_ERROR:
      case simdjson::F_ATOM_ERROR:
      case simdjson::N_ATOM_ERROR:
        return fail(RR::kMalformedJson, "invalid literal (expected true, false or null)");
      case simdjson::CAPACITY:
      case simdjson::MEMALLOC:
        return fail(RR::kTooLarge, "document too large to parse");
      default:  // TAPE_ERROR and friends
        return fail(RR::kMalformedJson, describe_structure_error(text));
    }
  }

  // NUMBER_ERROR covers both bad syntax (01, 1.) and numbers simdjson cannot
  // represent (1e400, integers beyond 64 bits). The latter are well-formed
  // JSON with an out-of-range value, so they get kOutOfRange naming the key.
  bool classify_number_error(std::string_view s) {
    std::string_view key;
    std::optional<std::string_view> culprit_key;
    for (std::size_t i = 0; i < s.size();) {
      const char c = s[i];
      if (c == '"') {
        std::size_t j = i + 1;
        while (j < s.size() && s[j] != '"') j += s[j] == '\\' ? 2 : 1;
        const std::string_view str = s.substr(i + 1, std::min(j, s.size()) - i - 1);
        i = j + 1;
        const std::string_view rest = skip_json_space(s.substr(std::min(i, s.size())));
        if (!rest.empty() && rest.front() == ':') key = str;
      } else if (c == '-' || is_digit(c)) {
        std::size_t j = i;
        while (j < s.size() && is_number_char(s[j])) ++j;
        const std::string_view token = s.substr(i, j - i);
        if (!is_json_number(token)) return fail(RejectReason::kMalformedJson, "invalid number");
        if (!culprit_key && !number_parses(token)) culprit_key = key;
        i = j;
      } else {
        ++i;
      }
    }
    if (!culprit_key) return fail(RejectReason::kMalformedJson, "invalid number");
    const int f = match_field(*culprit_key);
    if (f >= kFirstNumeric) {
      return fail(RejectReason::kOutOfRange, Quoted{*culprit_key}, " out of range ", kRanges[f - kFirstNumeric].text);
    }
    if (culprit_key->empty()) return fail(RejectReason::kOutOfRange, "number out of range");
    return fail(RejectReason::kOutOfRange, Quoted{*culprit_key}, " is a number out of range");
  }

  bool number_parses(std::string_view token) {
    if (token.size() > kMaxNumberToken) return false;
    // Wrapped in an array: a root-level number would make simdjson allocate.
    std::array<char, kMaxNumberToken + 2 + simdjson::SIMDJSON_PADDING> buf{};
    buf[0] = '[';
    std::memcpy(buf.data() + 1, token.data(), token.size());
    buf[token.size() + 1] = ']';
    return token_parser.parse(buf.data(), token.size() + 2, false).error() == simdjson::SUCCESS;
  }

  // --- items ------------------------------------------------------------------
  // Decodes one self-contained item (a line, or a single-object body).
  bool decode_item(std::string_view text, std::string_view noun, bool cloud, const DecodeOptions& options,
                   std::int64_t now_ms, Event& out) {
    event_id = {};
    unusable = true;  // until it parses as an object
    identify = false;
    if (text.size() > options.max_line_bytes) {
      return fail(RejectReason::kTooLarge, noun, " is ", std::uint64_t{text.size()}, " bytes; limit is ",
                  std::uint64_t{options.max_line_bytes});
    }
    if (!grow_line_buffers(options.max_line_bytes)) return fail(RejectReason::kTooLarge, "out of memory");
    dom::element root;
    if (!parse(text, kWantObject, line_parser, line_doc, line_buf, root)) return false;
    return decode_element(root, cloud, options, now_ms, out);
  }

  bool decode_element(dom::element e, bool cloud, const DecodeOptions& options, std::int64_t now_ms, Event& out) {
    event_id = {};
    unusable = true;
    identify = false;
    dom::object obj;
    if (e.get_object().get(obj) != simdjson::SUCCESS) {
      return fail(RejectReason::kNotAnObject, "expected ", kWantObject, ", got ", element_type_name(e));
    }
    unusable = false;
    Fields fields;
    const bool collected = cloud ? collect_cloud(obj, fields) : collect_flat(obj, fields);
    if (!collected) return false;  // a duplicate field: the id may be the ambiguous one
    if (validate(fields, options, now_ms, out)) return true;
    remember_event_id(fields);
    return false;
  }

  // For the rejection: the event id, if the item had a usable one.
  void remember_event_id(const Fields& fields) {
    std::string_view id;
    if (fields.has(kEventId) && fields.value[kEventId].get_string().get(id) == simdjson::SUCCESS && !id.empty() &&
        id.size() <= kMaxIdBytes && std::memchr(id.data(), 0, id.size()) == nullptr) {
      event_id = id;
    }
  }

  bool collect_flat(dom::object obj, Fields& fields) {
    std::uint32_t seen = 0;
    for (const dom::key_value_pair& kv : obj) {
      const int f = match_field(kv.key);
      if (f == kNoField) {
        if (kv.key == kAliases && !collect_aliases(kv, fields, kAliases)) return false;
        continue;  // unknown fields are ignored (forward compatibility)
      }
      if ((seen >> f) & 1U) return fail(RejectReason::kDuplicateField, "duplicate field ", Quoted{kv.key});
      seen |= 1U << f;
      fields.set(f, kv.value);
    }
    return true;
  }

  bool collect_aliases(const dom::key_value_pair& kv, Fields& fields, std::string_view name) {
    if (fields.has_aliases) return fail(RejectReason::kDuplicateField, "duplicate field ", Quoted{name});
    if (kv.value.is_null()) return true;
    fields.aliases = kv.value;
    fields.has_aliases = true;
    fields.aliases_name = name;
    return true;
  }

  bool collect_cloud(dom::object obj, Fields& fields) {
    std::array<dom::element, kCloudAttrCount> attr{};
    std::uint32_t seen = 0;
    std::uint32_t present = 0;
    for (const dom::key_value_pair& kv : obj) {
      const int a = match_cloud_attr(kv.key);
      if (a == kNoField) continue;  // extensions, datacontenttype, ... are ignored
      if ((seen >> a) & 1U) return fail(RejectReason::kDuplicateField, "duplicate field ", Quoted{kv.key});
      seen |= 1U << a;
      if (kv.value.is_null()) continue;
      attr[a] = kv.value;
      present |= 1U << a;
    }
    auto has = [&](CloudAttr a) { return (present >> a) & 1U; };
    if (!has(kSpecVersion)) return fail(RejectReason::kMissingField, "missing field \"specversion\"");
    std::string_view version;
    if (attr[kSpecVersion].get_string().get(version) != simdjson::SUCCESS) {
      return fail(RejectReason::kWrongType, "\"specversion\" must be a string");
    }
    if (version != "1.0") {
      return fail(RejectReason::kOutOfRange, "unsupported \"specversion\" ", Quoted{version}, "; expected \"1.0\"");
    }
    fields.name = kCloudNames;
    fields.dotted_type = true;
    fields.aliases_name = kDataAliases;
    if (has(kData) && !collect_cloud_data(attr[kData], fields)) return false;
    // Envelope attributes win over their `data` fallbacks.
    if (has(kId)) fields.set(kEventId, attr[kId]);
    if (has(kCeType)) fields.set(kType, attr[kCeType]);
    if (has(kSubject)) {
      fields.set(kCustomerId, attr[kSubject]);
      fields.name[kCustomerId] = kCloudNames[kCustomerId];
    }
    if (has(kTime)) {
      fields.set(kTs, attr[kTime]);
      fields.name[kTs] = kCloudNames[kTs];
    }
    if (has(kSource)) {
      std::string_view source;
      if (attr[kSource].get_string().get(source) != simdjson::SUCCESS) {
        return fail(RejectReason::kWrongType, "\"source\" must be a string");
      }
      // A derived label that does not fit (e.g. a URN source) is dropped, not
      // an error: `source` is a valid CloudEvent attribute, just not a channel.
      const std::string_view segment = last_path_segment(source);
      if (segment.size() <= kMaxChannelBytes) fields.channel_fallback = segment;
    }
    return true;
  }

  bool collect_cloud_data(dom::element data, Fields& fields) {
    dom::object obj;
    if (data.get_object().get(obj) != simdjson::SUCCESS) {
      return fail(RejectReason::kWrongType, "\"data\" must be an object");
    }
    std::uint32_t seen = 0;
    for (const dom::key_value_pair& kv : obj) {
      const int f = match_field(kv.key);
      // id and type come from the envelope; data.event_id / data.type are ignored.
      if (f == kNoField && kv.key == kAliases && !collect_aliases(kv, fields, kDataAliases)) return false;
      if (f == kNoField || f == kEventId || f == kType) continue;
      if ((seen >> f) & 1U) return fail(RejectReason::kDuplicateField, "duplicate field ", Quoted{kv.key, "data."});
      seen |= 1U << f;
      fields.set(f, kv.value);
    }
    // Fallbacks for subject/time, named as sent; the envelope overrides them.
    if (fields.has(kCustomerId)) fields.name[kCustomerId] = kDataCustomerId;
    if (fields.has(kTs)) fields.name[kTs] = kDataTs;
    return true;
  }

  // --- validation -------------------------------------------------------------
  bool validate(const Fields& f, const DecodeOptions& options, std::int64_t now_ms, Event& out) {
    out.sent_as.clear();  // never from the wire: set by identity relabeling (a reused Event may hold one)
    if (!validate_id(f, kEventId, out.event_id)) return false;
    if (!validate_id(f, kCustomerId, out.customer_id)) return false;
    bool is_identify = false;
    if (!validate_type(f, out, is_identify)) return false;
    if (is_identify) return validate_identify(f, options, now_ms, out);
    if (!validate_ts(f, options, now_ms, out)) return false;
    if (!validate_channel(f, out)) return false;
    for (int n = kFirstNumeric; n < kFieldCount; ++n) {
      if (!validate_number(f, n, out)) return false;
    }
    return validate_required_by_type(f, out);
  }

  bool missing(const Fields& f, int field) {
    return fail(RejectReason::kMissingField, "missing field ", Quoted{f.name[field]});
  }

  bool validate_id(const Fields& f, int field, BoundedString<kMaxIdBytes>& out) {
    if (!f.has(field)) return missing(f, field);
    std::string_view s;
    if (f.value[field].get_string().get(s) != simdjson::SUCCESS) {
      return fail(RejectReason::kWrongType, Quoted{f.name[field]}, " must be a string");
    }
    if (s.empty() || s.size() > kMaxIdBytes) {
      return fail(RejectReason::kOutOfRange, Quoted{f.name[field]}, " must be 1..", std::uint64_t{kMaxIdBytes},
                  " bytes, got ", std::uint64_t{s.size()});
    }
    // An escaped \u0000 is valid JSON but would truncate the id in C APIs and logs.
    if (std::memchr(s.data(), 0, s.size()) != nullptr) {
      return fail(RejectReason::kInvalidUtf8, Quoted{f.name[field]}, " contains NUL");
    }
    out.assign(s);
    return true;
  }

  // An identify event: ids, ts and 1..kMaxIdentifyAliases aliases; no channel nor numbers.
  bool validate_identify(const Fields& f, const DecodeOptions& options, std::int64_t now_ms, Event& out) {
    if (!options.identify) return fail(RejectReason::kIdentityRefused, options.identify_refusal);
    if (!validate_ts(f, options, now_ms, out)) return false;
    if (!f.has_aliases) return fail(RejectReason::kMissingField, "missing field ", Quoted{f.aliases_name});
    const Quoted name{f.aliases_name};
    dom::array items;
    if (f.aliases.get_array().get(items) != simdjson::SUCCESS) {
      return fail(RejectReason::kWrongType, name, " must be an array of customer ids");
    }
    const std::size_t n = items.size();
    if (n == 0 || n > kMaxIdentifyAliases) {
      return fail(RejectReason::kOutOfRange, name, " must hold 1..", std::uint64_t{kMaxIdentifyAliases},
                  " customer ids, got ", std::uint64_t{n});
    }
    aliases.resize(n);
    std::size_t i = 0;
    for (const dom::element item : items) {
      std::string_view s;
      if (item.get_string().get(s) != simdjson::SUCCESS) {
        return fail(RejectReason::kWrongType, name, " item ", std::uint64_t{i}, " must be a string (a customer id)");
      }
      if (s.empty() || s.size() > kMaxIdBytes) {
        return fail(RejectReason::kOutOfRange, name, " item ", std::uint64_t{i}, " must be 1..",
                    std::uint64_t{kMaxIdBytes}, " bytes, got ", std::uint64_t{s.size()});
      }
      if (std::memchr(s.data(), 0, s.size()) != nullptr) {
        return fail(RejectReason::kInvalidUtf8, name, " item ", std::uint64_t{i}, " contains NUL");
      }
      aliases[i++].assign(s);
    }
    out.channel.clear();
    for (int field = kFirstNumeric; field < kFieldCount; ++field) numeric_slot(out, field).reset();
    identify = true;
    return true;
  }

  bool validate_type(const Fields& f, Event& out, bool& is_identify) {
    if (!f.has(kType)) return missing(f, kType);
    std::string_view s;
    if (f.value[kType].get_string().get(s) != simdjson::SUCCESS) {
      return fail(RejectReason::kWrongType, Quoted{f.name[kType]}, " must be a string");
    }
    if (f.dotted_type) {
      const std::size_t dot = s.rfind('.');
      if (dot != std::string_view::npos) s = s.substr(dot + 1);
    }
    if (s == kIdentifyType) {
      is_identify = true;
      return true;
    }
    const std::optional<EventType> type = parse_event_type(s);
    if (!type) return fail(RejectReason::kUnknownType, "unknown event type ", Quoted{s});
    out.type = *type;
    return true;
  }

  bool validate_ts(const Fields& f, const DecodeOptions& options, std::int64_t now_ms, Event& out) {
    if (!f.has(kTs)) return missing(f, kTs);
    std::int64_t parsed = 0;
    switch (parse_ts(f.value[kTs], parsed)) {
      case TsError::kNone:
        break;
      case TsError::kForm:
        return fail(RejectReason::kBadTimestamp, Quoted{f.name[kTs]}, " is not RFC 3339 or epoch milliseconds");
      case TsError::kNoOffset:
        return fail(RejectReason::kBadTimestamp, Quoted{f.name[kTs]}, " ",
                    Quoted{f.value[kTs].get_string().value_unsafe()}, " has no UTC offset: add Z or \u00b1hh:mm");
      case TsError::kSeconds:
        return fail(RejectReason::kBadTimestamp, Quoted{f.name[kTs]}, " ", f.value[kTs].get_int64().value_unsafe(),
                    " looks like epoch seconds; an integer ", Quoted{f.name[kTs]},
                    " is epoch milliseconds (multiply by 1000)");
    }
    const std::optional<std::int64_t> ts = parsed;
    std::int64_t ahead = 0;
    if (!__builtin_sub_overflow(*ts, now_ms, &ahead) && ahead > options.max_future_skew_ms) {
      return fail(RejectReason::kFutureTimestamp, Quoted{f.name[kTs]}, " is ", ahead,
                  " ms ahead of the server clock; limit is ", options.max_future_skew_ms);
    }
    out.ts_ms = *ts;
    return true;
  }

  bool validate_channel(const Fields& f, Event& out) {
    out.channel.clear();
    if (!f.has(kChannel)) {
      // Fits: checked when derived. Guarded because assign() memcpy's from
      // data(), which is null for a default string_view.
      if (!f.channel_fallback.empty()) out.channel.assign(f.channel_fallback);
      return true;
    }
    std::string_view s;
    if (f.value[kChannel].get_string().get(s) != simdjson::SUCCESS) {
      return fail(RejectReason::kWrongType, Quoted{f.name[kChannel]}, " must be a string");
    }
    if (s.size() > kMaxChannelBytes) {
      return fail(RejectReason::kOutOfRange, Quoted{f.name[kChannel]}, " is ", std::uint64_t{s.size()},
                  " bytes; limit is ", std::uint64_t{kMaxChannelBytes});
    }
    if (std::memchr(s.data(), 0, s.size()) != nullptr) {
      return fail(RejectReason::kInvalidUtf8, Quoted{f.name[kChannel]}, " contains NUL");
    }
    out.channel.assign(s);
    return true;
  }

  static std::optional<double>& numeric_slot(Event& e, int field) {
    switch (field) {
      case kAmount:
        return e.amount;
      case kCost:
        return e.cost;
      case kSentiment:
        return e.sentiment;
      case kNps:
        return e.nps;
      case kCsat:
        return e.csat;
      default:
        return e.rating;
    }
  }

  bool validate_number(const Fields& f, int field, Event& out) {
    std::optional<double>& slot = numeric_slot(out, field);
    slot.reset();
    if (!f.has(field)) return true;
    double v = 0;
    // get_double also converts JSON integers; bools and strings are INCORRECT_TYPE.
    if (f.value[field].get_double().get(v) != simdjson::SUCCESS) {
      return fail(RejectReason::kWrongType, Quoted{f.name[field]}, " must be a number");
    }
    const NumericRange& range = kRanges[field - kFirstNumeric];
    if (!(v >= range.lo && v <= range.hi)) {
      return fail(RejectReason::kOutOfRange, Quoted{f.name[field]}, " out of range ", range.text);
    }
    slot = v;
    return true;
  }

  bool validate_required_by_type(const Fields& f, const Event& e) {
    switch (e.type) {
      case EventType::kPurchase:
      case EventType::kRefund:
        return f.has(kAmount) || missing(f, kAmount);
      case EventType::kSurvey:
        return f.has(kCsat) || f.has(kNps) ||
               fail(RejectReason::kMissingField, "missing field ", Quoted{f.name[kCsat]}, " or ", Quoted{f.name[kNps]});
      case EventType::kReview:
        return f.has(kRating) || missing(f, kRating);
      default:
        return true;
    }
  }

  // --- bodies -----------------------------------------------------------------
  void decode_ndjson(std::string_view body, const DecodeOptions& options, std::int64_t now_ms, DecodeSink& sink) {
    Event event;
    std::size_t index = 0;
    while (true) {
      const std::size_t nl = body.find('\n');
      std::string_view line = body.substr(0, nl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!is_blank(line)) emit(index, decode_item(line, "line", false, options, now_ms, event), event, sink);
      if (nl == std::string_view::npos) break;
      body.remove_prefix(nl + 1);
      ++index;
    }
  }

  void decode_array(std::string_view body, bool cloud, const DecodeOptions& options, std::int64_t now_ms,
                    DecodeSink& sink) {
    Event event;
    dom::element root;
    event_id = {};
    if (!grow_body_buffers(body.size())) {
      fail(RejectReason::kTooLarge, "body too large to parse");
      sink.on_body_reject(reason, message);
    } else if (!parse(body, kWantArray, body_parser, body_doc, body_buf, root)) {
      sink.on_body_reject(reason, message);
    } else if (!root.is_array()) {
      fail(RejectReason::kNotAnObject, "expected ", kWantArray, ", got ", element_type_name(root));
      sink.on_body_reject(reason, message);
    } else {
      const dom::array items = root.get_array().value_unsafe();
      std::size_t index = 0;
      for (const dom::element item : items) {
        emit(index++, decode_element(item, cloud, options, now_ms, event), event, sink);
      }
    }
    release_large_body_buffers();
  }

  void emit(std::size_t index, bool ok, const Event& event, DecodeSink& sink) {
    if (ok && identify) {
      sink.on_identify(index, event, aliases);
    } else if (ok) {
      sink.on_event(index, event);
    } else {
      sink.on_reject(index, reason, message);
    }
  }
};

Decoder::Decoder(DecodeOptions options) : options_(options), impl_(std::make_unique<Impl>(options_)) {}

Decoder::~Decoder() = default;

bool Decoder::decode_line(std::string_view line, std::int64_t now_ms, Event& out, RejectReason& reason,
                          std::string_view& message) {
  if (impl_->decode_item(line, "line", false, options_, now_ms, out)) return true;
  reason = impl_->reason;
  message = impl_->message;
  return false;
}

std::string_view Decoder::rejected_event_id() const { return impl_->event_id; }

const std::vector<std::string>* Decoder::identify_aliases() const {
  return impl_->identify ? &impl_->aliases : nullptr;
}

void DecodeSink::on_identify(std::size_t index, const Event& /*event*/, std::span<const std::string> /*aliases*/) {
  on_reject(index, RejectReason::kIdentityRefused, "identify events are not accepted by this receiver");
}

void Decoder::decode_body(std::string_view body, BodyFormat format, std::int64_t now_ms, DecodeSink& sink) {
  // A BOM is tolerated only here, where some HTTP clients put one.
  if (body.substr(0, kBom.size()) == kBom) body.remove_prefix(kBom.size());
  Event event;
  switch (format) {
    case BodyFormat::kNdjson:
      impl_->decode_ndjson(body, options_, now_ms, sink);
      return;
    case BodyFormat::kJson:
    case BodyFormat::kCloudEvent: {
      const bool cloud = format == BodyFormat::kCloudEvent;
      const std::string_view start = skip_json_space(body);
      if (format == BodyFormat::kJson && !start.empty() && start.front() == '[') {
        impl_->decode_array(body, false, options_, now_ms, sink);
        return;
      }
      // A single object is one event: the same length and depth limits as a line.
      const bool ok = impl_->decode_item(body, "body", cloud, options_, now_ms, event);
      if (!ok && impl_->unusable) {
        sink.on_body_reject(impl_->reason, impl_->message);
      } else {
        impl_->emit(0, ok, event, sink);
      }
      return;
    }
    case BodyFormat::kCloudEventBatch:
      impl_->decode_array(body, true, options_, now_ms, sink);
      return;
  }
}

}  // namespace rapport
