// End-to-end security tests of rapportd: every route walked with no token, a
// wrong token and each scope; tokens never in the log, /metrics or the
// dead-letter store; TLS on both fronts with a throwaway certificate made by
// the openssl tool; /metrics on a separate listener.
#include <gtest/gtest.h>
#include <simdjson.h>

#include "tests/e2e/harness.h"
#include "tests/support/tls_client.h"

namespace rapport::test {
namespace {

using namespace std::chrono_literals;

// Distinctive, so that any leak is found by a plain substring search.
constexpr char kIngestToken[] = "sec-ingest-7f3a9c1e5b2d4068";
constexpr char kReadToken[] = "sec-read-2b8e4f6a1c9d3057x";
constexpr char kAdminToken[] = "sec-admin-5d1c7e9a3f2b6084";
constexpr char kWrongToken[] = "sec-wrong-00000000000000000";
const char* const kAllTokens[] = {kIngestToken, kReadToken, kAdminToken, kWrongToken};

std::string tokens_toml() {
  return std::string("[[auth.tokens]]\ntoken = \"") + kIngestToken + "\"\nscopes = [\"ingest\"]\n" +
         "[[auth.tokens]]\ntoken = \"" + kReadToken + "\"\nscopes = [\"read\"]\n" + "[[auth.tokens]]\ntoken = \"" +
         kAdminToken + "\"\nscopes = [\"admin\"]\n";
}

std::string event(const std::string& id, const std::string& customer) {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","ts":1700000000000,"type":"purchase",)" +
         R"("amount":12.5})";
}

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token; }

std::string auth_line(const std::string& token) { return "{\"auth\":\"" + token + "\"}\n"; }

// ---------------------------------------------------------------------------
// The route walk

enum class Want {
  kOpen,     // 200 whatever the credentials
  k401,      // 401 with WWW-Authenticate: Bearer
  k403,      // 403 with WWW-Authenticate: ... insufficient_scope
  kAllowed,  // past auth: neither 401 nor 403 (nor 5xx); 404/422 are answers of the route itself
};

const char* want_name(Want w) {
  switch (w) {
    case Want::kOpen:
      return "200";
    case Want::k401:
      return "401";
    case Want::k403:
      return "403";
    case Want::kAllowed:
      return "allowed";
  }
  return "?";
}

struct RouteCase {
  std::string method;
  std::string target;
  std::string body;
  std::string content_type;
  // What each credential gets: no token, a wrong token, the ingest, read and admin tokens.
  Want none, wrong, ingest, read, admin;
};

// The expected table: every route of daemon/api.cc and the HTTP front. Admin grants every scope.
std::vector<RouteCase> route_table() {
  // Short names keep the table on one line per route: 401, 403, allowed (past auth), open (200 for anyone).
  constexpr Want u401 = Want::k401, f403 = Want::k403, ok = Want::kAllowed, open = Want::kOpen;
  const std::string events = event("walk-e1", "walk-1") + "\n";
  const std::string ndjson = "application/x-ndjson", json = "application/json";
  const std::string ids = R"({"ids":["walk-1"]})";
  const std::string seqs = R"({"sequences":[987654]})";
  // clang-format off
  return {
      // method   target                          body    type    none  wrong ingest read  admin
      {"POST",   "/v1/events",                    events, ndjson, u401, u401, ok,    f403, ok},
      {"GET",    "/v1/customers/walk-1",          "",     "",     u401, u401, f403,  ok,   ok},
      {"GET",    "/v1/customers/walk-1/events",   "",     "",     u401, u401, f403,  ok,   ok},
      {"POST",   "/v1/customers:batchGet",        ids,    json,   u401, u401, f403,  ok,   ok},
      {"GET",    "/v1/customers?tier=iron",       "",     "",     u401, u401, f403,  ok,   ok},
      {"GET",    "/v1/deadletter",                "",     "",     u401, u401, f403,  f403, ok},
      {"POST",   "/v1/deadletter:remove",         seqs,   json,   u401, u401, f403,  f403, ok},
      {"GET",    "/v1/model",                     "",     "",     u401, u401, f403,  ok,   ok},
      {"POST",   "/v1/model:fit",                 "",     json,   u401, u401, f403,  f403, ok},
      {"GET",    "/v1/tiers",                     "",     "",     u401, u401, f403,  ok,   ok},
      {"DELETE", "/v1/customers/walk-1",          "",     "",     u401, u401, f403,  f403, ok},
      {"GET",    "/healthz",                      "",     "",     open, open, open,  open, open},
      {"GET",    "/readyz",                       "",     "",     open, open, open,  open, open},
      {"GET",    "/metrics",                      "",     "",     open, open, open,  open, open},
  };
  // clang-format on
}

void expect_answer(const Client::Response& r, Want want, const std::string& what) {
  switch (want) {
    case Want::kOpen:
      EXPECT_EQ(r.status, 200) << what << ": " << r.body;
      break;
    case Want::k401: {
      EXPECT_EQ(r.status, 401) << what << ": " << r.body;
      const auto it = r.headers.find("www-authenticate");
      ASSERT_NE(it, r.headers.end()) << what;
      EXPECT_EQ(it->second.rfind("Bearer", 0), 0u) << what << ": " << it->second;
      break;
    }
    case Want::k403: {
      EXPECT_EQ(r.status, 403) << what << ": " << r.body;
      const auto it = r.headers.find("www-authenticate");
      ASSERT_NE(it, r.headers.end()) << what;
      EXPECT_NE(it->second.find("insufficient_scope"), std::string::npos) << what << ": " << it->second;
      break;
    }
    case Want::kAllowed:
      EXPECT_NE(r.status, 401) << what << ": " << r.body;
      EXPECT_NE(r.status, 403) << what << ": " << r.body;
      EXPECT_LT(r.status, 500) << what << ": " << r.body;
      break;
  }
}

// Walks every route with every credential (checking the table when `check`).
void walk_http(int port, bool check) {
  ASSERT_EQ(
      http(port, "POST", "/v1/events", event("seed", "walk-1"), "application/json", {bearer(kIngestToken)}).status,
      200);
  for (const RouteCase& route : route_table()) {
    const std::pair<const char*, Want> credentials[] = {{"", route.none},
                                                        {kWrongToken, route.wrong},
                                                        {kIngestToken, route.ingest},
                                                        {kReadToken, route.read},
                                                        {kAdminToken, route.admin}};
    for (const auto& [token, want] : credentials) {
      std::vector<std::string> headers;
      if (*token != '\0') headers.push_back(bearer(token));
      const auto r = http(port, route.method, route.target, route.body,
                          route.content_type.empty() ? "application/json" : route.content_type, headers);
      if (check) {
        const std::string who = *token == '\0' ? "no token" : token == std::string(kWrongToken) ? "wrong token" : token;
        expect_answer(r, want, route.method + " " + route.target + " with " + who + " (want " + want_name(want) + ")");
      }
    }
  }
}

// TCP: no auth line, a wrong token, each scope's token.
void walk_tcp(int port, bool check) {
  {
    Client c(port);
    c.send(event("tcp-noauth", "walk-2") + "\n");
    const auto t0 = std::chrono::steady_clock::now();
    const std::string answer = c.read_all(10s);
    if (check) {
      EXPECT_NE(answer.find("{\"error\":\"unauthorized"), std::string::npos) << answer;
      EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s) << "the connection was not closed";
    }
  }
  {
    Client c(port);
    c.send(auth_line(kWrongToken) + event("tcp-wrong", "walk-2") + "\n");
    const std::string answer = c.read_all(10s);
    if (check) {
      EXPECT_EQ(answer, "{\"error\":\"unauthorized: invalid token\"}\n");
    }
  }
  {
    Client c(port);
    c.send(auth_line(kReadToken) + event("tcp-read", "walk-2") + "\n");
    const std::string answer = c.read_all(10s);
    if (check) {
      EXPECT_EQ(answer, "{\"error\":\"forbidden: the token lacks the ingest scope\"}\n");
    }
  }
  for (const char* token : {kIngestToken, kAdminToken}) {
    Client c(port);
    c.send(auth_line(token) + event(std::string("tcp-ok-") + token, "walk-2") + "\n");
    const auto first = c.read_line();
    const auto ack = c.read_line();
    if (check) {
      EXPECT_EQ(first.value_or(""), "{\"auth\":\"ok\"}") << token;
      EXPECT_EQ(ack.value_or(""), "{\"ack\":1}") << token;
    }
  }
}

