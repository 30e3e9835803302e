// The TCP NDJSON front (DESIGN §5).
//
// Protocol, per connection:
//  - Lines are framed by the LineFramer that `rapportctl import` uses too
//    (ingest/line_framer.h): split on '\n' (a '\r' before it is dropped) and
//    numbered from 1; every line counts, blank ones included (they are
//    accounted for without an error). With tokens
//    configured the first line must be {"auth":"<token>"} (answered with
//    {"auth":"ok"}, or an "unauthorized"/"forbidden" error and a close); that
//    line is not numbered. Without tokens such a first line is accepted too.
//  - Each read becomes one Submission. Once the sink completes it, the server
//    writes {"line":k,"error":"…","reason":"<label>"} for each rejected line
//    of it, then {"ack":N}: every line up to N is accounted for. Answers go
//    out strictly in submission order.
//  - Storage refused a submission (disk full): the server writes
//    {"error":"storage unavailable: …","from_line":a,"to_line":b} and does
//    not acknowledge lines a..b; the connection stays open and later acks
//    cover later lines only (an ack N never vouches for a refused range).
//  - A line over max_line_bytes is rejected (too_large) as soon as that is
//    known, and its bytes are discarded up to the next '\n' unbuffered. A
//    blank line is never an error, whatever its length (as in HTTP NDJSON
//    bodies): an over-long one is judged at its first non-blank byte or at
//    its end, so the answer does not depend on how the bytes were split.
//  - On EOF the remaining lines (an unterminated last line included) are
//    submitted and answered, then the server closes its side.
//  - A later {"auth":…} line is rejected like any bad line, and its token is
//    never kept: the dead-letter payload of any rejected line with an "auth"
//    key (dead_letter_payload) is redacted.
// TLS (the connection is templated on its stream): the first bytes must
// start a TLS handshake, else the client gets {"error":"this port requires
// TLS"} in plaintext and the connection closes. The handshake must finish
// within read_timeout. Closing sends close_notify (bounded by the linger
// time) before the graceful TCP close. A peer that closes without
// close_notify is treated as EOF: a truncated NDJSON object never decodes.
// Backpressure: reading pauses while the sink is full (retried every 5 ms),
// while max_inflight_submissions are unanswered, or while 1 MiB of answers
// wait for a client that does not read them.
#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <exception>
#include <type_traits>
#include <utility>

#include "ingest/line_framer.h"
#include "ingest/net/fronts.h"

namespace rapport::net {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxPendingOutput = 1024 * 1024;
constexpr auto kRetryDelay = std::chrono::milliseconds(5);
constexpr std::string_view kPlaintextRefusal = "{\"error\":\"this port requires TLS\"}\n";
constexpr std::string_view kRedactedAuthLine = "{\"auth\":\"<redacted>\"}";

// Recognises {"auth":"<token>"} (whitespace allowed, no escapes in the token).
bool parse_auth_line(std::string_view line, std::string_view& token) {
  std::size_t i = 0;
  const auto ws = [&] {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
  };
  const auto lit = [&](std::string_view s) {
    ws();
    if (line.substr(i, s.size()) != s) return false;
    i += s.size();
    return true;
  };
  if (!lit("{") || !lit("\"auth\"") || !lit(":") || !lit("\"")) return false;
  const std::size_t start = i;
  while (i < line.size() && line[i] != '"' && line[i] != '\\') ++i;
  if (i >= line.size() || line[i] != '"') return false;
  token = line.substr(start, i - start);
  ++i;
  if (!lit("}")) return false;
  ws();
  return i == line.size();
}

template <bool kTls>
class TcpConnection final : public Connection {
 public:
  using Stream = std::conditional_t<kTls, ssl::stream<tcp::socket>, tcp::socket>;

  TcpConnection(Core& core, Strand strand, tcp::socket socket, std::shared_ptr<ssl::context> tls)
      : Connection(core, Front::kTcp, std::move(strand), std::move(tls)),
        stream_(make_stream(std::move(socket), tls_.get())),
        settings_(core.settings()),
        read_timer_(strand_),
        write_watch_(strand_),
        retry_timer_(strand_) {}

