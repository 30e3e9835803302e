// NetworkServer over TLS, and the separate metrics listener: the real fronts
// on loopback port 0 with a fake sink and handler, driven by Asio SSL
// clients (every wait bounded) and plain POSIX sockets. Certificates are
// made at test time with the OpenSSL API (self-signed, P-256).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ingest/net/http_client.h"
#include "ingest/net/server.h"
#include "tests/support/counting_stats.h"
#include "tests/support/loopback_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tls_client.h"

namespace rapport {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

constexpr char kIngestToken[] = "tls-ingest-token-0123456789";

std::string event(const std::string& id) {
  return R"({"event_id":")" + id + R"(","customer_id":"c","ts":1700000000000,"type":"engagement"})";
}

// ---------------------------------------------------------------------------
// Certificates

using test::TempDir;

// Writes a self-signed certificate for `common_name` and its key as PEM files; `alt_names`, when given, is
// its subjectAltName (e.g. "IP:127.0.0.1").
void write_self_signed(const std::string& cert_path, const std::string& key_path, const std::string& common_name,
                       const std::string& alt_names = "") {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* cert = X509_new();
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert, name);
  if (!alt_names.empty()) {
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, alt_names.c_str());
    ASSERT_NE(san, nullptr);
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
  }
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  std::FILE* f = std::fopen(cert_path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(key_path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
}

// ---------------------------------------------------------------------------
// Fakes

// Completes every submission at once (accepted) unless held; records event ids and rejections.
class InlineSink final : public IngestSink {
 public:
  bool try_submit(std::unique_ptr<Submission>& submission) override {
    std::unique_lock lock(mutex_);
    for (const Event& e : submission->events) ids_.emplace_back(e.event_id.view());
    for (const Rejection& r : submission->rejections) rejections_.push_back(r);
    if (held_) {
      queue_.push_back(std::move(submission));
      return true;
    }
    auto s = std::move(submission);
    lock.unlock();
    complete(*s);
    return true;
  }
  bool accepting() const override { return true; }

  void hold() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  void release() {
    std::vector<std::unique_ptr<Submission>> queue;
    {
      std::lock_guard lock(mutex_);
      held_ = false;
      queue.swap(queue_);
    }
    for (auto& s : queue) complete(*s);
  }
  std::size_t queued() {
    std::lock_guard lock(mutex_);
    return queue_.size();
  }
  std::vector<std::string> ids() {
    std::lock_guard lock(mutex_);
    return ids_;
  }
  std::vector<Rejection> rejections() {
    std::lock_guard lock(mutex_);
    return rejections_;
  }

 private:
  static void complete(Submission& s) {
    SubmissionResult result;
    result.outcomes.assign(s.events.size(), Outcome::kAccepted);
    auto done = std::move(s.done);
    done(std::move(result));
  }

  std::mutex mutex_;
  bool held_ = false;
  std::vector<std::unique_ptr<Submission>> queue_;
  std::vector<std::string> ids_;
  std::vector<Rejection> rejections_;
};

// Answers "path=<path>" for every request.
class EchoHandler final : public HttpHandler {
 public:
  RouteAccess access(std::string_view /*method*/, std::string_view /*raw_target*/) const override { return {}; }
  HttpRoute handle(HttpRequest&& request, HttpRespond respond) override {
    HttpResponse r;
    r.content_type = "text/plain";
    r.body = "path=" + request.path;
    respond(std::move(r));
    return HttpRoute::kOther;
  }
};

// ---------------------------------------------------------------------------
// Clients

using Response = test::HttpResponseText;
using test::take_response;
using test::TlsClient;
using PlainClient = test::LoopbackClient;  // plain POSIX socket

int port_of(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

std::string http_request(const std::string& method, const std::string& target, const std::string& body = "",
                         const std::vector<std::string>& headers = {}) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  if (!body.empty() || method == "POST") {
    req += "Content-Type: application/x-ndjson\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  for (const auto& h : headers) req += h + "\r\n";
  return req + "\r\n" + body;
}

// ---------------------------------------------------------------------------
// Fixture

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { write_self_signed(cert_, key_, "rapport-test-a"); }

  ServerOptions options(bool http_tls = true, bool tcp_tls = true) const {
    ServerOptions o;
    o.http_address = "127.0.0.1:0";
    o.tcp_address = "127.0.0.1:0";
    o.io_threads = 2;
    o.tls.cert_file = cert_;
    o.tls.key_file = key_;
    o.tls.http = http_tls;
    o.tls.tcp = tcp_tls;
    return o;
  }
  void start(const ServerOptions& o, std::shared_ptr<const TokenSet> tokens = nullptr) {
    auto server = NetworkServer::start(o, handler_, sink_, metrics_, std::move(tokens));
    ASSERT_TRUE(server.ok()) << server.message();
    server_ = std::move(server.value());
  }
  int tcp_port() const { return port_of(server_->tcp_endpoint()); }
  int http_port() const { return port_of(server_->http_endpoint()); }
  double tls_failures(Transport t, TlsFailure f) { return metrics_.tls_handshake_failures(t, f).Value(); }
  // Polls `done` for up to 10 s (for what the server counts on its own threads).
  static bool eventually(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  TempDir dir_;
  const std::string cert_ = dir_.file("cert.pem");
  const std::string key_ = dir_.file("key.pem");
  test::CountingStats metrics_;
  InlineSink sink_;
  EchoHandler handler_;
  std::unique_ptr<NetworkServer> server_;  // last: stopped first
};

std::shared_ptr<const TokenSet> ingest_tokens() {
  return std::make_shared<const TokenSet>(
      std::vector<TokenGrant>{{kIngestToken, static_cast<std::uint8_t>(Scope::kIngest)}});
}

// ---------------------------------------------------------------------------
// Tests

TEST_F(TlsTest, TcpOverTlsAuthenticatesAndAcksEveryLine) {
  start(options(), ingest_tokens());
  TlsClient c(tcp_port());
  ASSERT_TRUE(c.handshake_ok()) << c.last_error().message();
  EXPECT_EQ(c.peer_common_name(), "rapport-test-a");
  ASSERT_TRUE(
      c.send(std::string("{\"auth\":\"") + kIngestToken + "\"}\n" + event("t1") + "\nnope\n" + event("t2") + "\n"));
  EXPECT_EQ(c.read_line().value_or(""), "{\"auth\":\"ok\"}");
  std::vector<std::string> lines;
  while (auto l = c.read_line()) {
    lines.push_back(*l);
    if (l->rfind("{\"ack\":3}", 0) == 0) break;
  }
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "{\"ack\":3}");
  EXPECT_EQ(lines.front().rfind("{\"line\":2,", 0), 0u) << lines.front();
  EXPECT_EQ(sink_.ids(), (std::vector<std::string>{"t1", "t2"}));
}

TEST_F(TlsTest, TlsConnectionRefusedAtAuthIsClosedWithCloseNotify) {
  start(options(), ingest_tokens());
  TlsClient c(tcp_port());
  ASSERT_TRUE(c.handshake_ok());
  ASSERT_TRUE(c.send(event("x") + "\n"));
  EXPECT_NE(c.read_line().value_or("").find("unauthorized"), std::string::npos);
  EXPECT_TRUE(c.ended_by_peer());
  EXPECT_EQ(c.last_error(), asio::error::eof) << c.last_error().message();  // eof = a clean TLS close
}

TEST_F(TlsTest, HttpsServesIngestAndHandlerRequestsWithKeepAlive) {
  start(options(), ingest_tokens());
  TlsClient c(http_port());
  ASSERT_TRUE(c.handshake_ok()) << c.last_error().message();
  ASSERT_TRUE(c.send(http_request("POST", "/v1/events", event("h1") + "\n" + event("h2") + "\n",
                                  {std::string("Authorization: Bearer ") + kIngestToken})));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body,
            "{\"accepted\":2,\"duplicates\":0,\"errors\":false,\"rejected\":[],\"rejected_count\":0,"
            "\"rejected_by_reason\":{}}");
  // No token and no body: refused from the header, the connection stays (an announced body would close it).
  ASSERT_TRUE(c.send(http_request("POST", "/v1/events", "")));
  r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 401);
  ASSERT_TRUE(c.send(http_request("GET", "/v1/customers/a", "", {"Connection: close"})));
  r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "path=/v1/customers/a");
  EXPECT_TRUE(c.ended_by_peer());
  EXPECT_EQ(c.last_error(), asio::error::eof) << c.last_error().message();
}

