// The HTTP/1.1 front (Boost.Beast): keep-alive, one request at a time per
// connection (pipelined requests wait in the buffer), POST /v1/events served
// here, everything else handed to the HttpHandler.
//
// POST /v1/events: auth (ingest scope) -> 401/403; Content-Type -> 415;
// sink not accepting or full -> 503 + Retry-After: 1; decode the body on the
// io thread; answer after the durable commit with
// {"accepted":a,"duplicates":d,"rejected":[{"index":i,"error":"<reason>: <message>"}]}
// or 503 + Retry-After: 5 when storage refused the batch. A body with no item
// at all (empty NDJSON) is answered at once with zero counts; a body whose
// items are all rejected still goes through the sink, so the rejections are
// dead-lettered durably before the answer.
// Limits: header over max_header_bytes -> 431, body over max_body_bytes ->
// 413, malformed request -> 400; each then closes the connection.
// The metrics listener (Front::kMetrics) serves only /metrics and /healthz
// (404 for the rest); with it, the main listener answers 404 for /metrics.
// TLS (the connection is templated on its stream): the first bytes must
// start a TLS handshake, else a plaintext client gets a plaintext 400 and
// the connection closes; the handshake must finish within read_timeout.
// Closing sends close_notify (bounded by the linger time) first.
#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "ingest/net/fronts.h"

namespace rapport::net {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

constexpr std::string_view kPlaintextRefusalBody = "{\"error\":\"this port speaks HTTPS (TLS): use an https:// URL\"}";
constexpr std::string_view kAcceptedTypes =
    "application/x-ndjson, application/json, application/cloudevents+json or application/cloudevents-batch+json";

std::string json_error_body(std::string_view message) {
  std::string out = "{\"error\":\"";
  append_json_escaped(out, message);
  out += "\"}";
  return out;
}

HttpResponse error_response(int status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = json_error_body(message);
  return r;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes a path; false on a malformed escape or an encoded NUL.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string media_type(std::string_view content_type) {
  return lower(trim(content_type.substr(0, content_type.find(';'))));
}

std::string bearer_token(std::string_view authorization) {
  authorization = trim(authorization);
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() || lower(authorization.substr(0, kScheme.size())) != kScheme) return {};
  return std::string(trim(authorization.substr(kScheme.size())));
}

std::optional<BodyFormat> body_format(std::string_view type) {
  if (type == "application/x-ndjson") return BodyFormat::kNdjson;
  if (type == "application/json") return BodyFormat::kJson;
  if (type == "application/cloudevents+json") return BodyFormat::kCloudEvent;
  if (type == "application/cloudevents-batch+json") return BodyFormat::kCloudEventBatch;
  return std::nullopt;
}

// Finds the raw text of item `index` of a body, for the dead-letter payload.
// Moves forward through the body; asking for an earlier item restarts.
class ItemLocator {
 public:
  ItemLocator(std::string_view body, BodyFormat format) : body_(body) {
    if (format == BodyFormat::kNdjson) {
      mode_ = Mode::kLines;
    } else if (format != BodyFormat::kCloudEvent) {
      const auto first = body.find_first_not_of(" \t\r\n");
      if (first != std::string_view::npos && body[first] == '[') {
        mode_ = Mode::kArray;
        start_ = first + 1;
      }
    }
    pos_ = start_;
  }

  std::string_view item(std::size_t index) {
    if (mode_ == Mode::kWhole) return body_;
    if (index < next_) {
      next_ = 0;
      pos_ = start_;
    }
    std::string_view found;
    while (next_ <= index) {
      if (pos_ > body_.size()) return body_;
      found = mode_ == Mode::kLines ? next_line() : next_element();
      ++next_;
    }
    return found;
  }

 private:
  enum class Mode { kWhole, kLines, kArray };