class SecurityTest : public ::testing::Test {
 protected:
  std::string write_config(const std::string& name, const std::string& content) {
    const std::string path = dir_.file(name);
    write_file(path, content);
    return path;
  }

  TempDir dir_;
};

TEST_F(SecurityTest, EveryRouteAnswersEachCredentialAsTheTableSays) {
  Daemon d(dir_.file("state"), {"--config", write_config("rapport.toml", tokens_toml())});
  walk_http(d.http_port(), /*check=*/true);
  walk_tcp(d.tcp_port(), /*check=*/true);
}

TEST_F(SecurityTest, TokensNeverAppearInTheLogMetricsOrDeadLetters) {
  const std::string config = write_config("rapport.toml", tokens_toml());
  Daemon d(dir_.file("state"), {"--config", config, "--log-level", "debug"});
  const int port = d.http_port();
  walk_http(port, /*check=*/false);
  walk_tcp(d.tcp_port(), /*check=*/false);

  // Malformed or misplaced Authorization headers.
  const std::string admin = kAdminToken;
  const std::vector<std::vector<std::string>> odd_headers = {
      {"Authorization: Bearer " + admin + " trailing"},
      {"Authorization: Token " + admin},
      {"Authorization: " + admin},
      {"Authorization: Bearer\t" + admin + "\t"},
      {"Authorization: Bearer " + std::string(kWrongToken) + '\x01'},  // a control character: 400
      {"X-Api-Key: " + admin, "Authorization: Basic " + admin},
      {"X-Padding: " + std::string(9000, 'p') + kWrongToken},  // over the header limit: 431
  };
  for (const auto& headers : odd_headers) {
    for (const std::string target : {"/v1/customers/walk-1", "/v1/events"}) {
      const auto r = http(port, target == "/v1/events" ? "POST" : "GET", target, event("odd", "walk-3"),
                          "application/x-ndjson", headers);
      EXPECT_NE(r.status, 500) << headers[0].substr(0, 60);
    }
  }
  EXPECT_EQ(http(port, "GET", "/v1/customers/walk-1?access_token=" + admin).status, 401);

  // A TCP client that repeats its auth line: the second one is a rejected line whose payload is redacted.
  {
    Client c(d.tcp_port());
    c.send(auth_line(kIngestToken) + event("rep-1", "walk-3") + "\n" + auth_line(kIngestToken));
    const auto lines = c.read_until_ack(2);
    ASSERT_GE(lines.size(), 3u);
    EXPECT_EQ(lines[1].rfind("{\"line\":2,", 0), 0u) << lines[1];
    for (const auto& l : lines) EXPECT_EQ(l.find(kIngestToken), std::string::npos) << l;
  }

  // A reload whose config has a token pasted where a key goes fails without echoing it.
  write_file(config, tokens_toml() + "[[auth.tokens]]\n\"" + admin + "\" = \"oops\"\n");
  d.signal(SIGHUP);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (d.log().find("reload failed") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(d.log().find("reload failed"), std::string::npos) << d.log();
  write_file(config, tokens_toml());

  const std::string metrics = http(port, "GET", "/metrics").body;
  const std::string dead_letters = http(port, "GET", "/v1/deadletter?limit=1000", "", "", {bearer(admin)}).body;
  const std::string log = d.log();
  ASSERT_NE(log.find("listening http="), std::string::npos) << log;
  ASSERT_NE(metrics.find("rapport_http_requests_total"), std::string::npos);
  ASSERT_NE(dead_letters.find("<redacted>"), std::string::npos) << dead_letters;
  for (const char* token : kAllTokens) {
    EXPECT_EQ(log.find(token), std::string::npos) << token << " in the log:\n" << log;
    EXPECT_EQ(metrics.find(token), std::string::npos) << token << " in /metrics";
    EXPECT_EQ(dead_letters.find(token), std::string::npos) << token << " in the dead letters: " << dead_letters;
  }
}

TEST_F(SecurityTest, ConfigErrorsNeverEchoATokenPastedInTheWrongPlace) {
  const std::string admin = kAdminToken;
  const std::vector<std::string> configs = {
      "[auth]\n\"" + admin + "\" = 1\n",
      "[[auth.tokens]]\ntoken = \"" + admin + "\"\nscopes = [\"root\"]\n",
      "[[auth.tokens]]\n\"" + admin + "\" = \"admin\"\n",
      "[[auth.tokens]]\ntoken = \"" + admin + "\"\nscopes = [\"admin\"]\ntoken_hint = 1\n",
      "[[auth.tokens]]\ntoken = \"" + admin.substr(0, 10) + "\"\nscopes = [\"admin\"]\n",  // too short
  };
  int i = 0;
  for (const std::string& content : configs) {
    const std::string path = write_config("bad" + std::to_string(i++) + ".toml", content);
    const auto r = run_command({binary("rapportd"), "--config", path, "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0",
                                "--state-dir", dir_.file("state")});
    EXPECT_EQ(r.exit_code, 2) << content;
    EXPECT_NE(r.err.find("auth"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find(admin.substr(0, 10)), std::string::npos) << r.err;
  }
}

// ---------------------------------------------------------------------------
// TLS

// One HTTP/1.1 request over `tls`, with a bearer token when given; status 0 if it failed.
Client::Response https_request(TlsClient& tls, const std::string& method, const std::string& target,
                               const std::string& body = "", const std::string& token = "") {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  if (!token.empty()) req += bearer(token) + "\r\n";
  if (!body.empty() || method == "POST") {
    req += "Content-Type: application/x-ndjson\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  if (!tls.send(req + "\r\n" + body)) return {};
  return tls.read_response().value_or(Client::Response{});
}

// The "events" count of a customer's JSON (-1 when absent).
double events_of(const std::string& customer_json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  double v = -1;
  if (parser.parse(customer_json).get(doc) != simdjson::SUCCESS) return -1;
  if (doc.at_pointer("/events").get_double().get(v) != simdjson::SUCCESS) return -1;
  return v;
}

// One series of the Prometheus text exposition: `name` with every label of `labels` ("k=\"v\"", any order);
// -1 when absent.
double sample(const std::string& exposition, const std::string& name, const std::vector<std::string>& labels) {
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + "{", 0) != 0) continue;
    const auto close = line.find('}');
    if (close == std::string::npos) continue;
    const std::string label_block = line.substr(name.size() + 1, close - name.size() - 1);
    bool all = true;
    for (const std::string& l : labels) all = all && label_block.find(l) != std::string::npos;
    if (all) return std::stod(line.substr(close + 2));
  }
  return -1;
}