TEST_F(TlsTest, PlaintextClientsOnTlsPortsGetAClearRefusalAndOthersContinue) {
  start(options(), ingest_tokens());
  TlsClient tls(tcp_port());
  ASSERT_TRUE(tls.handshake_ok());
  ASSERT_TRUE(tls.send(std::string("{\"auth\":\"") + kIngestToken + "\"}\n" + event("p1") + "\n"));
  EXPECT_EQ(tls.read_line().value_or(""), "{\"auth\":\"ok\"}");
  EXPECT_EQ(tls.read_line().value_or(""), "{\"ack\":1}");

  {
    PlainClient plain(tcp_port());
    ASSERT_TRUE(plain.send(std::string("{\"auth\":\"") + kIngestToken + "\"}\n" + event("plain") + "\n"));
    bool eof = false;
    EXPECT_EQ(plain.read_all(eof), "{\"error\":\"this port requires TLS\"}\n");
    EXPECT_TRUE(eof);
  }
  {
    PlainClient plain(http_port());
    ASSERT_TRUE(plain.send(http_request("GET", "/healthz")));
    bool eof = false;
    std::string answer = plain.read_all(eof);
    EXPECT_TRUE(eof);
    auto r = take_response(answer);
    ASSERT_TRUE(r.has_value()) << answer;
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("https://"), std::string::npos) << r->body;
  }
  // The TLS connection opened before is unaffected.
  ASSERT_TRUE(tls.send(event("p2") + "\n"));
  EXPECT_EQ(tls.read_line().value_or(""), "{\"ack\":2}");
  EXPECT_EQ(sink_.ids(), (std::vector<std::string>{"p1", "p2"}));
  // Each refusal is a handshake failure of its transport; the good handshake is not.
  for (const Transport t : {Transport::kTcp, Transport::kHttp}) {
    EXPECT_EQ(tls_failures(t, TlsFailure::kPlaintext), 1) << transport_name(t);
    EXPECT_EQ(tls_failures(t, TlsFailure::kError), 0) << transport_name(t);
    EXPECT_EQ(tls_failures(t, TlsFailure::kTimeout), 0) << transport_name(t);
  }
}

