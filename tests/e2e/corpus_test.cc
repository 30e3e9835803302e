// Malformed input corpus (DESIGN §8): tests/corpus/bad_events.txt lists bad
// items (truncated and malformed JSON, invalid UTF-8, overlong encodings,
// lone surrogates escaped and encoded, NUL bytes, BOMs mid-stream, deep
// nesting, huge numbers, duplicate keys, wrong types, every field out of
// range, over-long lines) and tricky valid ones (CRLF, escapes, UTF-8,
// boundaries, blank lines), each with the reject reason it must get. The test
// adds every truncation of a valid event, interleaves all of them with valid
// events and sends them
//  - over TCP as one stream cut into random chunks: each bad line gets
//    exactly one {"line":k,...,"reason":"<expected>"} answer with its own line
//    number, good and blank lines none, and the final ack covers every line;
//  - over HTTP as NDJSON bodies (rejected[].index = line index) and as JSON
//    arrays of the items that are well-formed JSON (index = element), each
//    with at most 50 bad items (an answer lists the first 100 rejections);
// then checks that every valid event was ingested (the customer's event
// count and timeline) and that the daemon still serves.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <random>

#include "tests/e2e/reliability.h"

namespace rapport::test::reliability {
namespace {

constexpr const char* kCorpus = RAPPORT_SOURCE_DIR "/tests/corpus/bad_events.txt";
constexpr std::string_view kTruncated = "truncated";

struct CorpusItem {
  std::string expect;  // a reason label, "any", "ok", "blank" or "truncated"
  std::string bytes;   // with {ID} and {CUST} still in place
  std::string origin;  // where it came from, for messages
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Expands @@N*TEXT@@ repetitions, then \xHH escapes.
std::string expand(const std::string& text) {
  std::string repeated;
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, 2, "@@") == 0) {
      const std::size_t star = text.find('*', i + 2);
      const std::size_t end = text.find("@@", star == std::string::npos ? i + 2 : star + 1);
      if (star == std::string::npos || end == std::string::npos) throw std::runtime_error("bad @@ in: " + text);
      const int n = std::stoi(text.substr(i + 2, star - i - 2));
      const std::string unit = text.substr(star + 1, end - star - 1);
      for (int k = 0; k < n; ++k) repeated += unit;
      i = end + 2;
    } else {
      repeated += text[i++];
    }
  }
  std::string out;
  for (std::size_t i = 0; i < repeated.size(); ++i) {
    if (repeated[i] == '\\' && i + 3 < repeated.size() && repeated[i + 1] == 'x' && hex_digit(repeated[i + 2]) >= 0 &&
        hex_digit(repeated[i + 3]) >= 0) {
      out += static_cast<char>(hex_digit(repeated[i + 2]) * 16 + hex_digit(repeated[i + 3]));
      i += 3;
    } else {
      out += repeated[i];
    }
  }
  return out;
}

std::vector<CorpusItem> load_corpus() {
  std::vector<CorpusItem> items;
  const std::string text = read_file(kCorpus);
  if (text.empty()) throw std::runtime_error(std::string("cannot read ") + kCorpus);
  std::size_t pos = 0;
  int number = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++number;
    if (line.empty() || line[0] == '#') continue;
    const std::size_t tab = line.find('\t');
    if (tab == std::string::npos) throw std::runtime_error("corpus line " + std::to_string(number) + " has no TAB");
    CorpusItem item{line.substr(0, tab), expand(line.substr(tab + 1)), "bad_events.txt:" + std::to_string(number)};
    if (item.bytes.find('\n') != std::string::npos) throw std::runtime_error(item.origin + " contains a newline");
    items.push_back(std::move(item));
  }
  return items;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

bool is_rejection(const std::string& expect) { return expect != "ok" && expect != "blank" && expect != "valid"; }

bool reason_matches(const std::string& expect, const std::string& reason) {
  if (expect == "any") return !reason.empty();
  if (expect == kTruncated) return reason == "malformed_json" || reason == "invalid_utf8";
  return expect == reason;
}