  void drain() override {
    draining_ = true;
    if (!started_ || closed_ || handshaking_) {
      close_now();  // nothing was read yet
      return;
    }
    guarded([&] {
      stop_reading();
      maybe_finish();
    });
  }

 private:
  struct Pending {
    std::uint64_t seq = 0;
    std::uint32_t first_line = 0;
    std::uint32_t last_line = 0;
    bool answered = false;
    std::size_t events = 0;
    std::string text;                 // rejection lines, then the complete answer
    std::vector<std::uint8_t> kinds;  // per event, for the outcome metrics
  };

  std::shared_ptr<TcpConnection> self() { return std::static_pointer_cast<TcpConnection>(shared_from_this()); }

  static Stream make_stream(tcp::socket socket, ssl::context* tls) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls);
    } else {
      return socket;
    }
  }
  tcp::socket& socket() {
    if constexpr (kTls) {
      return stream_.next_layer();
    } else {
      return stream_;
    }
  }

  // Runs f; an exception closes this connection instead of escaping the io thread.
  template <typename F>
  void guarded(F&& f) {
    run_guarded("tcp", std::forward<F>(f), [this] { close_now(); });
  }

  // ---- TLS ----

  void begin() override {
    if constexpr (kTls) {
      // The shared TLS start (fronts.h): first bytes, plaintext refusal, handshake; all within read_timeout.
      handshaking_ = true;
      start_tls(self(), stream_, socket(), read_timer_, settings_->limits.read_timeout, hello_,
                [self = self()](TlsStart result) {
                  self->guarded([&] {
                    self->handshaking_ = false;
                    self->lingering_ = result == TlsStart::kPlaintext;
                    if (self->tls_started(result, self->socket(), self->retry_timer_, kPlaintextRefusal)) {
                      self->maybe_read();
                    }
                  });
                });
    } else {
      maybe_read();
    }
  }

  // close_notify first, without waiting for the peer's (RFC 8446 §6.1 allows it), its write bounded by the
  // linger time; then the graceful TCP close.
  void tls_close() {
    if constexpr (kTls) {
      retry_timer_.expires_after(kLinger);
      retry_timer_.async_wait([self = self()](const boost::system::error_code& ec) {
        if (ec || self->tls_shutdown_done_) return;
        boost::system::error_code ignored;
        self->socket().cancel(ignored);  // completes the async_shutdown below
      });
      SSL_set_shutdown(stream_.native_handle(), SSL_RECEIVED_SHUTDOWN);
      stream_.async_shutdown([self = self()](const boost::system::error_code& /*ec*/) {
        self->guarded([&] {
          self->tls_shutdown_done_ = true;
          self->retry_timer_.cancel();
          if (self->closed_) return;
          linger_close(self, self->socket(), self->retry_timer_, kLinger, [raw = self.get()] { raw->close_now(); });
        });
      });
    }
  }

  // ---- reading ----

  void maybe_read() {
    if (reading_ || closed_ || lingering_ || input_done_ || waiting_submit_ || handshaking_) return;
    settings_ = core_.settings();
    const FrontLimits& limits = settings_->limits;
    if (inflight_ >= std::max<std::size_t>(1, limits.max_inflight_submissions)) return;
    if (out_.size() + writing_buf_.size() > kMaxPendingOutput) return;
    if (!buf_) buf_ = std::make_unique<char[]>(kReadChunk);
    reading_ = true;
    const std::uint64_t gen = ++read_gen_;
    const bool partial = framer_.partial();
    const auto now = std::chrono::steady_clock::now();
    // Time spent not reading (backpressure) does not count against the client's partial line.
    if (partial && last_read_done_ != std::chrono::steady_clock::time_point{}) partial_since_ += now - last_read_done_;
    read_timer_.expires_at(partial ? partial_since_ + limits.read_timeout : now + limits.idle_timeout);
    read_timer_.async_wait([self = self(), gen](const boost::system::error_code& ec) {
      if (!ec) self->guarded([&] { self->on_read_timer(gen); });
    });
    stream_.async_read_some(asio::buffer(buf_.get(), kReadChunk),
                            [self = self()](const boost::system::error_code& ec, std::size_t n) {
                              self->guarded([&] { self->on_read(ec, n); });
                            });
  }

  void on_read_timer(std::uint64_t gen) {
    if (closed_ || !reading_ || gen != read_gen_) return;
    const bool partial = framer_.partial();
    if (!partial && (inflight_ > 0 || writing_)) {
      // Not idle: answers are still on their way. Look again later.
      read_timer_.expires_after(settings_->limits.idle_timeout);
      read_timer_.async_wait([self = self(), gen](const boost::system::error_code& ec) {
        if (!ec) self->guarded([&] { self->on_read_timer(gen); });
      });
      return;
    }
    // Idle, or a line that did not complete in time: answer what was read, then close.
    stop_reading();
  }

  // No more input: wakes a pending read (it completes with EOF) and drops any partial line.
  void stop_reading() {
    no_more_reads_ = true;
    if (reading_) {
      boost::system::error_code ignored;
      socket().shutdown(tcp::socket::shutdown_receive, ignored);
      return;
    }
    input_done_ = true;
    framer_.reset();
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    reading_ = false;
    read_timer_.cancel();
    if (closed_) return;
    settings_ = core_.settings();  // a reload applies from the read that completes next
    const auto now = std::chrono::steady_clock::now();
    last_read_done_ = now;
    if (batch_first_ == 0) batch_received_at_ = now;
    if (no_more_reads_) {
      // Input was stopped (drain, timeout): whatever arrived since is not processed.
      input_done_ = true;
      framer_.reset();
    } else if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
      input_done_ = true;
      framer_.finish();
      process(now);
    } else if (ec) {
      close_now();  // reset, or another socket error: nothing can be delivered any more
      return;
    } else {
      framer_.feed(std::string_view(buf_.get(), n));
      process(now);
    }
    if (received_ > 0) {
      core_.metrics.received(Transport::kTcp).Increment(static_cast<double>(received_));
      received_ = 0;
    }
    finish_batch();
    start_write();  // an auth answer may be waiting
    maybe_read();
    maybe_finish();
  }

  // Handles every line the framer completed from what was fed (and, after finish(), the last one); the framer
  // keeps the partial line. Stops at a refused connection.
  void process(std::chrono::steady_clock::time_point now) {
    const bool was_partial = framer_.partial();
    const std::uint64_t line_ends = framer_.line_ends();
    framer_.set_max_line_bytes(settings_->limits.max_line_bytes);
    Decoder& decoder = thread_decoder(*settings_);
    const std::int64_t now_ms = wall_ms();
    while (!refused_) {
      const auto line = framer_.next();
      if (!line) break;
      handle_line(line->text, decoder, now_ms, line->too_large);
    }
    if (refused_) {
      framer_.reset();
      return;
    }
    // A new partial line started: its read_timeout runs from now.
    if (framer_.partial() && (!was_partial || framer_.line_ends() != line_ends)) partial_since_ = now;
  }

  void handle_line(std::string_view line, Decoder& decoder, std::int64_t now_ms, bool too_long = false) {
    if (!auth_checked_) {
      auth_checked_ = true;
      if (handle_auth(line)) return;
    }
    const std::uint32_t number = ++line_;
    if (batch_first_ == 0) batch_first_ = number;
    batch_last_ = number;
    if (!too_long && is_blank_line(line)) return;
    ++received_;  // counted once per read (one atomic update instead of one per line)
    const std::size_t max_line = settings_->limits.max_line_bytes;
    Submission& sub = submission();
    if (too_long || line.size() > max_line) {
      reject(sub, number, RejectReason::kTooLarge, "line is longer than " + std::to_string(max_line) + " bytes", line);
      return;
    }
    if (std::string_view token; parse_auth_line(line, token)) {
      // Never keep a token: the dead-letter payload is redacted.
      reject(sub, number, RejectReason::kMissingField, "an {\"auth\":…} line is only valid as the first line",
             kRedactedAuthLine);
      return;
    }
    Event& event = sub.events.emplace_back();
    RejectReason reason{};
    std::string_view message;
    if (decoder.decode_line(line, now_ms, event, reason, message)) {
      if (const std::vector<std::string>* aliases = decoder.identify_aliases()) {
        // Not an event: the sink merges it after the commit (a refusal comes back in SubmissionResult::refused).
        Identify& item = sub.identifies.emplace_back();
        item.index = number;
        item.customer_id = std::string(event.customer_id.view());
        item.aliases = *aliases;
        item.payload = dead_letter_payload(line, kMaxPayloadBytes);
        sub.events.pop_back();
        return;
      }
      sub.event_index.push_back(number);
      batch_kinds_.push_back(event_kind(event));
    } else {
      sub.events.pop_back();
      reject(sub, number, reason, message, line);
    }
  }

  // Returns true when the line was consumed by the auth handshake (or the connection is refused).
  bool handle_auth(std::string_view line) {
    const auto tokens = core_.tokens();
    std::string_view token;
    const bool is_auth = parse_auth_line(line, token);
    if (tokens->open()) {
      if (is_auth) out_ += "{\"auth\":\"ok\"}\n";
      return is_auth;
    }
    const char* error = nullptr;
    if (!is_auth) {
      error = "unauthorized: the first line must be {\\\"auth\\\":\\\"<token>\\\"}";
    } else {
      switch (tokens->check(token, Scope::kIngest)) {
        case AuthResult::kAllowed:
          out_ += "{\"auth\":\"ok\"}\n";
          return true;
        case AuthResult::kMissing:
        case AuthResult::kInvalid:
          error = "unauthorized: invalid token";
          break;
        case AuthResult::kForbidden:
          error = "forbidden: the token lacks the ingest scope";
          break;
      }
    }
    log_auth_failure("tcp", peer_of(socket()), "", error, is_auth ? tokens->describe(token) : "no auth line");
    out_ += "{\"error\":\"";
    out_ += error;
    out_ += "\"}\n";
    refused_ = true;
    no_more_reads_ = true;
    input_done_ = true;
    return true;
  }

  Submission& submission() {
    if (!sub_) {
      sub_ = std::make_unique<Submission>();
      sub_->transport = Transport::kTcp;
      sub_->events.reserve(last_batch_events_);
      sub_->event_index.reserve(last_batch_events_);
      batch_kinds_.reserve(last_batch_events_);
    }
    return *sub_;
  }

  void reject(Submission& sub, std::uint32_t number, RejectReason reason, std::string_view message,
              std::string_view line) {
    core_.metrics.rejected(Transport::kTcp, reason).Increment();
    append_reject_line(batch_text_, number, reason, message);
    Rejection& r = sub.rejections.emplace_back();
    r.index = number;
    r.reason = reason;
    r.message = std::string(message);
    r.payload = dead_letter_payload(line, kMaxPayloadBytes);  // redacted if it has an "auth" key
  }

  // {"line":N,"error":"...","reason":"..."}
  static void append_reject_line(std::string& out, std::uint32_t number, RejectReason reason,
                                 std::string_view message) {
    out += "{\"line\":";
    out += std::to_string(number);
    out += ",\"error\":\"";
    append_json_escaped(out, message);
    out += "\",\"reason\":\"";
    out += reject_reason_label(reason);
    out += "\"}\n";
  }

  // ---- submitting ----

  static std::string ack_line(std::uint32_t line) { return "{\"ack\":" + std::to_string(line) + "}\n"; }

  // Hands the lines read so far to the sink (or answers blank-only batches at once).
  void finish_batch() {
    if (batch_first_ == 0 || waiting_submit_) return;
    if (!sub_ || (sub_->events.empty() && sub_->rejections.empty() && sub_->identifies.empty())) {
      Pending& p = pending_.emplace_back();
      p.seq = next_seq_++;
      p.first_line = batch_first_;
      p.last_line = batch_last_;
      p.answered = true;
      p.text = ack_line(batch_last_);
      reset_batch();
      flush();
      return;
    }
    submit();
  }

  void submit() {
    const std::uint64_t seq = next_seq_;
    const std::size_t events = sub_->events.size();
    sub_->received_at = batch_received_at_;
    Anchor<TcpConnection> anchor{core_.shared_from_this(), self()};
    sub_->done = [anchor, seq](SubmissionResult&& result) {
      auto connection = anchor.connection;
      asio::post(connection->strand_, [connection, seq, result = std::move(result)]() mutable {
        connection->guarded([&] { connection->on_done(seq, std::move(result)); });
      });
    };
    if (!core_.sink.try_submit(sub_)) {
      sub_->done = nullptr;  // no completion may keep the Core alive from inside a connection
      if (!core_.sink.accepting()) {
        refuse_batch("not accepting: shutting down");
        return;
      }
      waiting_submit_ = true;
      retry_timer_.expires_after(kRetryDelay);
      retry_timer_.async_wait([self = self()](const boost::system::error_code& ec) {
        if (ec || self->closed_ || self->lingering_) return;
        self->guarded([&] {
          self->waiting_submit_ = false;
          self->submit();
          self->maybe_read();
          self->maybe_finish();
        });
      });
      return;
    }
    Pending& p = pending_.emplace_back();
    p.seq = seq;
    p.first_line = batch_first_;
    p.last_line = batch_last_;
    p.events = events;
    p.text = std::move(batch_text_);
    p.kinds = std::move(batch_kinds_);
    ++next_seq_;
    ++inflight_;
    last_batch_events_ = std::min<std::size_t>(std::max(events, last_batch_events_ / 2), 64 * 1024);
    reset_batch();
  }

  // The batch cannot be submitted at all: report its range, stop reading and close after the answers.
  void refuse_batch(std::string_view why) {
    Pending& p = pending_.emplace_back();
    p.seq = next_seq_++;
    p.answered = true;
    p.text = "{\"error\":\"";
    append_json_escaped(p.text, why);
    p.text +=
        "\",\"from_line\":" + std::to_string(batch_first_) + ",\"to_line\":" + std::to_string(batch_last_) + "}\n";
    core_.metrics.refused(Transport::kTcp).Increment(static_cast<double>(sub_ ? sub_->events.size() : 0));
    reset_batch();
    stop_reading();
    flush();
  }

  void reset_batch() {
    sub_.reset();
    batch_first_ = 0;
    batch_last_ = 0;
    batch_text_.clear();
    batch_kinds_.clear();
  }

  void on_done(std::uint64_t seq, SubmissionResult&& result) {
    if (closed_ || pending_.empty() || seq < pending_.front().seq) return;
    Pending& p = pending_[static_cast<std::size_t>(seq - pending_.front().seq)];
    if (p.answered) return;
    p.answered = true;
    --inflight_;
    if (result.status.ok()) {
      count_outcomes(core_.metrics, Transport::kTcp, p.kinds, result.outcomes);
      // Identify lines whose merge was refused: reported like the batch's other rejected lines, before its ack.
      for (const Rejection& refused : result.refused) {
        core_.metrics.rejected(Transport::kTcp, refused.reason).Increment();
        append_reject_line(p.text, refused.index, refused.reason, refused.message);
      }
      p.text += ack_line(p.last_line);
    } else {
      core_.metrics.refused(Transport::kTcp).Increment(static_cast<double>(p.events));
      p.text = "{\"error\":\"storage unavailable: ";
      append_json_escaped(p.text, result.status.message());
      p.text +=
          "\",\"from_line\":" + std::to_string(p.first_line) + ",\"to_line\":" + std::to_string(p.last_line) + "}\n";
    }
    flush();
    maybe_read();
    maybe_finish();
  }

  // ---- writing ----

  void flush() {
    while (!pending_.empty() && pending_.front().answered) {
      out_ += pending_.front().text;
      pending_.pop_front();
    }
    start_write();
  }

  void start_write() {
    if (writing_ || out_.empty() || closed_ || lingering_) return;
    writing_buf_.swap(out_);
    writing_ = true;
    // The client must keep reading its answers: no progress for idle_timeout closes the connection.
    write_watch_.start(self(), socket(), settings_->limits.idle_timeout, [raw = this] {
      if (raw->writing_) raw->close_now();
    });
    asio::async_write(stream_, asio::buffer(writing_buf_),
                      [self = self()](const boost::system::error_code& ec, std::size_t /*n*/) {
                        self->guarded([&] { self->on_write(ec); });
                      });
  }

  void on_write(const boost::system::error_code& ec) {
    writing_ = false;
    write_watch_.stop();
    if (closed_) return;
    if (ec) {
      close_now();
      return;
    }
    writing_buf_.clear();
    start_write();
    maybe_read();
    maybe_finish();
  }

  // ---- closing ----

  void maybe_finish() {
    if (closed_ || lingering_ || !(input_done_ || refused_)) return;
    if (reading_ || waiting_submit_ || batch_first_ != 0 || !pending_.empty() || writing_ || !out_.empty()) return;
    lingering_ = true;
    read_timer_.cancel();
    write_watch_.stop();
    retry_timer_.cancel();
    if constexpr (kTls) {
      tls_close();
    } else {
      linger_close(shared_from_this(), socket(), retry_timer_, kLinger, [this] { close_now(); });
    }
  }

  void close_now() override {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    read_timer_.cancel();
    write_watch_.stop();
    retry_timer_.cancel();
    socket().close(ignored);
    served_ = line_;
    finished();
  }

  Stream stream_;
  std::shared_ptr<const Settings> settings_;
  asio::steady_timer read_timer_;  // also the TLS start's deadline
  WriteWatch write_watch_;
  asio::steady_timer retry_timer_;  // submit retries, then the linger poll

  std::unique_ptr<char[]> buf_;                                            // one read (kReadChunk bytes)
  LineFramer framer_{settings_->limits.max_line_bytes, kMaxPayloadBytes};  // keeps the partial line
  std::chrono::steady_clock::time_point partial_since_{};                  // when the current partial line started
  std::chrono::steady_clock::time_point last_read_done_{};                 // when the last read completed
  std::uint32_t line_ = 0;                                                 // last line number given
  std::size_t received_ = 0;  // non-blank lines of the current read, not yet counted in the metric
  bool auth_checked_ = false;

  // The batch being built from the current read.
  std::unique_ptr<Submission> sub_;
  std::uint32_t batch_first_ = 0;  // 0: no line yet
  std::uint32_t batch_last_ = 0;
  std::string batch_text_;
  std::vector<std::uint8_t> batch_kinds_;
  std::chrono::steady_clock::time_point batch_received_at_{};
  std::size_t last_batch_events_ = 0;

  std::deque<Pending> pending_;  // submitted or answered, not yet written; in line order
  std::uint64_t next_seq_ = 0;
  std::size_t inflight_ = 0;  // submitted, not yet answered
  bool waiting_submit_ = false;

  std::string out_;          // answers waiting for the current write
  std::string writing_buf_;  // the current write
  bool writing_ = false;

  bool handshaking_ = false;
  bool tls_shutdown_done_ = false;

  std::uint64_t read_gen_ = 0;
  bool reading_ = false;
  bool no_more_reads_ = false;  // drain or timeout: do not read again
  bool input_done_ = false;     // EOF seen or input stopped
  bool refused_ = false;        // auth failed: answer and close
  bool lingering_ = false;
};

}  // namespace

std::shared_ptr<Connection> make_tcp_connection(Core& core, Strand strand, tcp::socket socket,
                                                std::shared_ptr<ssl::context> tls) {
  if (tls) return std::make_shared<TcpConnection<true>>(core, std::move(strand), std::move(socket), std::move(tls));
  return std::make_shared<TcpConnection<false>>(core, std::move(strand), std::move(socket), nullptr);
}

}  // namespace rapport::net