TEST_F(TlsTest, HandshakeMustFinishWithinTheReadTimeout) {
  ServerOptions o = options();
  o.limits.read_timeout = 300ms;
  start(o);
  for (int port : {tcp_port(), http_port()}) {
    PlainClient silent(port);
    PlainClient started(port);
    ASSERT_TRUE(started.send(std::string(1, '\x16')));  // a handshake record that never completes
    bool eof = false;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(silent.read_all(eof, 5s), "");
    EXPECT_TRUE(eof);
    EXPECT_EQ(started.read_all(eof, 5s), "");
    EXPECT_TRUE(eof);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  }
  // Both the silent client and the unfinished handshake count as timeouts, on each transport (HTTP: once
  // the read that the timeout closed completes, maybe after the client saw the close).
  for (const Transport t : {Transport::kTcp, Transport::kHttp}) {
    EXPECT_TRUE(eventually([&] { return tls_failures(t, TlsFailure::kTimeout) == 2; }))
        << transport_name(t) << ": " << tls_failures(t, TlsFailure::kTimeout);
    EXPECT_EQ(tls_failures(t, TlsFailure::kError), 0) << transport_name(t);
    EXPECT_EQ(tls_failures(t, TlsFailure::kPlaintext), 0) << transport_name(t);
  }
}