// The lines (or array elements) to send: a valid unit purchase before every corpus item.
struct Planned {
  std::string text;
  std::string expect;  // "valid" for the interleaved events
  std::string origin;
};

struct Plan {
  std::vector<Planned> items;
  int valid_events = 0;  // events that must be ingested
};

Plan make_plan(const std::vector<CorpusItem>& corpus, char transport, const std::string& customer,
               const std::function<bool(const CorpusItem&, const std::string&)>& include) {
  Plan plan;
  int counter = 0;
  auto next_id = [&] {
    char id[16];
    std::snprintf(id, sizeof id, "%c%06d", transport, ++counter);
    return std::string(id);
  };
  for (const CorpusItem& item : corpus) {
    const std::string text = replace_all(replace_all(item.bytes, "{ID}", next_id()), "{CUST}", customer);
    if (!include(item, text)) continue;
    plan.items.push_back({unit_purchase(next_id(), customer), "valid", "interleaved valid event"});
    ++plan.valid_events;
    plan.items.push_back({text, item.expect, item.origin});
    if (item.expect == "ok") ++plan.valid_events;
  }
  // Every proper prefix of a valid event (with multi-byte UTF-8 to cut through) is a truncated line.
  const CorpusItem truncated{std::string(kTruncated), "", "truncation"};
  const std::string whole = R"({"event_id":")" + next_id() + R"(-é€😀","customer_id":")" + customer +
                            R"(","ts":"2023-11-14T22:13:20.5Z","type":"purchase","amount":1.5,"channel":"web",)"
                            R"("sentiment":0.25,"meta":{"k":[1,true,null]}})";
  for (std::size_t k = 1; k < whole.size(); ++k) {
    const std::string prefix = whole.substr(0, k);
    if (!include(truncated, prefix)) continue;
    plan.items.push_back({unit_purchase(next_id(), customer), "valid", "interleaved valid event"});
    ++plan.valid_events;
    plan.items.push_back({prefix, truncated.expect, "truncation at byte " + std::to_string(k)});
  }
  plan.items.push_back({unit_purchase(next_id(), customer), "valid", "last valid event"});
  ++plan.valid_events;
  return plan;
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 160)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return s.size() > 160 ? out + "..." : out;
}

// Compares the rejections received (position -> reason) with the plan.
void check_rejections(const Plan& plan, const std::map<std::size_t, std::vector<std::string>>& got,
                      const std::string& where) {
  int reported = 0;
  for (std::size_t i = 0; i < plan.items.size(); ++i) {
    const Planned& p = plan.items[i];
    const auto it = got.find(i);
    const std::size_t n = it == got.end() ? 0 : it->second.size();
    std::string problem;
    if (is_rejection(p.expect)) {
      if (n == 0) {
        problem = "no rejection (want " + p.expect + ")";
      } else if (n > 1) {
        problem = "rejected " + std::to_string(n) + " times";
      } else if (!reason_matches(p.expect, it->second.front())) {
        problem = "rejected as " + it->second.front() + ", want " + p.expect;
      }
    } else if (n > 0) {
      problem = "unexpected rejection " + it->second.front() + " of a " + p.expect + " item";
    }
    if (!problem.empty() && reported++ < 40) {
      ADD_FAILURE() << where << " item " << i << " (" << p.origin << "): " << problem << "\n    " << printable(p.text);
    }
  }
  for (const auto& [i, reasons] : got) {
    if (i >= plan.items.size()) ADD_FAILURE() << where << ": rejection for position " << i << " beyond the input";
  }
}

double customer_events(int http_port, const std::string& customer) {
  const auto r = http(http_port, "GET", "/v1/customers/" + customer);
  if (r.status != 200) return r.status == 404 ? 0 : -1;
  return json_number(r.body, "/events").value_or(-1);
}

