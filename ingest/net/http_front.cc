// The HTTP/1.1 front (Boost.Beast): keep-alive, one request at a time per
// connection (pipelined requests wait in the buffer), POST /v1/events served
// here, everything else handed to the HttpHandler.
//
// Everything decidable from the header is decided as soon as it is in, before
// any body byte is read and before `100 Continue` (on_header): framing (a
// Transfer-Encoding not ending in chunked, or any in HTTP/1.0, two
// Authorization headers, not exactly one Host in HTTP/1.1, a target that is
// not an absolute path -> 400 and close), the route and the scope it needs
// (HttpHandler::access; POST /v1/events is ingest), the token (401/403, with
// an audit line), a Content-Encoding other than identity (415). Such an early
// answer closes the connection when a body was announced (never read, so never
// taken for the next request). A request that needs no token takes at most
// kMaxBodyWithoutToken bytes of body.
// POST /v1/events: query (only deadletter=true|false; false needs the admin
// scope) -> 400/403; Content-Type -> 415; sink not accepting or full -> 503 +
// Retry-After: 1; decode the body on the io thread; answer after the durable
// commit with
// {"accepted":a,"duplicates":d,"errors":bool,"rejected":[{"index":i,"reason":"<label>",
//  "error":"<message>","event_id":"<id>"}],"rejected_count":k,"rejected_by_reason":{"<label>":n}}
// (the first kMaxListedRejections listed, all counted), 400
// {"error":…,"reason":…} for a body that fails as a whole, or 503 +
// Retry-After: 5 when storage refused the batch. A body with nothing to
// store (no item at all, or deadletter=false and no event) is answered at
// once; otherwise rejections (at most kMaxDeadLettersPerRequest, payloads
// with an "auth" key redacted) go through the sink with the events, so they
// are dead-lettered durably before the answer.
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
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

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

std::string_view scope_name(Scope scope) {
  switch (scope) {
    case Scope::kIngest:
      return "ingest";
    case Scope::kRead:
      return "read";
    case Scope::kAdmin:
      return "admin";
  }
  return "required";
}