TEST_F(TlsTest, MinimumVersionIsEnforced) {
  ServerOptions o = options();
  o.tls.min_version = "1.3";
  start(o);
  TlsClient old(tcp_port(), test::TlsClientOptions::at_most(TLS1_2_VERSION));
  EXPECT_FALSE(old.handshake_ok());
  TlsClient current(tcp_port());
  EXPECT_TRUE(current.handshake_ok()) << current.last_error().message();
  // The refused version is a handshake error (counted on the server's strand, maybe after the client saw it).
  EXPECT_TRUE(eventually([&] { return tls_failures(Transport::kTcp, TlsFailure::kError) == 1; }));
  EXPECT_EQ(tls_failures(Transport::kTcp, TlsFailure::kPlaintext), 0);
  EXPECT_EQ(tls_failures(Transport::kHttp, TlsFailure::kError), 0);
}

TEST_F(TlsTest, OnlyTheConfiguredFrontSpeaksTls) {
  start(options(/*http_tls=*/false, /*tcp_tls=*/true));
  PlainClient plain_http(http_port());
  ASSERT_TRUE(plain_http.send(http_request("GET", "/healthz", "", {"Connection: close"})));
  bool eof = false;
  std::string answer = plain_http.read_all(eof);
  auto r = take_response(answer);
  ASSERT_TRUE(r.has_value()) << answer;
  EXPECT_EQ(r->status, 200);
  TlsClient tls_tcp(tcp_port());
  EXPECT_TRUE(tls_tcp.handshake_ok());
}

TEST_F(TlsTest, BadCertificateOrKeyFilesFailNamingTheFile) {
  const std::string other_cert = dir_.file("other-cert.pem"), other_key = dir_.file("other-key.pem");
  write_self_signed(other_cert, other_key, "rapport-test-b");
  const std::string garbage = dir_.file("garbage.pem");
  {
    std::FILE* f = std::fopen(garbage.c_str(), "wb");
    std::fputs("not a certificate\n", f);
    std::fclose(f);
  }
  struct Case {
    std::string cert, key, expect;
  };
  const std::string missing = dir_.file("missing.pem");
  const std::vector<Case> cases = {
      {missing, key_, "tls.cert_file '" + missing + "': cannot read: No such file or directory"},
      {cert_, missing, "tls.key_file '" + missing + "': cannot read: No such file or directory"},
      {garbage, key_, "tls.cert_file '" + garbage + "': not a PEM certificate chain"},
      {cert_, garbage, "tls.key_file '" + garbage + "': not an unencrypted PEM private key"},
      {cert_, other_key, "tls.key_file '" + other_key + "' does not match the certificate in tls.cert_file '" + cert_},
  };
  for (const Case& c : cases) {
    ServerOptions o = options();
    o.tls.cert_file = c.cert;
    o.tls.key_file = c.key;
    const Status checked = check_tls(o.tls);
    ASSERT_FALSE(checked.ok()) << c.expect;
    EXPECT_EQ(checked.message().rfind(c.expect, 0), 0u) << checked.message();
    auto r = NetworkServer::start(o, handler_, sink_, metrics_, nullptr);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.message(), checked.message());
  }
  EXPECT_TRUE(check_tls(options().tls).ok());
}