class Corpus : public ::testing::Test {
 protected:
  void SetUp() override {
    corpus_ = load_corpus();
    const std::string config = dir_.file("rapport.toml");
    write_file(config, "[ingest]\nmax_line_bytes = 4096\n");
    daemon_ = std::make_unique<Rapportd>(dir_.file("state"), DaemonOptions{{"--config", config}, nullptr});
  }

  TempDir dir_;
  std::vector<CorpusItem> corpus_;
  std::unique_ptr<Rapportd> daemon_;
};

TEST_F(Corpus, TcpStreamGetsOneErrorPerBadLineAndIngestsTheRest) {
  const std::string customer = "corpus-tcp";
  const Plan plan = make_plan(corpus_, 't', customer, [](const CorpusItem&, const std::string&) { return true; });
  std::string stream;
  for (const Planned& p : plan.items) stream += p.text + "\n";
  ASSERT_GT(plan.items.size(), 500u);

  LineSocket socket(daemon_->tcp_port());
  std::thread sender([&] {
    std::mt19937 rng(7);
    std::string_view rest(stream);
    while (!rest.empty()) {
      const std::size_t n = std::min<std::size_t>(rest.size(), 1 + rng() % 3000);
      if (!socket.send(rest.substr(0, n))) return;
      rest.remove_prefix(n);
    }
  });
  std::map<std::size_t, std::vector<std::string>> got;
  std::size_t last_ack = 0;
  int bad_answers = 0;
  simdjson::dom::parser parser;
  while (last_ack < plan.items.size()) {
    const auto line = socket.read_line(std::chrono::seconds(30));
    if (!line) break;
    simdjson::dom::element doc;
    if (parser.parse(*line).get(doc) != simdjson::SUCCESS) {
      if (bad_answers++ < 5) ADD_FAILURE() << "answer is not valid JSON: " << printable(*line);
      continue;
    }
    std::int64_t n = 0;
    if (doc["ack"].get_int64().get(n) == simdjson::SUCCESS) {
      EXPECT_GE(static_cast<std::size_t>(n), last_ack) << "acks went backwards";
      last_ack = static_cast<std::size_t>(n);
      continue;
    }
    std::string_view reason, error;
    if (doc["line"].get_int64().get(n) != simdjson::SUCCESS || doc["reason"].get_string().get(reason) ||
        doc["error"].get_string().get(error)) {
      ADD_FAILURE() << "unexpected answer: " << printable(*line);
      continue;
    }
    EXPECT_FALSE(error.empty()) << *line;
    EXPECT_LE(static_cast<std::size_t>(n), last_ack + plan.items.size());
    got[static_cast<std::size_t>(n - 1)].emplace_back(reason);
  }
  sender.join();
  ASSERT_EQ(last_ack, plan.items.size()) << "the final ack does not cover every line\n" << daemon_->log_tail();
  check_rejections(plan, got, "tcp");

  // The connection still works after all that, and the daemon still serves.
  ASSERT_TRUE(socket.send(unit_purchase("after", customer) + "\n"));
  EXPECT_EQ(socket.read_line(std::chrono::seconds(20)).value_or(""),
            "{\"ack\":" + std::to_string(plan.items.size() + 1) + "}");
  EXPECT_EQ(customer_events(daemon_->http_port(), customer), plan.valid_events + 1);
  EXPECT_EQ(timeline_ids(daemon_->http_port(), customer).size(), static_cast<std::size_t>(plan.valid_events + 1));
  EXPECT_EQ(http(daemon_->http_port(), "GET", "/healthz").status, 200);
  EXPECT_TRUE(daemon_->alive());
}

