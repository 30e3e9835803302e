// The log line formats (common/log.h): text with and without the journal, JSON for log shippers.
#include "common/log.h"

#include <gtest/gtest.h>
#include <simdjson.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <limits>
#include <string>

namespace rapport {
namespace {

constexpr std::int64_t kWhen = 1714564800123;  // 2024-05-01T12:00:00.123Z

TEST(LogFormatTest, TextLineHasAnRfc3339UtcTimestampWithMilliseconds) {
  EXPECT_EQ(format_log_line(LogFormat::kText, false, kWhen, "warn", "disk is slow", {}),
            "2024-05-01T12:00:00.123Z warn: disk is slow");
  EXPECT_EQ(format_log_line(LogFormat::kText, false, kWhen, "info", "listening", {{"http", "127.0.0.1:8470"}}),
            "2024-05-01T12:00:00.123Z info: listening http=127.0.0.1:8470");
}

TEST(LogFormatTest, TextLineUnderTheJournalHasAPriorityPrefixAndNoTimestamp) {
  EXPECT_EQ(format_log_line(LogFormat::kText, true, -1, "error", "storage: full", {}), "<3>error: storage: full");
  EXPECT_EQ(format_log_line(LogFormat::kText, true, -1, "info", "listening", {}), "<6>listening");
  EXPECT_EQ(format_log_line(LogFormat::kText, true, -1, "audit", "erasure", {}), "<5>audit: erasure");
  EXPECT_EQ(format_log_line(LogFormat::kText, true, -1, "debug", "x", {}), "<7>debug: x");
}

TEST(LogFormatTest, TextValuesThatCouldBreakTheLineAreQuoted) {
  const std::string line = format_log_line(LogFormat::kText, false, -1, "audit", "auth_failure",
                                           {{"reason", "invalid token"}, {"peer", "a=b\nforged=1"}, {"n", 3}});
  EXPECT_EQ(line, "audit: auth_failure reason=\"invalid token\" peer=\"a=b\\nforged=1\" n=3");
  EXPECT_EQ(format_log_line(LogFormat::kText, false, -1, "warn", "two\nlines", {}), "warn: two\\nlines");
  EXPECT_EQ(format_log_line(LogFormat::kText, false, -1, "warn", "m", {{"empty", ""}}), "warn: m empty=\"\"");
}

TEST(LogFormatTest, JsonLineIsOneParseableObjectWithTsLevelMsgAndFields) {
  const std::string line =
      format_log_line(LogFormat::kJson, false, kWhen, "audit", "auth \"failure\"\n",
                      {{"transport", "http"}, {"events", std::uint64_t{42}}, {"ms", 1.5}, {"msg", "shadowed"}});
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
  EXPECT_EQ(std::string_view(doc["ts"].get_string().value()), "2024-05-01T12:00:00.123Z");
  EXPECT_EQ(std::string_view(doc["level"].get_string().value()), "audit");
  EXPECT_EQ(std::string_view(doc["msg"].get_string().value()), "auth \"failure\"\n");
  EXPECT_EQ(std::string_view(doc["transport"].get_string().value()), "http");
  EXPECT_EQ(doc["events"].get_uint64().value(), 42u);
  EXPECT_EQ(doc["ms"].get_double().value(), 1.5);
  EXPECT_EQ(std::string_view(doc["_msg"].get_string().value()), "shadowed");
}

TEST(LogFormatTest, JsonLineWithoutTimestampHasNoTs) {
  EXPECT_EQ(format_log_line(LogFormat::kJson, true, -1, "info", "m", {}), "{\"level\":\"info\",\"msg\":\"m\"}");
  EXPECT_EQ(
      format_log_line(LogFormat::kJson, false, -1, "info", "m", {{"x", std::numeric_limits<double>::quiet_NaN()}}),
      "{\"level\":\"info\",\"msg\":\"m\",\"x\":null}");
}

TEST(LogFormatTest, ParsesItsOptionNames) {
  EXPECT_EQ(parse_log_format("json"), LogFormat::kJson);
  EXPECT_EQ(parse_log_format("text"), LogFormat::kText);
  EXPECT_EQ(parse_log_timestamps("on"), LogTimestamps::kOn);
  EXPECT_EQ(parse_log_timestamps("off"), LogTimestamps::kOff);
  EXPECT_EQ(parse_log_timestamps("auto"), LogTimestamps::kAuto);
}

TEST(LogFormatTest, StderrIsTheJournalOnlyWhenJournalStreamNamesIt) {
  struct stat st {};
  ASSERT_EQ(::fstat(2, &st), 0);
  const std::string mine = std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" + std::to_string(st.st_ino);
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(stderr_is_journal());
  ::setenv("JOURNAL_STREAM", mine.c_str(), 1);
  EXPECT_TRUE(stderr_is_journal());
  ::setenv("JOURNAL_STREAM", (mine + "1").c_str(), 1);  // another inode: stderr was redirected
  EXPECT_FALSE(stderr_is_journal());
  ::setenv("JOURNAL_STREAM", "garbage", 1);
  EXPECT_FALSE(stderr_is_journal());
  ::unsetenv("JOURNAL_STREAM");
}

}  // namespace
}  // namespace rapport