// rapportctl's client: https:// verified against a CA file and the URL's host (IP or name).
TEST_F(TlsTest, HttpClientSpeaksHttpsVerifyingTheCertificateAndItsHost) {
  const std::string cert = dir_.file("ip-cert.pem"), key = dir_.file("ip-key.pem");
  write_self_signed(cert, key, "rapport-test-ip", "IP:127.0.0.1");
  ServerOptions o = options(/*http_tls=*/true, /*tcp_tls=*/false);
  o.tls.cert_file = cert;
  o.tls.key_file = key;
  start(o);
  const std::string port = std::to_string(http_port());
  const auto request = [](const std::string& url, const std::string& ca_file) -> Result<HttpClientResponse> {
    auto endpoint = parse_http_url(url);
    if (!endpoint.ok()) return endpoint.status();
    HttpClientRequest r;
    r.target = "/v1/x";
    r.timeout = 10s;
    r.ca_file = ca_file;
    return http_request(*endpoint, r);
  };

  auto ok = request("https://127.0.0.1:" + port, cert);
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "path=/v1/x");

  // Not trusted: the system's CAs (no CA file), or a CA file with another certificate.
  for (const std::string& ca : {std::string(), cert_}) {
    auto r = request("https://127.0.0.1:" + port, ca);
    ASSERT_FALSE(r.ok()) << ca;
    EXPECT_NE(r.message().find("certificate is not trusted"), std::string::npos) << r.message();
    EXPECT_NE(r.message().find("--ca-file"), std::string::npos) << r.message();
  }
  // Trusted, but not issued for this host name.
  auto wrong_host = request("https://localhost:" + port, cert);
  ASSERT_FALSE(wrong_host.ok());
  EXPECT_NE(wrong_host.message().find("not issued for localhost"), std::string::npos) << wrong_host.message();
  // A CA file that cannot be read, or is not PEM.
  auto missing = request("https://127.0.0.1:" + port, dir_.file("none.pem"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("CA file '" + dir_.file("none.pem") + "': cannot read"), std::string::npos)
      << missing.message();
  auto not_pem = request("https://127.0.0.1:" + port, key);
  ASSERT_FALSE(not_pem.ok());
  EXPECT_NE(not_pem.message().find("no PEM certificate"), std::string::npos) << not_pem.message();
  // Plain http:// to the TLS port gets the front's plaintext refusal as an HTTP answer.
  auto plain = request("http://127.0.0.1:" + port, "");
  ASSERT_TRUE(plain.ok()) << plain.message();
  EXPECT_EQ(plain->status, 400);
  EXPECT_NE(plain->body.find("https://"), std::string::npos) << plain->body;
  // https:// to a plain HTTP listener: the handshake fails with a hint.
  server_.reset();
  start(options(/*http_tls=*/false, /*tcp_tls=*/false));
  auto to_plain = request("https://127.0.0.1:" + std::to_string(http_port()), cert);
  ASSERT_FALSE(to_plain.ok());
  EXPECT_NE(to_plain.message().find("TLS handshake with https://127.0.0.1:"), std::string::npos) << to_plain.message();
  EXPECT_NE(to_plain.message().find("is it an HTTPS listener?"), std::string::npos) << to_plain.message();
}

TEST_F(TlsTest, ReloadServesTheNewCertificateToNewConnectionsAndKeepsItOnError) {
  start(options(), ingest_tokens());
  TlsClient before(tcp_port());
  ASSERT_TRUE(before.handshake_ok());
  ASSERT_TRUE(before.send(std::string("{\"auth\":\"") + kIngestToken + "\"}\n"));
  EXPECT_EQ(before.read_line().value_or(""), "{\"auth\":\"ok\"}");

  const std::string cert_b = dir_.file("b-cert.pem"), key_b = dir_.file("b-key.pem");
  write_self_signed(cert_b, key_b, "rapport-test-b");
  TlsOptions tls = options().tls;
  tls.cert_file = cert_b;
  tls.key_file = key_b;
  ASSERT_TRUE(server_->reload_tls(tls).ok());
  TlsClient after(http_port());
  ASSERT_TRUE(after.handshake_ok());
  EXPECT_EQ(after.peer_common_name(), "rapport-test-b");

  tls.key_file = key_;  // does not match cert_b
  const Status bad = server_->reload_tls(tls);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find(key_), std::string::npos) << bad.message();
  TlsOptions flipped = options().tls;
  flipped.http = false;
  EXPECT_FALSE(server_->reload_tls(flipped).ok());
  TlsClient still_b(tcp_port());
  ASSERT_TRUE(still_b.handshake_ok());
  EXPECT_EQ(still_b.peer_common_name(), "rapport-test-b");

  // The connection opened before the reloads still works.
  ASSERT_TRUE(before.send(event("r1") + "\n"));
  EXPECT_EQ(before.read_line().value_or(""), "{\"ack\":1}");
}