// Parses an HTTP ingest answer into index -> reasons; returns accepted.
double parse_ingest_answer(const Client::Response& r, std::map<std::size_t, std::vector<std::string>>& got) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) {
    ADD_FAILURE() << "answer is not valid JSON: " << printable(r.body);
    return -1;
  }
  simdjson::dom::array rejected;
  if (doc["rejected"].get_array().get(rejected) != simdjson::SUCCESS) {
    ADD_FAILURE() << "no rejected array: " << printable(r.body);
    return -1;
  }
  for (simdjson::dom::element e : rejected) {
    std::int64_t index = -1;
    std::string_view error;
    std::string_view reason;
    if (e["index"].get_int64().get(index) || e["error"].get_string().get(error) ||
        e["reason"].get_string().get(reason)) {
      ADD_FAILURE() << "bad rejected entry in " << printable(r.body);
      continue;
    }
    EXPECT_FALSE(error.empty()) << printable(r.body);
    got[static_cast<std::size_t>(index)].push_back(std::string(reason));
  }
  double accepted = -1;
  if (doc["accepted"].get_double().get(accepted) != simdjson::SUCCESS) {
    std::int64_t i = -1;
    if (doc["accepted"].get_int64().get(i) != simdjson::SUCCESS) i = -1;
    accepted = static_cast<double>(i);
  }
  return accepted;
}

// Posts the plan's items as NDJSON lines or JSON array elements, in bodies of at most 50 expected
// rejections (an answer lists at most the first 100 per request); fills `got` with plan positions and
// returns the sum of `accepted`. An NDJSON body starts with a blank line, so that no item is its first
// line (a BOM is tolerated only there).
double post_in_chunks(int port, const Plan& plan, bool array, std::map<std::size_t, std::vector<std::string>>& got) {
  double accepted = 0;
  for (std::size_t begin = 0; begin < plan.items.size();) {
    std::size_t end = begin;
    for (int bad = 0; end < plan.items.size() && bad < 50; ++end) bad += is_rejection(plan.items[end].expect) ? 1 : 0;
    std::string body = array ? "[" : "\n";
    for (std::size_t i = begin; i < end; ++i) {
      body += array ? (i > begin ? ",\n" : "") + plan.items[i].text : plan.items[i].text + "\n";
    }
    if (array) body += "]";
    const auto r = http(port, "POST", "/v1/events", body, array ? "application/json" : "application/x-ndjson");
    EXPECT_EQ(r.status, 200) << printable(r.body);
    std::map<std::size_t, std::vector<std::string>> chunk;
    accepted += parse_ingest_answer(r, chunk);
    for (auto& [i, reasons] : chunk) {
      const std::size_t position = begin + i - (array ? 0 : 1);
      got[position].insert(got[position].end(), reasons.begin(), reasons.end());
    }
    begin = end;
  }
  return accepted;
}

// Reads TCP answers until {"ack":n}; returns the error lines (line number and reason), in order.
std::vector<std::string> errors_until_ack(LineSocket& socket, std::size_t n) {
  std::vector<std::string> errors;
  while (auto line = socket.read_line(std::chrono::seconds(20))) {
    if (*line == "{\"ack\":" + std::to_string(n) + "}") return errors;
    if (line->rfind("{\"ack\":", 0) == 0) continue;
    const auto reason = line->find("\"reason\":");
    errors.push_back(line->substr(0, line->find(',')) + " " +
                     (reason == std::string::npos ? *line : line->substr(reason)));
  }
  errors.push_back("no ack " + std::to_string(n));
  return errors;
}

// A whitespace-only line longer than max_line_bytes (4096 here) must get the same answer whether it reaches the
// server in one read or in two: the protocol's answers may not depend on TCP segmentation.
TEST_F(Corpus, OverlongBlankLineGetsTheSameAnswerHoweverItArrives) {
  const std::string blank(5000, ' ');
  const std::string valid = unit_purchase("after-blank", "corpus-blank");
  LineSocket whole(daemon_->tcp_port());
  ASSERT_TRUE(whole.send(blank + "\n" + valid + "\n"));
  const std::vector<std::string> in_one_read = errors_until_ack(whole, 2);
  LineSocket split(daemon_->tcp_port());
  ASSERT_TRUE(split.send(blank));
  std::this_thread::sleep_for(milliseconds(300));  // the server reads the over-long partial line first
  ASSERT_TRUE(split.send("\n" + valid + "\n"));
  const std::vector<std::string> in_two_reads = errors_until_ack(split, 2);
  EXPECT_EQ(in_one_read, in_two_reads) << "the same bytes got different answers depending on how they were split";
  // The HTTP NDJSON front, given the same lines, agrees with the TCP answer in one read.
  const auto r = http(daemon_->http_port(), "POST", "/v1/events", blank + "\n" + valid + "\n", "application/x-ndjson");
  std::map<std::size_t, std::vector<std::string>> got;
  parse_ingest_answer(r, got);
  EXPECT_EQ(got.size(), in_one_read.size()) << printable(r.body);
}

