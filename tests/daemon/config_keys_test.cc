// Every config key that a message names must be one the config parser accepts: a user told to set
// "[value] fit_interval" when the key is fit_interval_s gets an "unknown key" error for following the advice.
// Scans the string literals of the sources for the forms messages use:
//   "[section] key", "[[auth.tokens]]", "'section.key'" and bare "section.key" (the first part a section name).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/config.h"

namespace rapport {
namespace {

namespace fs = std::filesystem;

struct Literal {
  std::string text;
  std::string where;  // file:line
};

// The string literals of a C++ source, adjacent ones joined ("a " "b" is one literal), comments and character
// literals skipped.
std::vector<Literal> string_literals(const std::string& src, const std::string& file) {
  std::vector<Literal> out;
  std::size_t i = 0, line = 1;
  bool joinable = false;  // only whitespace since the last literal ended
  while (i < src.size()) {
    const char c = src[i];
    if (c == '\n') {
      ++line;
      ++i;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
      continue;
    }
    if (src.compare(i, 2, "//") == 0) {
      while (i < src.size() && src[i] != '\n') ++i;
      continue;
    }
    if (src.compare(i, 2, "/*") == 0) {
      const auto end = src.find("*/", i + 2);
      const auto stop = end == std::string::npos ? src.size() : end + 2;
      line += static_cast<std::size_t>(
          std::count(src.begin() + static_cast<long>(i), src.begin() + static_cast<long>(stop), '\n'));
      i = stop;
      continue;
    }
    if (c == '\'') {
      ++i;
      while (i < src.size() && src[i] != '\'') i += src[i] == '\\' ? 2 : 1;
      ++i;
      joinable = false;
      continue;
    }
    if (c == 'R' && i + 1 < src.size() && src[i + 1] == '"') {  // raw string R"delim(...)delim"
      const auto paren = src.find('(', i + 2);
      const std::string close = ")" + src.substr(i + 2, paren - i - 2) + "\"";
      const auto end = src.find(close, paren);
      std::string text = src.substr(paren + 1, end - paren - 1);
      out.push_back({text, file + ":" + std::to_string(line)});
      line += static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
      i = end + close.size();
      joinable = false;
      continue;
    }
    if (c == '"') {
      std::string text;
      ++i;
      while (i < src.size() && src[i] != '"') {
        if (src[i] == '\\' && i + 1 < src.size()) {
          const char e = src[i + 1];
          text.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
          i += 2;
        } else {
          text.push_back(src[i++]);
        }
      }
      ++i;
      if (joinable && !out.empty()) {
        out.back().text += text;
      } else {
        out.push_back({text, file + ":" + std::to_string(line)});
      }
      joinable = true;
      continue;
    }
    joinable = false;
    ++i;
  }
  return out;
}

struct Mention {
  std::string key;  // dotted: "value.fit_interval"
  std::string where;
  std::string literal;
};

// Config-key mentions in one literal. `sections`: the top-level table names.
std::vector<Mention> key_mentions(const Literal& l, const std::set<std::string>& sections) {
  std::vector<Mention> out;
  // "[table] word": the word is a key when it has an underscore or an '=', ')', ',', ';' or the end follows it
  // ("[value] fit_interval_s", "[tls] http = true"), not in prose ("[value] the model").
  static const std::regex bracketed(
      R"(\[\[?([a-z_]+(?:\.[a-z_]+)*)\]\]?(?:[ \t]+([a-z_][a-z0-9_]*)([ \t]*[=),;]|$)?)?)");
  static const std::regex dotted(R"((^|[^A-Za-z0-9_./-])([a-z_]+)\.([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*))");
  for (std::sregex_iterator it(l.text.begin(), l.text.end(), bracketed), end; it != end; ++it) {
    const std::string table = (*it)[1];
    if (sections.count(table.substr(0, table.find('.'))) == 0) continue;  // "[0]" or "[1/3]" are not tables
    out.push_back({table, l.where, l.text});
    if ((*it)[2].matched && ((*it)[3].matched || std::string((*it)[2]).find('_') != std::string::npos))
      out.push_back({table + "." + std::string((*it)[2]), l.where, l.text});
  }
  // A literal that is only a dotted name is an identifier (an LMDB meta key such as "storage.generation"), not
  // a message naming a config key.
  const bool sentence = l.text.find_first_of(" \t\n") != std::string::npos;
  for (std::sregex_iterator it(l.text.begin(), l.text.end(), dotted), end; sentence && it != end; ++it) {
    const std::string first = (*it)[2];
    if (sections.count(first) == 0) continue;
    const auto next = static_cast<std::size_t>(it->position(0) + it->length(0));
    // "metrics.json", "log.txt": a file name, not a key.
    if (next < l.text.size() && (l.text[next] == '(' || l.text[next] == '/')) continue;
    out.push_back({first + "." + std::string((*it)[3]), l.where, l.text});
  }
  // "[[auth.tokens]]" is both a bracketed and a dotted mention: once.
  std::vector<Mention> unique;
  for (Mention& m : out) {
    const bool seen = std::any_of(unique.begin(), unique.end(), [&](const Mention& u) { return u.key == m.key; });
    if (!seen) unique.push_back(std::move(m));
  }
  return unique;
}

std::set<std::string> known_sections(const std::vector<std::string>& keys) {
  std::set<std::string> sections;
  for (const std::string& k : keys) {
    if (k.find('.') != std::string::npos) sections.insert(k.substr(0, k.find('.')));
  }
  return sections;
}

TEST(ConfigKeysTest, ListsEveryKeyTheParserAccepts) {
  const auto keys = config_keys();
  for (const char* key : {"server", "server.http", "value.fit_interval_s", "auth.tokens", "auth.tokens.token",
                          "auth.tokens.scopes", "scoring.satisfaction_weights.csat", "scoring.default_cost.phone",
                          "log.level", "log.format", "log.timestamps", "daemon.shutdown_timeout_ms"}) {
    EXPECT_TRUE(std::binary_search(keys.begin(), keys.end(), key)) << key;
  }
  EXPECT_FALSE(std::binary_search(keys.begin(), keys.end(), "value.fit_interval"));
}

TEST(ConfigKeysTest, TheScannerFindsEachFormMessagesUse) {
  const std::set<std::string> sections = {"value", "auth", "storage", "tls"};
  const auto keys_in = [&](const std::string& text) {
    std::vector<std::string> keys;
    for (const Mention& m : key_mentions({text, "x"}, sections)) keys.push_back(m.key);
    return keys;
  };
  EXPECT_EQ(keys_in("wait for the scheduled fit ([value] fit_interval)"),
            (std::vector<std::string>{"value", "value.fit_interval"}));
  EXPECT_EQ(keys_in("add [[auth.tokens]] to the config"), (std::vector<std::string>{"auth.tokens"}));
  EXPECT_EQ(keys_in("'storage.state_dir' must not be empty"), (std::vector<std::string>{"storage.state_dir"}));
  EXPECT_EQ(keys_in("set [tls] http = true"), (std::vector<std::string>{"tls", "tls.http"}));
  EXPECT_EQ(keys_in("raise storage.max_map_bytes, then restart"), (std::vector<std::string>{"storage.max_map_bytes"}));
  EXPECT_TRUE(keys_in("items[0] and value.json(x) and /tmp/value.x").empty());
  EXPECT_TRUE(keys_in("storage.generation").empty());  // a whole-literal identifier, not a message

  const std::string src = "f(\"([value] \" // comment \"[value] nope\"\n  \"fit_interval)\"); char c = '\"';";
  const auto literals = string_literals(src, "x.cc");
  ASSERT_EQ(literals.size(), 1u);
  EXPECT_EQ(literals[0].text, "([value] fit_interval)");
}

TEST(ConfigKeysTest, EveryConfigKeyNamedInTheSourcesExists) {
  const auto keys = config_keys();
  const auto sections = known_sections(keys);
  std::size_t mentions = 0;
  for (const char* folder : {"daemon", "scoring", "ingest", "storage", "common", "metrics"}) {
    for (const auto& entry : fs::recursive_directory_iterator(fs::path(RAPPORT_SOURCE_DIR) / folder)) {
      const auto ext = entry.path().extension();
      if (!entry.is_regular_file() || (ext != ".cc" && ext != ".h")) continue;
      std::ifstream in(entry.path());
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string file = fs::relative(entry.path(), RAPPORT_SOURCE_DIR).string();
      for (const Literal& l : string_literals(ss.str(), file)) {
        for (const Mention& m : key_mentions(l, sections)) {
          ++mentions;
          EXPECT_TRUE(std::binary_search(keys.begin(), keys.end(), m.key))
              << m.where << ": names config key '" << m.key << "', which the config does not accept, in \"" << m.literal
              << "\"";
        }
      }
    }
  }
  EXPECT_GT(mentions, 20u);  // the scan sees the config's own messages ('storage.state_dir', [[auth.tokens]], ...)
}

}  // namespace
}  // namespace rapport