  std::string_view next_line() {
    const auto nl = body_.find('\n', pos_);
    const std::size_t end = nl == std::string_view::npos ? body_.size() : nl;
    std::string_view line = body_.substr(pos_, end - pos_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos_ = nl == std::string_view::npos ? body_.size() + 1 : nl + 1;
    return line;
  }

  // The next top-level array element (trimmed), tracking strings and nesting.
  std::string_view next_element() {
    const std::size_t begin = pos_;
    int depth = 0;
    bool in_string = false;
    std::size_t i = pos_;
    for (; i < body_.size(); ++i) {
      const char c = body_[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
        continue;
      }
      if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;  // end of the array
        --depth;
      } else if (c == ',' && depth == 0) {
        break;
      }
    }
    const std::size_t end = std::min(i, body_.size());
    pos_ = end < body_.size() && body_[end] == ',' ? end + 1 : body_.size() + 1;
    std::string_view element = body_.substr(begin, end - begin);
    const auto first = element.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) return {};
    const auto last = element.find_last_not_of(" \t\r\n");
    return element.substr(first, last - first + 1);
  }

  std::string_view body_;
  Mode mode_ = Mode::kWhole;
  std::size_t start_ = 0;
  std::size_t pos_ = 0;
  std::size_t next_ = 0;
};

template <bool kTls>
class HttpConnection;

// Collects decoded items of one request into a Submission.
class BodyCollector final : public DecodeSink {
 public:
  BodyCollector(Submission& sub, std::vector<std::uint8_t>& kinds, Metrics& metrics, std::string_view body,
                BodyFormat format)
      : sub_(sub), kinds_(kinds), metrics_(metrics), locator_(body, format), body_(body) {}

  void on_event(std::size_t index, const Event& event) override {
    ++received_;
    sub_.events.push_back(event);
    sub_.event_index.push_back(static_cast<std::uint32_t>(index));
    kinds_.push_back(event_kind(event));
  }

  void on_reject(std::size_t index, RejectReason reason, std::string_view message) override {
    ++received_;
    metrics_.rejected(Transport::kHttp, reason).Increment();
    Rejection& r = sub_.rejections.emplace_back();
    r.index = static_cast<std::uint32_t>(index);
    r.reason = reason;
    r.message = std::string(message);
    r.payload = std::string(locator_.item(index).substr(0, kMaxPayloadBytes));
  }

  // Counts the items; a body rejected as a whole keeps the whole body (truncated) as its payload.
  void finish() {
    if (received_ > 0) metrics_.received(Transport::kHttp).Increment(static_cast<double>(received_));
    if (sub_.events.empty() && sub_.rejections.size() == 1 && sub_.rejections[0].index == 0) {
      sub_.rejections[0].payload = std::string(body_.substr(0, kMaxPayloadBytes));
    }
  }

 private:
  Submission& sub_;
  std::vector<std::uint8_t>& kinds_;
  Metrics& metrics_;
  ItemLocator locator_;
  std::string_view body_;
  std::size_t received_ = 0;
};

template <bool kTls>
class HttpConnection final : public Connection {
 public:
  using Stream = std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

  HttpConnection(Core& core, Strand strand, tcp::socket socket, Front front, std::shared_ptr<ssl::context> tls)
      : Connection(core, front, std::move(strand), std::move(tls)),
        stream_(make_stream(std::move(socket), tls_.get())),
        linger_timer_(strand_),
        settings_(core.settings()) {}

  void drain() override {
    draining_ = true;
    if (!started_ || closed_ || state_ == State::kHandshake) {
      close_now();
      return;
    }
    if (state_ == State::kIdle || state_ == State::kReading) {
      lowest().cancel();  // the read completes with operation_aborted and the connection closes
    }
    // kBusy / kWriting: the response goes out with Connection: close, then the connection closes.
  }

 private:
  enum class State { kHandshake, kIdle, kReading, kBusy, kWriting, kClosing };

  // Calls the respond callback's completion exactly once; answers 500 if the handler drops it unanswered.
  struct Responder {
    Anchor<HttpConnection> anchor;
    std::uint64_t seq = 0;
    std::atomic<bool> called{false};