TEST_F(Corpus, HttpNdjsonBodyRejectsEachBadLineByIndex) {
  const std::string customer = "corpus-ndjson";
  const Plan plan = make_plan(corpus_, 'n', customer, [](const CorpusItem&, const std::string&) { return true; });
  std::map<std::size_t, std::vector<std::string>> got;
  EXPECT_EQ(post_in_chunks(daemon_->http_port(), plan, false, got), plan.valid_events);
  check_rejections(plan, got, "ndjson");
  EXPECT_EQ(customer_events(daemon_->http_port(), customer), plan.valid_events);

  // A BOM is tolerated at the very start of a body, and CRLF bodies work.
  const auto bom =
      http(daemon_->http_port(), "POST", "/v1/events",
           "\xEF\xBB\xBF" + unit_purchase("bom-1", customer) + "\r\n" + unit_purchase("bom-2", customer) + "\r\n",
           "application/x-ndjson");
  EXPECT_EQ(json_number(bom.body, "/accepted").value_or(-1), 2) << printable(bom.body);
  EXPECT_EQ(http(daemon_->http_port(), "GET", "/healthz").status, 200);
}

TEST_F(Corpus, HttpJsonArrayRejectsEachBadElementByIndex) {
  const std::string customer = "corpus-array";
  // Only items that are well-formed JSON can be array elements (anything else spoils the whole body).
  const auto element = [](const CorpusItem& item, const std::string& text) {
    if (item.expect == "blank" || item.expect == kTruncated || item.expect == "too_large") return false;
    simdjson::dom::parser parser;
    const std::string wrapped = "[" + text + "]";
    return parser.parse(wrapped).error() == simdjson::SUCCESS;
  };
  const Plan plan = make_plan(corpus_, 'a', customer, element);
  int bad = 0;
  for (const Planned& p : plan.items) bad += is_rejection(p.expect) ? 1 : 0;
  ASSERT_GT(bad, 80) << "too few corpus items usable as array elements";
  std::map<std::size_t, std::vector<std::string>> got;
  EXPECT_EQ(post_in_chunks(daemon_->http_port(), plan, true, got), plan.valid_events);
  check_rejections(plan, got, "array");
  EXPECT_EQ(customer_events(daemon_->http_port(), customer), plan.valid_events);

  // Bodies that are unusable as a whole get one clear rejection and ingest nothing.
  for (const std::string& whole : {std::string("[") + unit_purchase("w1", customer) + ",{", std::string("[\"\xff\"]"),
                                   std::string("{\"event_id\":"), std::string("[1,2")}) {
    const auto w = http(daemon_->http_port(), "POST", "/v1/events", whole, "application/json");
    EXPECT_EQ(w.status, 400) << printable(w.body);
    EXPECT_NE(w.body.find("\"error\":"), std::string::npos) << printable(w.body);
    EXPECT_NE(w.body.find("\"reason\":"), std::string::npos) << printable(w.body);
  }
  EXPECT_EQ(customer_events(daemon_->http_port(), customer), plan.valid_events);
  EXPECT_EQ(http(daemon_->http_port(), "GET", "/healthz").status, 200);
  EXPECT_TRUE(daemon_->alive());
}

}  // namespace
}  // namespace rapport::test::reliability
