// Leveled logging to stderr, one line per message; thread-safe.
//
// Text (default): "2026-05-01T12:00:00.123Z warn: message key=value ...", the timestamp RFC 3339 UTC with
// milliseconds. Under journald (JOURNAL_STREAM names our stderr) the timestamp is left to the journal and
// the line starts with an sd-daemon(3) priority prefix ("<4>warn: ...") instead.
// JSON: one object per line, {"ts":"...","level":"warn","msg":"...","key":"value",...}, for log shippers.
// Audit lines (log_audit) are written at every level, with level "audit".
// Never pass tokens or customer payloads; customer ids only where the operator needs them (never in audit
// lines of an erasure).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace rapport {

enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };
enum class LogFormat : int { kText = 0, kJson = 1 };
// kAuto: timestamps unless stderr is the journal (JOURNAL_STREAM); JSON lines carry "ts" unless kOff.
enum class LogTimestamps : int { kAuto = 0, kOn = 1, kOff = 2 };

void set_log_level(LogLevel level);
LogLevel parse_log_level(std::string_view name);  // unknown -> kInfo
void set_log_format(LogFormat format);
LogFormat parse_log_format(std::string_view name);  // "json" -> kJson, else kText
void set_log_timestamps(LogTimestamps timestamps);
LogTimestamps parse_log_timestamps(std::string_view name);  // "on", "off", else kAuto

// A structured field: text mode writes key=value (quoted when needed), JSON mode "key":value.
struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(v) {}
  LogField(std::string_view k, std::int64_t v) : key(k), value(std::to_string(v)), number(true) {}
  LogField(std::string_view k, std::uint64_t v) : key(k), value(std::to_string(v)), number(true) {}
  LogField(std::string_view k, int v) : key(k), value(std::to_string(v)), number(true) {}
  LogField(std::string_view k, double v);
  std::string_view key;
  std::string value;
  bool number = false;
};

void log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});
inline void log_error(std::string_view m, std::initializer_list<LogField> f = {}) { log(LogLevel::kError, m, f); }
inline void log_warn(std::string_view m, std::initializer_list<LogField> f = {}) { log(LogLevel::kWarn, m, f); }
inline void log_info(std::string_view m, std::initializer_list<LogField> f = {}) { log(LogLevel::kInfo, m, f); }
inline void log_debug(std::string_view m, std::initializer_list<LogField> f = {}) { log(LogLevel::kDebug, m, f); }
bool log_enabled(LogLevel level);  // to skip building an expensive debug message

// An audit line, written whatever the level: `event` names what happened ("erasure", "auth_failure"),
// the fields say who, where and why. Never a token; never an erased customer's id.
void log_audit(std::string_view event, std::initializer_list<LogField> fields);
// The two audit events. `credential` says which credential it was without being it (TokenSet::describe);
// `reason`: "unauthorized" (no or an unknown token) or "forbidden" (a token without the scope), or the
// refusal's message; `route` may be empty (TCP). An erasure never names the erased customer.
void log_auth_failure(std::string_view transport, std::string_view peer, std::string_view route,
                      std::string_view reason, std::string_view credential);
void log_erasure(std::string_view transport, std::string_view peer, std::string_view credential);

// One formatted line without its '\n' (what log() writes), for tests. `epoch_ms` < 0: no timestamp.
std::string format_log_line(LogFormat format, bool journal, std::int64_t epoch_ms, std::string_view level,
                            std::string_view message, std::initializer_list<LogField> fields);

// True when stderr is the journal's stream (JOURNAL_STREAM="dev:inode" matches fd 2).
bool stderr_is_journal();

}  // namespace rapport