// The elements of the comma-separated lists in every `field` line of `req`, trimmed, lower-case, without
// parameters; empty elements (allowed by the list syntax) are skipped.
template <typename Request>
std::vector<std::string> list_elements(const Request& req, http::field field) {
  std::vector<std::string> out;
  const auto [first, last] = req.equal_range(field);
  for (auto it = first; it != last; ++it) {
    std::string_view value = it->value();
    while (!value.empty()) {
      const auto comma = value.find(',');
      const std::string_view element = trim(value.substr(0, comma).substr(0, value.substr(0, comma).find(';')));
      if (!element.empty()) out.push_back(lower(element));
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return out;
}

// A framing problem of the header (RFC 9112 §3.2, §6.1), answered 400 before anything else; the
// connection is then closed. Beast takes a Transfer-Encoding whose last coding is not `chunked` as "no
// body", so the body would be read as the next request: refused here.
template <typename Request>
std::optional<HttpResponse> framing_problem(const Request& req) {
  if (req.target().empty() || req.target().front() != '/') {
    return error_response(400, "the request target must be an absolute path");
  }
  if (req.count(http::field::transfer_encoding) > 0) {
    const std::vector<std::string> codings = list_elements(req, http::field::transfer_encoding);
    if (req.version() < 11) return error_response(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
    if (codings.empty() || codings.back() != "chunked") {
      return error_response(400, "Transfer-Encoding must end with chunked (RFC 9112 section 6.1)");
    }
    if (std::count(codings.begin(), codings.end(), "chunked") > 1) {
      return error_response(400, "chunked may be applied only once");
    }
    if (codings.size() > 1) {
      return error_response(400, "unsupported transfer coding '" + codings.front() + "': use chunked alone");
    }
  }
  if (req.count(http::field::authorization) > 1) return error_response(400, "more than one Authorization header");
  const std::size_t hosts = req.count(http::field::host);
  if (hosts > 1) return error_response(400, "more than one Host header");
  if (hosts == 0 && req.version() >= 11) return error_response(400, "an HTTP/1.1 request needs a Host header");
  return std::nullopt;
}

// The first content coding other than `identity` of the request body; empty when there is none.
template <typename Request>
std::string content_coding(const Request& req) {
  for (std::string& coding : list_elements(req, http::field::content_encoding)) {
    if (coding != "identity") return std::move(coding);
  }
  return {};
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

// What one ingest request may cost beyond its body and the decoder's parse
// buffers: at most this many rejections are listed in the answer (the counts
// cover all of them) and at most this many are stored as dead letters (the
// rest are counted in rapport_dead_letters_dropped_total). Per rejected item
// beyond these only counters are kept.
constexpr std::size_t kMaxListedRejections = 100;
constexpr std::size_t kMaxDeadLettersPerRequest = 100;
// Each identify item is a merge, run one at a time while every partition's writer waits: one request
// holds at most this many; later ones are rejected.
constexpr std::size_t kMaxIdentifiesPerRequest = 100;

struct ListedRejection {
  std::uint32_t index = 0;
  RejectReason reason = RejectReason::kMalformedJson;
  std::string message;
  std::string event_id;  // empty when it could not be read
};

// The answer to an ingest request, built while decoding, completed with the outcomes.
struct IngestAnswer {
  std::vector<ListedRejection> listed;  // the first kMaxListedRejections, in item order
  std::uint64_t rejected = 0;
  std::array<std::uint64_t, kRejectReasonCount> by_reason{};
  bool body_failed = false;  // the body fails as a whole: answered 400 with listed[0]

  // Frees the list too: an idle keep-alive connection keeps nothing of its last answer.
  void clear() {
    std::vector<ListedRejection>().swap(listed);
    rejected = 0;
    by_reason.fill(0);
    body_failed = false;
  }

  // 400 {"error":"<message>","reason":"<label>"} for a body that fails as a whole.
  HttpResponse body_error() const {
    HttpResponse r;
    r.status = 400;
    r.body = "{\"error\":\"";
    append_json_escaped(r.body, listed.front().message);
    r.body += "\",\"reason\":\"";
    r.body += reject_reason_label(listed.front().reason);
    r.body += "\"}";
    return r;
  }

  // The identify items the identity service refused (SubmissionResult::refused), listed in item order.
  void add_refused(const std::vector<Rejection>& refused) {
    if (refused.empty()) return;
    for (const Rejection& r : refused) {
      ++rejected;
      ++by_reason[static_cast<std::size_t>(r.reason)];
      listed.push_back({r.index, r.reason, r.message, {}});
    }
    std::stable_sort(listed.begin(), listed.end(),
                     [](const ListedRejection& a, const ListedRejection& b) { return a.index < b.index; });
    if (listed.size() > kMaxListedRejections) listed.resize(kMaxListedRejections);
  }

  std::string body(std::uint64_t accepted, std::uint64_t duplicates) const {
    std::string out = "{\"accepted\":" + std::to_string(accepted) + ",\"duplicates\":" + std::to_string(duplicates) +
                      ",\"errors\":" + (rejected > 0 ? "true" : "false") + ",\"rejected\":[";
    for (const ListedRejection& r : listed) {
      if (&r != &listed.front()) out += ',';
      out += "{\"index\":" + std::to_string(r.index) + ",\"reason\":\"";
      out += reject_reason_label(r.reason);
      out += "\",\"error\":\"";
      append_json_escaped(out, r.message);
      out += '"';
      if (!r.event_id.empty()) {
        out += ",\"event_id\":\"";
        append_json_escaped(out, r.event_id);
        out += '"';
      }
      out += '}';
    }
    out += "],\"rejected_count\":" + std::to_string(rejected) + ",\"rejected_by_reason\":{";
    bool first = true;
    for (int i = 0; i < kRejectReasonCount; ++i) {
      if (by_reason[i] == 0) continue;
      if (!first) out += ',';
      first = false;
      out += '"';
      out += reject_reason_label(static_cast<RejectReason>(i));
      out += "\":" + std::to_string(by_reason[i]);
    }
    out += "}}";
    return out;
  }
};

// The query of POST /v1/events: only `deadletter=true|false`, at most once.
// Returns an error message for a 400, empty when the query is fine.
std::string parse_ingest_query(std::string_view query, bool& dead_letter) {
  dead_letter = true;
  bool seen = false;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    const std::size_t eq = param.find('=');
    const std::string_view name = param.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    if (name != "deadletter") {
      std::string shown(name.substr(0, 64));
      return "unknown query parameter '" + shown + "' on /v1/events (the only one is deadletter=true|false)";
    }
    if (seen) return "query parameter 'deadletter' given twice";
    seen = true;
    if (value == "true") {
      dead_letter = true;
    } else if (value == "false") {
      dead_letter = false;
    } else {
      return "query parameter 'deadletter' must be true or false";
    }
  }
  return {};
}

// Collects decoded items of one request into a Submission (events and the
// dead letters to store) and an IngestAnswer (what the client is told).
class BodyCollector final : public DecodeSink {
 public:
  BodyCollector(Submission& sub, std::vector<std::uint8_t>& kinds, IngestAnswer& answer, Metrics& metrics,
                const Decoder& decoder, std::string_view body, BodyFormat format, bool dead_letter)
      : sub_(sub),
        kinds_(kinds),
        answer_(answer),
        metrics_(metrics),
        decoder_(decoder),
        locator_(body, format),
        body_(body),
        dead_letter_(dead_letter) {}

  void on_event(std::size_t index, const Event& event) override {
    ++received_;
    sub_.events.push_back(event);
    sub_.event_index.push_back(static_cast<std::uint32_t>(index));
    kinds_.push_back(event_kind(event));
  }

  // Merged by the sink (identity service) after the commit; refused ones come back in SubmissionResult::refused.
  void on_identify(std::size_t index, const Event& event, std::span<const std::string> aliases) override {
    if (sub_.identifies.size() >= kMaxIdentifiesPerRequest) {
      on_reject(index, RejectReason::kIdentityRefused,
                "more than " + std::to_string(kMaxIdentifiesPerRequest) +
                    " identify events in one request: send the rest in another request");
      return;
    }
    ++received_;
    Identify& item = sub_.identifies.emplace_back();
    item.index = static_cast<std::uint32_t>(index);
    item.customer_id = std::string(event.customer_id.view());
    item.aliases.assign(aliases.begin(), aliases.end());
    item.dead_letter = dead_letter_;
    if (dead_letter_) item.payload = dead_letter_payload(locator_.item(index), kMaxPayloadBytes);
  }

  void on_reject(std::size_t index, RejectReason reason, std::string_view message) override {
    record(index, reason, message, decoder_.rejected_event_id());
    if (!dead_letter_) return;
    if (sub_.rejections.size() >= kMaxDeadLettersPerRequest) {
      ++sub_.dead_letters_dropped;
      return;
    }
    store(index, reason, message, locator_.item(index));
  }

  // The whole body is one rejection; its first bytes are the dead letter's payload.
  void on_body_reject(RejectReason reason, std::string_view message) override {
    answer_.body_failed = true;
    record(0, reason, message, {});
    if (dead_letter_) store(0, reason, message, body_);
  }

  void finish() {
    if (received_ > 0) metrics_.received(Transport::kHttp).Increment(static_cast<double>(received_));
  }

 private:
  void record(std::size_t index, RejectReason reason, std::string_view message, std::string_view event_id) {
    ++received_;
    metrics_.rejected(Transport::kHttp, reason).Increment();
    ++answer_.rejected;
    ++answer_.by_reason[static_cast<std::size_t>(reason)];
    if (answer_.listed.size() < kMaxListedRejections) {
      answer_.listed.push_back(
          {static_cast<std::uint32_t>(index), reason, std::string(message), std::string(event_id)});
    }
  }

  void store(std::size_t index, RejectReason reason, std::string_view message, std::string_view item) {
    Rejection& r = sub_.rejections.emplace_back();
    r.index = static_cast<std::uint32_t>(index);
    r.reason = reason;
    r.message = std::string(message);
    r.payload = dead_letter_payload(item, kMaxPayloadBytes);  // redacted if it has an "auth" key
  }

  Submission& sub_;
  std::vector<std::uint8_t>& kinds_;
  IngestAnswer& answer_;
  Metrics& metrics_;
  const Decoder& decoder_;
  ItemLocator locator_;
  std::string_view body_;
  const bool dead_letter_;
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
    route_ = Route::kOther;
    serve_events_ = false;
    const FrontLimits& limits = settings_->limits;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
    body_limit_ = limits.max_body_bytes;
    parser_->body_limit(body_limit_);
    lowest().expires_after(limits.read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = self()](const boost::system::error_code& ec, std::size_t n) {
                              self->guarded([&] { self->on_header(ec, n); });
                            });
  }

  // `n`: the bytes of the whole header (start line, fields, blank line). Everything that can be decided from
  // the header is decided here, before any body byte is read and before `100 Continue`: framing, route,
  // token and scope, content coding. An answer given here closes the connection when a body was announced
  // (its bytes are never read, so they cannot be taken for the next request).
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
    auto& req = parser_->get();
    version_ = req.version();
    keep_alive_ = req.keep_alive() && !draining_;
    head_ = req.method() == http::verb::head;
    const bool body_follows = !parser_->is_done();

    if (auto problem = framing_problem(req)) {
      started_at_ = std::chrono::steady_clock::now();
      keep_alive_ = false;
      send(std::move(*problem));
      return;
    }
    const std::string_view target = req.target();
    const std::string_view raw_path = target.substr(0, target.find('?'));
    std::optional<Scope> scope;
    std::size_t route_body_limit = 0;  // the route's own, when below the front's
    if (front_ == Front::kMetrics) {
      if (raw_path != "/metrics" && raw_path != "/healthz") {
        answer_early(error_response(404, "no such route: " + std::string(req.method_string()) + " " +
                                             std::string(raw_path) +
                                             " (this listener serves only /metrics and /healthz)"));
        return;
      }
    } else if (raw_path == "/v1/events") {
      route_ = Route::kEvents;
      if (req.method() != http::verb::post) {
        HttpResponse r =
            error_response(405, "method " + std::string(req.method_string()) + " not allowed on /v1/events");
        r.headers.emplace_back("Allow", "POST");
        answer_early(std::move(r));
        return;
      }
      serve_events_ = true;
      route_name_ = "events";
      scope = Scope::kIngest;
      // ?deadletter=false (a replay of stored dead letters: rejected items are answered but not stored
      // again) needs the admin scope; both are decided here, before the body.
      dead_letter_ = true;
      if (const auto question = target.find('?'); question != std::string_view::npos) {
        if (std::string error = parse_ingest_query(target.substr(question + 1), dead_letter_); !error.empty()) {
          answer_early(error_response(400, error));
          return;
        }
      }
      if (!dead_letter_) scope = Scope::kAdmin;
    }
    if (!serve_events_) {
      RouteAccess access = core_.handler.access(req.method_string(), target);
      route_ = access.route;
      route_name_ = access.name;
      if (access.status != 0) {
        answer_early(error_response(access.status, access.error));
        return;
      }
      if (front_ == Front::kHttp && core_.metrics_separate && raw_path == "/metrics") {
        route_ = Route::kOther;
        answer_early(error_response(404, "no such route: " + std::string(req.method_string()) + " " +
                                             std::string(raw_path) + " (metrics are served on the metrics listener)"));
        return;
      }
      scope = access.scope;
      route_body_limit = access.max_body_bytes;
    }
    if (scope) {
      if (auto refusal = check_token(req, *scope)) {
        answer_early(std::move(*refusal));
        return;
      }
      if (route_body_limit != 0 && route_body_limit < body_limit_) {
        const auto length = parser_->content_length();
        if (length && *length > route_body_limit) {
          answer_early(error_response(
              413, "body exceeds " + std::to_string(route_body_limit) + " bytes (the limit of this route)"));
          return;
        }
        body_limit_ = route_body_limit;
        parser_->body_limit(body_limit_);
      }
    } else {
      // Nothing that needs no token takes a body: an unauthenticated client may not make the server hold one.
      const auto length = parser_->content_length();
      if (length && *length > kMaxBodyWithoutToken) {
        answer_early(error_response(
            413, "body exceeds " + std::to_string(kMaxBodyWithoutToken) + " bytes (this route takes no body)"));
        return;
      }
      body_limit_ = std::min<std::uint64_t>(body_limit_, kMaxBodyWithoutToken);
      parser_->body_limit(body_limit_);
    }
    if (body_follows) {
      const std::string coding = content_coding(req);
      if (!coding.empty()) {
        answer_early(error_response(
            415, "unsupported Content-Encoding '" + coding + "': send the body uncompressed (identity)"));
        return;
      }
    }
    const auto expect = req[http::field::expect];
    if (body_follows && beast::iequals(expect, "100-continue")) {
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

  // An answer decided from the header alone. The body, if one was announced, is never read: close after.
  void answer_early(HttpResponse&& response) {
    started_at_ = std::chrono::steady_clock::now();
    if (!parser_->is_done()) keep_alive_ = false;
    send(std::move(response));
  }

  // 401 / 403 when the request's bearer token lacks `scope`; nullopt when it may go on.
  // Each refusal writes an audit line (never the token: its place in the config, or "unknown token").
  std::optional<HttpResponse> check_token(const http::request<http::string_body>& req, Scope scope) {
    const auto authorization = req[http::field::authorization];
    const std::string token = bearer_token(authorization);
    const AuthResult result = core_.tokens()->check(token, scope);
    if (result != AuthResult::kAllowed) {
      log_auth_failure("http", peer_of(lowest().socket()), route_name_,
                       result == AuthResult::kForbidden ? "forbidden" : "unauthorized",
                       core_.tokens()->describe(token));
    }
    switch (result) {
      case AuthResult::kAllowed:
        return std::nullopt;
      case AuthResult::kMissing:
      case AuthResult::kInvalid: {
        HttpResponse r = error_response(401, authorization.empty() ? "missing bearer token" : "invalid token");
        r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"rapport\"");
        return r;
      }
      case AuthResult::kForbidden:
        break;
    }
    HttpResponse r = error_response(403, "the token lacks the " + std::string(scope_name(scope)) + " scope");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"rapport\", error=\"insufficient_scope\"");
    return r;
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
    version_ = parser_ && parser_->is_header_done() ? parser_->get().version() : 11;
    keep_alive_ = false;
    head_ = false;
    const FrontLimits& limits = settings_->limits;
    if (ec == http::error::body_limit) {
      send(error_response(413, "body exceeds " + std::to_string(body_limit_) + " bytes"));
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
    if (serve_events_) {
      ingest(req);
      return;
    }
    const std::string_view target = req.target();
    const auto question = target.find('?');
    HttpRequest request;
    request.method = std::string(req.method_string());
    request.path = std::string(target.substr(0, question));
    if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
    request.content_type = media_type(req[http::field::content_type]);
    request.bearer_token = bearer_token(req[http::field::authorization]);
    request.peer = peer_of(lowest().socket());
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
    const bool dead_letter = dead_letter_;
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
    answer_.clear();
    const std::string_view body = req.body();
    Decoder& decoder = thread_decoder(*settings_);
    BodyCollector collector(*sub, kinds_, answer_, core_.metrics, decoder, body, *format, dead_letter);
    decoder.decode_body(body, *format, wall_ms(), collector);
    collector.finish();

    if (sub->events.empty() && sub->rejections.empty() && sub->identifies.empty()) {
      // Nothing to store: no item at all, or only rejections not to be dead-lettered.
      HttpResponse r = answer_.body_failed ? answer_.body_error() : HttpResponse{};
      if (!answer_.body_failed) r.body = answer_.body(0, 0);
      answer_.clear();
      send(std::move(r));
      return;
    }

    events_ = sub->events.size();
    identifies_ = sub->identifies.size();
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
      answer_.clear();
      HttpResponse r = error_response(503, "storage unavailable: " + result.status.message());
      r.headers.emplace_back("Retry-After", "5");
      send(std::move(r));
      return;
    }
    count_outcomes(core_.metrics, Transport::kHttp, kinds_, result.outcomes);
    for (const Rejection& refused : result.refused)
      core_.metrics.rejected(Transport::kHttp, refused.reason).Increment();
    answer_.add_refused(result.refused);
    // Merged identify items count as accepted.
    const auto accepted =
        static_cast<std::uint64_t>(std::count(result.outcomes.begin(), result.outcomes.end(), Outcome::kAccepted)) +
        (identifies_ - std::min(identifies_, result.refused.size()));
    // A body that failed as a whole was dead-lettered once; it is answered 400.
    HttpResponse r = answer_.body_failed ? answer_.body_error() : HttpResponse{};
    const auto duplicates =
        static_cast<std::uint64_t>(std::count(result.outcomes.begin(), result.outcomes.end(), Outcome::kDuplicate));
    if (!answer_.body_failed) r.body = answer_.body(accepted, duplicates);
    answer_.clear();
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
  std::string_view route_name_ = "other";  // for audit lines
  bool dead_letter_ = true;                // POST /v1/events: store rejections as dead letters
  bool serve_events_ = false;              // the request is POST /v1/events, served here
  std::uint64_t body_limit_ = 0;           // of the request being read
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool head_ = false;

  // The ingest request waiting for its commit.
  IngestAnswer answer_;
  std::vector<std::uint8_t> kinds_;  // per event, for the outcome metrics
  std::size_t events_ = 0;
  std::size_t identifies_ = 0;  // identify items of the request (merged unless refused)
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
