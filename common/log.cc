#include "common/log.h"

#include <sys/stat.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "common/json_writer.h"

namespace rapport {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};
std::atomic<int> g_timestamps{static_cast<int>(LogTimestamps::kAuto)};
std::mutex g_mutex;

constexpr std::string_view kLevelName[] = {"error", "warn", "info", "debug"};

// sd-daemon(3) priority prefixes, understood by journald.
std::string_view journal_prefix(std::string_view level) {
  if (level == "error") return "<3>";
  if (level == "warn") return "<4>";
  if (level == "audit") return "<5>";
  if (level == "debug") return "<7>";
  return "<6>";
}

// A text-mode value: as is when it is a plain token, else a JSON string (quotes and escapes), so that a
// value can never break the line or forge another key=value.
void append_text_value(std::string& out, std::string_view v) {
  bool plain = !v.empty();
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out.append(v);
    return;
  }
  out.push_back('"');
  JsonWriter::append_escaped(out, v);
  out.push_back('"');
}

// A text-mode message: control characters escaped (one line per message, whatever the message holds).
void append_text_message(std::string& out, std::string_view m) {
  for (const char ch : m) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      std::string one;
      JsonWriter::append_escaped(one, std::string_view(&ch, 1));
      out += one == std::string_view(&ch, 1) ? "?" : one;
    } else {
      out.push_back(ch);
    }
  }
}

bool timestamps_for(LogFormat format, bool journal) {
  switch (static_cast<LogTimestamps>(g_timestamps.load(std::memory_order_relaxed))) {
    case LogTimestamps::kOn:
      return true;
    case LogTimestamps::kOff:
      return false;
    case LogTimestamps::kAuto:
      break;
  }
  return format == LogFormat::kJson || !journal;
}

bool journal_cached() {
  static const bool journal = stderr_is_journal();
  return journal;
}

void write_line(std::string_view level, std::string_view message, std::initializer_list<LogField> fields) {
  const auto format = static_cast<LogFormat>(g_format.load(std::memory_order_relaxed));
  const bool journal = journal_cached();
  std::string line =
      format_log_line(format, journal, timestamps_for(format, journal) ? wall_ms() : -1, level, message, fields);
  line.push_back('\n');
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

LogField::LogField(std::string_view k, double v) : key(k), number(true) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  value.assign(buf, r.ptr);
  if (!(v == v) || v - v != 0) {  // NaN or infinite: not a JSON number
    value = "null";
  }
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }

LogLevel parse_log_level(std::string_view name) {
  if (name == "error") return LogLevel::kError;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "debug") return LogLevel::kDebug;
  return LogLevel::kInfo;
}

void set_log_format(LogFormat format) { g_format.store(static_cast<int>(format)); }

LogFormat parse_log_format(std::string_view name) { return name == "json" ? LogFormat::kJson : LogFormat::kText; }

void set_log_timestamps(LogTimestamps timestamps) { g_timestamps.store(static_cast<int>(timestamps)); }

LogTimestamps parse_log_timestamps(std::string_view name) {
  if (name == "on") return LogTimestamps::kOn;
  if (name == "off") return LogTimestamps::kOff;
  return LogTimestamps::kAuto;
}

bool log_enabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed); }

void log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields) {
  if (!log_enabled(level)) return;
  write_line(kLevelName[static_cast<int>(level)], message, fields);
}

void log_audit(std::string_view event, std::initializer_list<LogField> fields) { write_line("audit", event, fields); }

void log_auth_failure(std::string_view transport, std::string_view peer, std::string_view route,
                      std::string_view reason, std::string_view credential) {
  if (route.empty()) {
    log_audit("auth_failure",
              {{"transport", transport}, {"peer", peer}, {"reason", reason}, {"credential", credential}});
  } else {
    log_audit(
        "auth_failure",
        {{"transport", transport}, {"peer", peer}, {"route", route}, {"reason", reason}, {"credential", credential}});
  }
}

void log_erasure(std::string_view transport, std::string_view peer, std::string_view credential) {
  log_audit("erasure", {{"transport", transport}, {"peer", peer}, {"credential", credential}});
}

std::string format_log_line(LogFormat format, bool journal, std::int64_t epoch_ms, std::string_view level,
                            std::string_view message, std::initializer_list<LogField> fields) {
  std::string line;
  line.reserve(64 + message.size());
  if (format == LogFormat::kJson) {
    line += '{';
    if (epoch_ms >= 0) {
      line += "\"ts\":\"";
      line += format_rfc3339(epoch_ms);
      line += "\",";
    }
    line += "\"level\":\"";
    JsonWriter::append_escaped(line, level);
    line += "\",\"msg\":\"";
    JsonWriter::append_escaped(line, message);
    line += '"';
    for (const LogField& f : fields) {
      // The envelope's keys stay the envelope's: a field of the same name is written with a '_' prefix.
      const bool reserved = f.key == "ts" || f.key == "level" || f.key == "msg";
      line += ",\"";
      if (reserved) line += '_';
      JsonWriter::append_escaped(line, f.key);
      line += "\":";
      if (f.number) {
        line += f.value;
      } else {
        line += '"';
        JsonWriter::append_escaped(line, f.value);
        line += '"';
      }
    }
    line += '}';
    return line;
  }
  if (journal) line += journal_prefix(level);
  if (epoch_ms >= 0) {
    line += format_rfc3339(epoch_ms);
    line += ' ';
  }
  if (!journal || level != "info") {
    line += level;
    line += ": ";
  }
  append_text_message(line, message);
  for (const LogField& f : fields) {
    line += ' ';
    line += f.key;
    line += '=';
    append_text_value(line, f.value);
  }
  return line;
}

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  const std::string_view text(stream);
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  unsigned long long dev = 0, ino = 0;
  const auto d = std::from_chars(text.data(), text.data() + colon, dev);
  const auto i = std::from_chars(text.data() + colon + 1, text.data() + text.size(), ino);
  if (d.ec != std::errc() || i.ec != std::errc() || d.ptr != text.data() + colon ||
      i.ptr != text.data() + text.size()) {
    return false;
  }
  struct stat st {};
  if (::fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace rapport