    void respond(HttpResponse&& response) {
      if (called.exchange(true)) return;
      post(std::move(response));
    }
    void post(HttpResponse&& response) {
      auto connection = anchor.connection;
      asio::post(connection->strand_, [connection, s = seq, r = std::move(response)]() mutable {
        connection->guarded([&] { connection->on_response(s, std::move(r)); });
      });
    }
    ~Responder() {
      if (!called.load()) {
        try {
          post(error_response(500, "internal error: the request was dropped without a response"));
        } catch (...) {
        }
      }
    }
  };

  std::shared_ptr<HttpConnection> self() { return std::static_pointer_cast<HttpConnection>(shared_from_this()); }

  static Stream make_stream(tcp::socket socket, ssl::context* tls) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls);
    } else {
      return Stream(std::move(socket));
    }
  }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  template <typename F>
  void guarded(F&& f) {
    run_guarded("http", std::forward<F>(f), [this] { close_now(); });
  }

  // ---- TLS ----

  void begin() override {
    if constexpr (kTls) {
      // The shared TLS start (fronts.h): first bytes, plaintext refusal, handshake; all within read_timeout.
      state_ = State::kHandshake;
      start_tls(self(), stream_, lowest().socket(), linger_timer_, settings_->limits.read_timeout, hello_,
                [self = self()](TlsStart result) { self->guarded([&] { self->on_tls_start(result); }); });
    } else {
      read_request();
    }
  }

  void on_tls_start(TlsStart result) {
    if (result == TlsStart::kPlaintext && !closed_) {
      // A plaintext request on a TLS port: a plaintext 400 that says so, then close.
      state_ = State::kClosing;
      core_.metrics.observe_http(Route::kOther, 400, 0);
      refusal_ =
          "HTTP/1.1 400 Bad Request\r\nServer: rapportd\r\nContent-Type: application/json\r\nConnection: close\r\n"
          "Content-Length: " +
          std::to_string(kPlaintextRefusalBody.size()) + "\r\n\r\n" + std::string(kPlaintextRefusalBody);
    }
    if (tls_started(result, lowest().socket(), linger_timer_, refusal_)) read_request();
  }

  // ---- reading ----

  void read_request() {
    if (closed_) return;
    if (draining_) {
      graceful_close();
      return;
    }
    settings_ = core_.settings();
    state_ = State::kIdle;
    if (buffer_.size() > 0) {
      begin_parse();  // a pipelined request is already here
      return;
    }
    lowest().expires_after(settings_->limits.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096), [self = self()](const boost::system::error_code& ec, std::size_t n) {
      self->guarded([&] { self->on_first_bytes(ec, n); });
    });
  }

  void on_first_bytes(const boost::system::error_code& ec, std::size_t n) {
    if (closed_) return;
    if (ec) {
      close_now();  // EOF, idle timeout, drain, reset
      return;
    }
    buffer_.commit(n);
    begin_parse();
  }

  void begin_parse() {
    if (draining_) {
      close_now();
      return;
    }
    state_ = State::kReading;
    const FrontLimits& limits = settings_->limits;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
    parser_->body_limit(static_cast<std::uint64_t>(limits.max_body_bytes));
    lowest().expires_after(limits.read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = self()](const boost::system::error_code& ec, std::size_t n) {
                              self->guarded([&] { self->on_header(ec, n); });
                            });
  }

  // `n`: the bytes of the whole header (start line, fields, blank line).
  void on_header(const boost::system::error_code& ec, std::size_t n) {
    if (closed_) return;
    if (ec) {
      on_read_error(ec);
      return;
    }
    if (n > settings_->limits.max_header_bytes) {
      // Beast applies header_limit to the start line and to the fields separately, and only to the bytes
      // buffered at each step: up to about twice the limit can pass, depending on segmentation.
      on_read_error(http::error::header_limit);
      return;
    }
    const auto expect = parser_->get()[http::field::expect];
    if (!parser_->is_done() && beast::iequals(expect, "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = self()](const boost::system::error_code& e, std::size_t /*n*/) {
                          self->guarded([&] {
                            if (self->closed_) return;
                            if (e) {
                              self->close_now();
                            } else {
                              self->read_body();
                            }
                          });
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) {
      on_request();
      return;
    }
    http::async_read(stream_, buffer_, *parser_,
                     [self = self()](const boost::system::error_code& ec, std::size_t /*n*/) {
                       self->guarded([&] {
                         if (self->closed_) return;
                         if (ec) {
                           self->on_read_error(ec);
                         } else {
                           self->on_request();
                         }
                       });
                     });
  }

  void on_read_error(const boost::system::error_code& ec) {
    const boost::system::error_code http_error = http::error::body_limit;
    if (draining_ || ec == http::error::end_of_stream || ec.category() != http_error.category()) {
      close_now();  // nothing useful can be answered (or the socket is gone)
      return;
    }
    started_at_ = std::chrono::steady_clock::now();
    route_ = Route::kOther;
    version_ = 11;
    if (parser_ && parser_->is_header_done()) {
      const auto target = parser_->get().target();
      if (target == "/v1/events" || target.substr(0, 11) == "/v1/events?") route_ = Route::kEvents;
      version_ = parser_->get().version();
    }
    keep_alive_ = false;
    head_ = false;
    const FrontLimits& limits = settings_->limits;
    if (ec == http::error::body_limit) {
      send(error_response(413, "body exceeds " + std::to_string(limits.max_body_bytes) + " bytes"));
    } else if (ec == http::error::header_limit) {
      send(error_response(431, "header exceeds " + std::to_string(limits.max_header_bytes) + " bytes"));
    } else {
      send(error_response(400, "bad request: " + ec.message()));
    }
  }

  // ---- requests ----

  void on_request() {
    state_ = State::kBusy;
    started_at_ = std::chrono::steady_clock::now();
    auto& req = parser_->get();
    version_ = req.version();
    keep_alive_ = req.keep_alive() && !draining_;
    head_ = req.method() == http::verb::head;
    route_ = Route::kOther;
    const std::string_view target = req.target();
    if (target.empty() || target.front() != '/') {
      keep_alive_ = false;
      send(error_response(400, "the request target must be an absolute path"));
      return;
    }
    const auto question = target.find('?');
    std::string path;
    if (!percent_decode(target.substr(0, question), path)) {
      send(error_response(400, "malformed percent-escape in the request path"));
      return;
    }
    if (front_ == Front::kMetrics ? path != "/metrics" && path != "/healthz"
                                  : core_.metrics_separate && path == "/metrics") {
      send(error_response(404, "no such route: " + std::string(req.method_string()) + " " + path +
                                   (front_ == Front::kMetrics ? " (this listener serves only /metrics and /healthz)"
                                                              : " (metrics are served on the metrics listener)")));
      return;
    }
    if (path == "/v1/events") {
      route_ = Route::kEvents;
      if (req.method() != http::verb::post) {
        HttpResponse r =
            error_response(405, "method " + std::string(req.method_string()) + " not allowed on /v1/events");
        r.headers.emplace_back("Allow", "POST");
        send(std::move(r));
        return;
      }
      ingest(req);
      return;
    }
    HttpRequest request;
    request.method = std::string(req.method_string());
    request.path = std::move(path);
    if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
    request.content_type = media_type(req[http::field::content_type]);
    request.bearer_token = bearer_token(req[http::field::authorization]);
    request.body = std::move(req.body());
    const std::uint64_t seq = ++request_seq_;
    auto responder = std::make_shared<Responder>();
    responder->anchor = Anchor<HttpConnection>{core_.shared_from_this(), self()};
    responder->seq = seq;
    HttpRespond respond = [responder](HttpResponse&& response) { responder->respond(std::move(response)); };
    responder.reset();
    try {
      route_ = core_.handler.handle(std::move(request), std::move(respond));
    } catch (const std::exception& e) {
      log_warn(std::string("http handler failed: ") + e.what());
      ++request_seq_;  // a late respond for this request is ignored
      keep_alive_ = false;
      send(error_response(500, "internal error"));
    }
  }

  void on_response(std::uint64_t seq, HttpResponse&& response) {
    if (closed_ || seq != request_seq_ || state_ != State::kBusy) return;
    send(std::move(response));
  }

  void ingest(http::request<http::string_body>& req) {
    switch (core_.tokens()->check(bearer_token(req[http::field::authorization]), Scope::kIngest)) {
      case AuthResult::kAllowed:
        break;
      case AuthResult::kMissing:
      case AuthResult::kInvalid: {
        HttpResponse r =
            error_response(401, req[http::field::authorization].empty() ? "missing bearer token" : "invalid token");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"rapport\"");
        send(std::move(r));
        return;
      }
      case AuthResult::kForbidden: {
        HttpResponse r = error_response(403, "the token lacks the ingest scope");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"rapport\", error=\"insufficient_scope\"");
        send(std::move(r));
        return;
      }
    }
    const std::string type = media_type(req[http::field::content_type]);
    const auto format = body_format(type);
    if (!format) {
      send(error_response(
          415, (type.empty() ? std::string("missing content type") : "unsupported content type '" + type + "'") +
                   ": use " + std::string(kAcceptedTypes)));
      return;
    }
    if (!core_.sink.accepting()) {
      HttpResponse r = error_response(503, "not accepting: shutting down");
      r.headers.emplace_back("Retry-After", "1");
      send(std::move(r));
      return;
    }

    auto sub = std::make_unique<Submission>();
    sub->transport = Transport::kHttp;
    sub->received_at = started_at_;
    kinds_.clear();
    const std::string_view body = req.body();
    BodyCollector collector(*sub, kinds_, core_.metrics, body, *format);
    thread_decoder(*settings_).decode_body(body, *format, wall_ms(), collector);
    collector.finish();

    std::stable_sort(sub->rejections.begin(), sub->rejections.end(),
                     [](const Rejection& a, const Rejection& b) { return a.index < b.index; });
    rejected_json_ = "[";
    for (const Rejection& r : sub->rejections) {
      if (rejected_json_.size() > 1) rejected_json_ += ',';
      rejected_json_ += "{\"index\":" + std::to_string(r.index) + ",\"error\":\"";
      append_json_escaped(rejected_json_, reject_reason_label(r.reason));
      rejected_json_ += ": ";
      append_json_escaped(rejected_json_, r.message);
      rejected_json_ += "\"}";
    }
    rejected_json_ += ']';
    if (sub->events.empty() && sub->rejections.empty()) {
      HttpResponse r;
      r.body = "{\"accepted\":0,\"duplicates\":0,\"rejected\":[]}";
      send(std::move(r));
      return;
    }

    events_ = sub->events.size();
    const std::uint64_t seq = ++request_seq_;
    Anchor<HttpConnection> anchor{core_.shared_from_this(), self()};
    sub->done = [anchor, seq](SubmissionResult&& result) {
      auto connection = anchor.connection;
      asio::post(connection->strand_, [connection, seq, result = std::move(result)]() mutable {
        connection->guarded([&] { connection->on_ingest_done(seq, std::move(result)); });
      });
    };
    if (!core_.sink.try_submit(sub)) {
      sub->done = nullptr;
      ++request_seq_;
      core_.metrics.refused(Transport::kHttp).Increment(static_cast<double>(events_));
      HttpResponse r = error_response(503, "ingest queue full, retry later");
      r.headers.emplace_back("Retry-After", "1");
      send(std::move(r));
    }
  }

  void on_ingest_done(std::uint64_t seq, SubmissionResult&& result) {
    if (closed_ || seq != request_seq_ || state_ != State::kBusy) return;
    if (!result.status.ok()) {
      core_.metrics.refused(Transport::kHttp).Increment(static_cast<double>(events_));
      HttpResponse r = error_response(503, "storage unavailable: " + result.status.message());
      r.headers.emplace_back("Retry-After", "5");
      send(std::move(r));
      return;
    }
    count_outcomes(core_.metrics, Transport::kHttp, kinds_, result.outcomes);
    const auto accepted = std::count(result.outcomes.begin(), result.outcomes.end(), Outcome::kAccepted);
    const auto duplicates = static_cast<std::ptrdiff_t>(result.outcomes.size()) - accepted;
    HttpResponse r;
    r.body = "{\"accepted\":" + std::to_string(accepted) + ",\"duplicates\":" + std::to_string(duplicates) +
             ",\"rejected\":" + rejected_json_ + "}";
    send(std::move(r));
  }

  // ---- writing ----

  void send(HttpResponse&& response) {
    state_ = State::kWriting;
    ++request_seq_;  // answered: any later completion for it is ignored
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
    core_.metrics.observe_http(route_, response.status, seconds);
    if (draining_) keep_alive_ = false;
    res_ = {};
    res_.version(version_ == 10 ? 10 : 11);
    res_.result(static_cast<unsigned>(response.status));
    res_.set(http::field::server, "rapportd");
    res_.set(http::field::content_type, response.content_type);
    for (auto& [name, value] : response.headers) res_.insert(name, value);
    res_.keep_alive(keep_alive_);
    res_.body() = std::move(response.body);
    res_.prepare_payload();
    if (head_) res_.body().clear();  // Content-Length still tells the size of the GET answer
    ++served_;
    // The client must keep reading the response: no progress for read_timeout (at least 1 s) closes the connection.
    lowest().expires_never();
    write_watch_.start(self(), lowest().socket(),
                       std::max(settings_->limits.read_timeout, std::chrono::milliseconds(1000)),
                       [raw = this] { raw->close_now(); });
    http::async_write(stream_, res_, [self = self()](const boost::system::error_code& ec, std::size_t /*n*/) {
      self->guarded([&] { self->on_write(ec); });
    });
  }

  void on_write(const boost::system::error_code& ec) {
    write_watch_.stop();
    if (closed_) return;
    if (ec) {
      close_now();
      return;
    }
    res_ = {};
    parser_.reset();
    if (!keep_alive_ || draining_) {
      graceful_close();
      return;
    }
    read_request();
  }

  // ---- closing ----

  void graceful_close() {
    if (closed_ || state_ == State::kClosing) return;
    state_ = State::kClosing;
    if constexpr (kTls) {
      // close_notify first, without waiting for the peer's (RFC 8446 §6.1 allows it), its write bounded by the
      // linger time (the stream's timeout closes the socket); then the graceful TCP close.
      lowest().expires_after(kLinger);
      SSL_set_shutdown(stream_.native_handle(), SSL_RECEIVED_SHUTDOWN);
      stream_.async_shutdown([self = self()](const boost::system::error_code& /*ec*/) {
        self->guarded([&] {
          if (self->closed_) return;
          self->lowest().expires_never();
          linger_close(self, self->lowest().socket(), self->linger_timer_, kLinger,
                       [raw = self.get()] { raw->close_now(); });
        });
      });
      return;
    }
    lowest().expires_never();
    linger_close(shared_from_this(), lowest().socket(), linger_timer_, kLinger, [this] { close_now(); });
  }

  void close_now() override {
    if (closed_) return;
    closed_ = true;
    state_ = State::kClosing;
    linger_timer_.cancel();
    write_watch_.stop();
    lowest().close();
    finished();
  }

  Stream stream_;
  asio::steady_timer linger_timer_;  // also the TLS start's deadline
  WriteWatch write_watch_{strand_};
  std::shared_ptr<const Settings> settings_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;

  std::string refusal_;  // TLS: the plaintext answer to a plaintext client
  State state_ = State::kIdle;
  std::uint64_t request_seq_ = 0;  // completions carry it; a stale one is ignored
  std::chrono::steady_clock::time_point started_at_{};
  Route route_ = Route::kOther;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool head_ = false;

  // The ingest request waiting for its commit.
  std::string rejected_json_;
  std::vector<std::uint8_t> kinds_;  // per event, for the outcome metrics
  std::size_t events_ = 0;
};

}  // namespace

std::shared_ptr<Connection> make_http_connection(Core& core, Strand strand, tcp::socket socket, Front front,
                                                 std::shared_ptr<ssl::context> tls) {
  if (tls) {
    return std::make_shared<HttpConnection<true>>(core, std::move(strand), std::move(socket), front, std::move(tls));
  }
  return std::make_shared<HttpConnection<false>>(core, std::move(strand), std::move(socket), front, nullptr);
}

}  // namespace rapport::net