double tls_failures(const std::string& exposition, const std::string& transport, const std::string& reason) {
  return sample(exposition, "rapport_tls_handshake_failures_total",
                {"transport=\"" + transport + "\"", "reason=\"" + reason + "\""});
}

class TlsE2eTest : public SecurityTest {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/openssl", X_OK) != 0) GTEST_FAIL() << "/usr/bin/openssl is missing: apt-get install openssl";
    make_cert(cert_, key_);
  }
  void make_cert(const std::string& cert, const std::string& key) {
    const auto r =
        run_command({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                     "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string tls_config(const std::string& cert, const std::string& key) {
    return tokens_toml() + "[tls]\ncert_file = \"" + cert + "\"\nkey_file = \"" + key + "\"\nhttp = true\ntcp = true\n";
  }

  const std::string cert_ = dir_.file("cert.pem");
  const std::string key_ = dir_.file("key.pem");
};

TEST_F(TlsE2eTest, EventsAndQueriesOverTlsAndPlaintextClientsFailCleanly) {
  Daemon d(dir_.file("state"), {"--config", write_config("rapport.toml", tls_config(cert_, key_))});
  EXPECT_NE(d.log().find("tls: http on, tcp on"), std::string::npos) << d.log();

  // TLS TCP: auth, events, acks.
  TlsClient tcp(d.tcp_port(), TlsClientOptions::verifying(cert_));
  ASSERT_TRUE(tcp.handshake_ok()) << tcp.error();
  ASSERT_TRUE(tcp.send(auth_line(kIngestToken) + event("t1", "tls-c") + "\n" + event("t2", "tls-c") + "\nbroken\n" +
                       event("t3", "tls-c") + "\n"));
  EXPECT_EQ(tcp.read_line().value_or(""), "{\"auth\":\"ok\"}");
  std::vector<std::string> lines;
  while (auto l = tcp.read_line()) {
    lines.push_back(*l);
    if (l->rfind("{\"ack\":4}", 0) == 0) break;
  }
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "{\"ack\":4}");
  EXPECT_EQ(lines.size(), 2u);  // line 3's rejection, then the ack

  // HTTPS, verified against the certificate, keep-alive.
  TlsClient https(d.http_port(), TlsClientOptions::verifying(cert_));
  ASSERT_TRUE(https.handshake_ok()) << https.error();
  auto r = https_request(https, "POST", "/v1/events", event("h1", "tls-c") + "\n" + event("h2", "tls-c") + "\n",
                         kIngestToken);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body,
            "{\"accepted\":2,\"duplicates\":0,\"errors\":false,\"rejected\":[],\"rejected_count\":0,"
            "\"rejected_by_reason\":{}}");
  r = https_request(https, "GET", "/v1/customers/tls-c", "", kReadToken);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(events_of(r.body), 5) << r.body;
  EXPECT_EQ(https_request(https, "GET", "/v1/customers/tls-c").status, 401);

  // Successful handshakes are not failures (/metrics needs no token).
  std::string metrics = https_request(https, "GET", "/metrics").body;
  for (const char* transport : {"tcp", "http"}) {
    for (const char* reason : {"plaintext", "error", "timeout"}) {
      EXPECT_EQ(tls_failures(metrics, transport, reason), 0) << transport << " " << reason << "\n" << metrics;
    }
  }

  // Plaintext clients on the TLS ports: a plaintext answer that says so, then close.
  {
    Client plain(d.tcp_port());
    plain.send(auth_line(kIngestToken) + event("plain-1", "tls-c") + "\n");
    EXPECT_EQ(plain.read_all(), "{\"error\":\"this port requires TLS\"}\n");
  }
  const auto refused = http(d.http_port(), "GET", "/healthz");
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.body.find("https://"), std::string::npos) << refused.body;

  // The TLS connections opened before are unaffected.
  ASSERT_TRUE(tcp.send(event("t4", "tls-c") + "\n"));
  EXPECT_EQ(tcp.read_line().value_or(""), "{\"ack\":5}");
  r = https_request(https, "GET", "/v1/customers/tls-c", "", kAdminToken);
  EXPECT_EQ(events_of(r.body), 6) << r.body;
  // Each plaintext client was counted (before its refusal was written) on its transport, and only it.
  metrics = https_request(https, "GET", "/metrics").body;
  EXPECT_EQ(tls_failures(metrics, "tcp", "plaintext"), 1) << metrics;
  EXPECT_EQ(tls_failures(metrics, "http", "plaintext"), 1) << metrics;
  EXPECT_EQ(tls_failures(metrics, "tcp", "error"), 0) << metrics;
  EXPECT_EQ(tls_failures(metrics, "http", "error"), 0) << metrics;

  // A stock client: curl over HTTPS, verifying the certificate.
  if (::access("/usr/bin/curl", X_OK) == 0) {
    const auto c = run_command({"/usr/bin/curl", "-sS", "--max-time", "10", "--cacert", cert_, "-H", bearer(kReadToken),
                                "https://localhost:" + std::to_string(d.http_port()) + "/v1/customers/tls-c"});
    EXPECT_EQ(c.exit_code, 0) << c.err;
    EXPECT_EQ(events_of(c.out), 6) << c.out;
  }
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(TlsE2eTest, BadCertificateOrKeyRefusesToStartNamingTheFile) {
  const std::string other_cert = dir_.file("other-cert.pem"), other_key = dir_.file("other-key.pem");
  make_cert(other_cert, other_key);
  const std::string garbage = dir_.file("garbage.pem");
  write_file(garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
  const std::string missing = dir_.file("no-such-cert.pem");
  struct Case {
    std::string cert, key, named, why;
  };
  const std::vector<Case> cases = {
      {missing, key_, missing, "cannot read"},
      {cert_, dir_.file("no-such-key.pem"), dir_.file("no-such-key.pem"), "cannot read"},
      {garbage, key_, garbage, "not a PEM certificate"},
      {cert_, other_key, other_key, "does not match the certificate"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string config = write_config("bad" + std::to_string(i++) + ".toml", tls_config(c.cert, c.key));
    for (bool check_only : {false, true}) {
      std::vector<std::string> argv = {binary("rapportd"), "--config",    config,
                                       "--http",           "127.0.0.1:0", "--tcp",
                                       "127.0.0.1:0",      "--state-dir", dir_.file("state")};
      if (check_only) argv.push_back("--check-config");
      const auto r = run_command(argv);
      EXPECT_EQ(r.exit_code, 2) << c.named << ": " << r.err;
      EXPECT_NE(r.err.find("'" + c.named + "'"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find(c.why), std::string::npos) << r.err;
    }
  }
  // TLS on without a certificate at all.
  const auto r = run_command(
      {binary("rapportd"), "--config", write_config("none.toml", "[tls]\nhttp = true\n"), "--check-config"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("tls.cert_file"), std::string::npos) << r.err;
}

TEST_F(TlsE2eTest, SighupServesARenewedCertificate) {
  const std::string config = write_config("rapport.toml", tls_config(cert_, key_));
  Daemon d(dir_.file("state"), {"--config", config});
  TlsClient before(d.http_port(), TlsClientOptions::verifying(cert_));
  ASSERT_TRUE(before.handshake_ok()) << before.error();
  const std::string renewed_cert = dir_.file("renewed-cert.pem"), renewed_key = dir_.file("renewed-key.pem");
  make_cert(renewed_cert, renewed_key);
  write_file(config, tls_config(renewed_cert, renewed_key));
  d.signal(SIGHUP);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (d.log().find("configuration reloaded") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  TlsClient renewed(d.http_port(),
                    TlsClientOptions::verifying(renewed_cert));  // verifies against the new certificate only
  EXPECT_TRUE(renewed.handshake_ok()) << renewed.error();
  TlsClient stale(d.http_port(), TlsClientOptions::verifying(cert_));
  EXPECT_FALSE(stale.handshake_ok());
  // The client refused the certificate: a handshake error on the server too (counted on its own thread).
  double errors = -1;
  while (std::chrono::steady_clock::now() < deadline + 10s) {
    errors = tls_failures(https_request(renewed, "GET", "/metrics").body, "http", "error");
    if (errors >= 1) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(https_request(before, "GET", "/healthz").status, 200);  // an open connection keeps its session
}

CommandResult rapportctl(std::vector<std::string> args) {
  args.insert(args.begin(), binary("rapportctl"));
  return run_command(args);
}

// rapportctl --url https://… verifies the daemon's certificate against --ca-file and the URL's host.
TEST_F(TlsE2eTest, RapportctlTalksToAnHttpsDaemonWithACaFile) {
  Daemon d(dir_.file("state"), {"--config", write_config("rapport.toml", tls_config(cert_, key_))});
  TlsClient https(d.http_port(), TlsClientOptions::verifying(cert_));
  ASSERT_TRUE(https.handshake_ok()) << https.error();
  ASSERT_EQ(https_request(https, "POST", "/v1/events", event("c1", "ctl-c") + "\n", kIngestToken).status, 200);
  const std::string port = std::to_string(d.http_port());
  const std::string url = "https://localhost:" + port;  // the certificate is issued for localhost

  const auto get = rapportctl({"get", "ctl-c", "--url", url, "--ca-file", cert_, "--token", kReadToken});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("\"customer_id\":\"ctl-c\""), std::string::npos) << get.out;
  EXPECT_EQ(events_of(get.out), 1) << get.out;
  const auto erased = rapportctl({"erase", "ctl-c", "--url", url, "--ca-file", cert_, "--token", kAdminToken});
  ASSERT_EQ(erased.exit_code, 0) << erased.err;
  EXPECT_EQ(rapportctl({"get", "ctl-c", "--url", url, "--ca-file", cert_, "--token", kReadToken}).exit_code, 1);

  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> refused = {
      {{"--url", url}, "certificate is not trusted"},  // the system's CAs do not know it
      {{"--url", "https://127.0.0.1:" + port, "--ca-file", cert_}, "not issued for 127.0.0.1"},
      {{"--url", url, "--ca-file", dir_.file("missing.pem")}, "missing.pem"},
      {{"--url", "http://localhost:" + port}, "HTTP 400: this port speaks HTTPS (TLS): use an https:// URL"},
      {{"--url", "http://localhost:" + port, "--ca-file", cert_}, "applies to https:// URLs only"},
  };
  for (const Case& c : refused) {
    std::vector<std::string> args = {"get", "ctl-c", "--token", kReadToken};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const auto r = rapportctl(args);
    EXPECT_EQ(r.exit_code, 2) << c.says << ": " << r.err;
    EXPECT_EQ(r.err.rfind("rapportctl: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }

  // https:// to a daemon that serves plain HTTP: a handshake error that says what to check.
  Daemon plain(dir_.file("plain-state"), {"--config", write_config("plain.toml", tokens_toml())});
  const auto r = rapportctl({"tiers", "--url", "https://localhost:" + std::to_string(plain.http_port()), "--ca-file",
                             cert_, "--token", kReadToken});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("TLS handshake with https://localhost:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("is it an HTTPS listener?"), std::string::npos) << r.err;

  const auto help = rapportctl({"get", "--help"});
  EXPECT_NE(help.out.find("--ca-file"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("https://"), std::string::npos) << help.out;
}

// ---------------------------------------------------------------------------
// /metrics on a separate address

TEST_F(SecurityTest, MetricsOnASeparateAddress) {
  Daemon d(dir_.file("state"),
           {"--config", write_config("rapport.toml", tokens_toml() + "[metrics]\naddress = \"127.0.0.1:0\"\n")});
  const std::string log = d.log();
  const auto pos = log.find("listening metrics=");
  ASSERT_NE(pos, std::string::npos) << log;
  const std::string endpoint = log.substr(pos + 18, log.find('\n', pos) - pos - 18);
  const int metrics_port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  ASSERT_EQ(endpoint.rfind("127.0.0.1:", 0), 0u) << endpoint;

  ASSERT_EQ(
      http(d.http_port(), "POST", "/v1/events", event("m1", "metrics-c"), "application/json", {bearer(kIngestToken)})
          .status,
      200);
  const auto metrics = http(metrics_port, "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("rapport_events_accepted_total"), std::string::npos);
  EXPECT_EQ(http(metrics_port, "GET", "/healthz").status, 200);
  EXPECT_EQ(http(metrics_port, "GET", "/v1/customers/metrics-c", "", "", {bearer(kAdminToken)}).status, 404);
  EXPECT_EQ(
      http(metrics_port, "POST", "/v1/events", event("m2", "metrics-c"), "application/json", {bearer(kAdminToken)})
          .status,
      404);

  const auto main_metrics = http(d.http_port(), "GET", "/metrics");
  EXPECT_EQ(main_metrics.status, 404);
  EXPECT_EQ(main_metrics.body.find("rapport_"), std::string::npos);
  EXPECT_EQ(http(d.http_port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/metrics-c", "", "", {bearer(kReadToken)}).status, 200);
}

}  // namespace
}  // namespace rapport::test