TEST_F(TlsTest, ShutdownDeliversOwedAcksOverTlsThenCloses) {
  start(options());
  TlsClient c(tcp_port());
  ASSERT_TRUE(c.handshake_ok());
  PlainClient handshaking(tcp_port());  // mid-handshake at shutdown: simply closed
  ASSERT_TRUE(handshaking.send(std::string(1, '\x16')));
  sink_.hold();
  ASSERT_TRUE(c.send(event("s1") + "\n" + event("s2") + "\n"));
  for (int i = 0; i < 500 && sink_.queued() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(sink_.queued(), 1u);
  std::thread releaser([&] {
    std::this_thread::sleep_for(100ms);
    sink_.release();
  });
  server_->shutdown(10s);
  releaser.join();
  EXPECT_EQ(c.read_line().value_or(""), "{\"ack\":2}");
  EXPECT_TRUE(c.ended_by_peer());
  bool eof = false;
  handshaking.read_all(eof, 5s);
  EXPECT_TRUE(eof);
}

TEST_F(TlsTest, ALaterAuthLineIsRejectedAndItsTokenNeverKept) {
  ServerOptions o = options(false, false);
  start(o, ingest_tokens());
  PlainClient c(tcp_port());
  const std::string auth = std::string("{\"auth\":\"") + kIngestToken + "\"}\n";
  ASSERT_TRUE(c.send(auth + event("a1") + "\n" + auth));
  c.shutdown_write();
  bool eof = false;
  const std::string answer = c.read_all(eof);
  EXPECT_TRUE(eof);
  EXPECT_NE(answer.find("{\"line\":2,\"error\":\"an {\\\"auth\\\":…} line is only valid as the first line\""),
            std::string::npos)
      << answer;
  EXPECT_EQ(answer.find(kIngestToken), std::string::npos);
  const auto rejections = sink_.rejections();
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].payload, "{\"auth\":\"<redacted>\"}");
  EXPECT_EQ(rejections[0].message.find(kIngestToken), std::string::npos);
}

// ---------------------------------------------------------------------------
// The metrics listener

TEST_F(TlsTest, MetricsListenerServesOnlyMetricsAndHealthzAndTheMainListenerNoMetrics) {
  ServerOptions o = options(false, false);
  o.metrics_address = "127.0.0.1:0";
  start(o);
  ASSERT_NE(server_->metrics_endpoint(), "");
  const auto get = [](int port, const std::string& target) {
    PlainClient c(port);
    c.send(http_request("GET", target, "", {"Connection: close"}));
    bool eof = false;
    std::string answer = c.read_all(eof);
    return take_response(answer).value_or(Response{});
  };
  const int metrics_port = port_of(server_->metrics_endpoint());
  EXPECT_EQ(get(metrics_port, "/metrics").body, "path=/metrics");
  EXPECT_EQ(get(metrics_port, "/healthz").body, "path=/healthz");
  EXPECT_EQ(get(metrics_port, "/v1/customers/a").status, 404);
  EXPECT_EQ(get(metrics_port, "/v1/events").status, 404);
  const Response main_metrics = get(http_port(), "/metrics");
  EXPECT_EQ(main_metrics.status, 404);
  EXPECT_NE(main_metrics.body.find("metrics listener"), std::string::npos) << main_metrics.body;
  EXPECT_EQ(get(http_port(), "/healthz").body, "path=/healthz");
  EXPECT_EQ(get(http_port(), "/v1/customers/a").body, "path=/v1/customers/a");
}

TEST_F(TlsTest, WithoutAMetricsListenerTheMainListenerServesMetrics) {
  start(options(false, false));
  EXPECT_EQ(server_->metrics_endpoint(), "");
  PlainClient c(http_port());
  c.send(http_request("GET", "/metrics", "", {"Connection: close"}));
  bool eof = false;
  std::string answer = c.read_all(eof);
  EXPECT_EQ(take_response(answer).value_or(Response{}).body, "path=/metrics");
}

}  // namespace
}  // namespace rapport
