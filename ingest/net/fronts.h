// Private to ingest/net: the state shared by the listeners and the TCP and
// HTTP connections of one NetworkServer.
//
// Ownership and lifetimes (the rules that keep ASan and TSan quiet):
//  - Core is held by a shared_ptr (NetworkServer::Impl and every pending
//    completion handed to the sink or the HttpHandler). Its io_context is its
//    last member, so it is destroyed first, while the registry still exists.
//  - A Connection holds a plain Core&. It is kept alive by the handlers of its
//    pending asynchronous operations (shared_from_this) and by Anchors.
//  - An Anchor (held by a Submission::done or an HttpRespond) keeps both the
//    connection and the Core alive, so a completion arriving after the
//    connection closed, or after the server shut down, is harmless: it posts
//    to the connection's strand and is ignored (or never run).
//  - All state of a connection is touched only on its strand; the registry
//    is guarded by Core::registry_mutex. After shutdown has joined the io
//    threads it closes the remaining sockets directly (no concurrency left).
//  - TLS: each connection of a TLS listener holds the shared_ptr of the
//    ssl::context it was created with (declared before its stream), so a
//    reload that swaps Core's context never frees one still in use.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "ingest/net/server.h"

namespace rapport::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;

namespace ssl = asio::ssl;

// The fronts' names for their stats and routes (short call sites: core_.metrics.rejected(t, r).Increment()).
using Metrics = FrontStats;
using Route = HttpRoute;

// Which listener a connection came from. The metrics listener speaks HTTP
// (counted under the http transport) but serves only /metrics and /healthz.
enum class Front : std::uint8_t { kTcp, kHttp, kMetrics };
inline constexpr std::size_t kFrontCount = 3;
inline Transport transport_of(Front front) { return front == Front::kTcp ? Transport::kTcp : Transport::kHttp; }

// The metrics listener's own connection cap (scrapers are few; the main caps do not apply).
inline constexpr std::size_t kMaxMetricsConnections = 64;

// A TLS record starts with content type 22 (handshake); anything else on a
// TLS port is a plaintext client, answered in plaintext and closed.
inline bool starts_tls_handshake(char first_byte) { return static_cast<unsigned char>(first_byte) == 0x16; }

// A server context for `tls` (tls.cc): TLS >= min_version, no renegotiation,
// the certificate chain and key loaded and checked. Errors name the file.
Result<std::shared_ptr<ssl::context>> make_tls_context(const TlsOptions& tls);

// Limits and decode options, swapped as a whole by set_limits.
struct Settings {
  FrontLimits limits;
  DecodeOptions decode;
  std::uint64_t generation = 0;  // process-wide unique; tells a thread's Decoder to reload its options
};

// Runs f; an exception logs "<transport> connection closed after an internal
// error" and runs close() instead of escaping the io thread.
template <typename F, typename Close>
void run_guarded(std::string_view transport, F&& f, Close&& close) {
  try {
    f();
  } catch (const std::exception& e) {
    log_warn(std::string(transport) + " connection closed after an internal error: " + e.what());
    close();
  } catch (...) {
    log_warn(std::string(transport) + " connection closed after an internal error");
    close();
  }
}

// JSON-escapes `s` into `out` (without quotes).
void append_json_escaped(std::string& out, std::string_view s);

// The calling io thread's Decoder, with the options of `settings`.
Decoder& thread_decoder(const Settings& settings);

// Packs an event's type and channel class for the outcome metrics counted on completion.
inline std::uint8_t event_kind(const Event& e) {
  const auto channel = static_cast<unsigned>(classify_channel(e.channel.view()));
  return static_cast<std::uint8_t>(static_cast<unsigned>(e.type) | (channel << 4));
}
// The fronts own the outcome metrics: accepted / duplicate per type, accepted per channel class.
void count_outcomes(FrontStats& stats, Transport transport, const std::vector<std::uint8_t>& kinds,
                    const std::vector<Outcome>& outcomes);

class Connection;

struct Core : std::enable_shared_from_this<Core> {
  Core(HttpHandler& h, IngestSink& s, FrontStats& m) : handler(h), sink(s), metrics(m) {}
  ~Core();

  std::shared_ptr<const Settings> settings() const {
    std::lock_guard lock(settings_mutex);
    return settings_;
  }
  void set_settings(const FrontLimits& limits, const DecodeOptions& decode);
  std::shared_ptr<const TokenSet> tokens() const {
    std::lock_guard lock(settings_mutex);
    return tokens_;
  }
  void set_tokens(std::shared_ptr<const TokenSet> tokens);
  // The context for new connections of a TLS front; null when `front` speaks plaintext.
  std::shared_ptr<ssl::context> tls_context(Front front) const {
    if (!(front == Front::kHttp ? tls_http : front == Front::kTcp && tls_tcp)) return nullptr;
    std::lock_guard lock(settings_mutex);
    return tls_;
  }
  void set_tls_context(std::shared_ptr<ssl::context> context) {
    std::lock_guard lock(settings_mutex);
    tls_ = std::move(context);
  }

  // Registers a new connection; false once draining (the caller closes it).
  bool add(const std::shared_ptr<Connection>& connection);
  // Forgets a closed connection (once).
  void remove(std::uint64_t id, Front front);
  std::vector<std::shared_ptr<Connection>> snapshot();
  std::size_t open(Front f) const { return open_count[static_cast<std::size_t>(f)].load(); }
  bool draining() const { return draining_flag.load(std::memory_order_acquire); }

  HttpHandler& handler;
  IngestSink& sink;
  FrontStats& metrics;

  mutable std::mutex settings_mutex;
  std::shared_ptr<const Settings> settings_;  // guarded by settings_mutex
  std::shared_ptr<const TokenSet> tokens_;    // guarded by settings_mutex
  std::shared_ptr<ssl::context> tls_;         // guarded by settings_mutex
  // Fixed before the io threads start.
  bool tls_http = false;
  bool tls_tcp = false;
  bool metrics_separate = false;  // the main HTTP listener answers 404 for /metrics

  std::mutex registry_mutex;
  std::condition_variable registry_changed;
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> connections;  // guarded by registry_mutex
  std::uint64_t next_id = 1;                                                 // guarded by registry_mutex
  std::atomic<bool> draining_flag{false};                                    // written under registry_mutex
  std::array<std::atomic<std::size_t>, kFrontCount> open_count{};

  // Last member: destroyed first, destroying any pending handlers (and with
  // them idle connections) while the members above still exist.
  asio::io_context io;
};

// ---- Shared by both fronts: the TLS start, the plaintext refusal, the write deadline ----

// How the TLS start of a connection ended.
enum class TlsStart : std::uint8_t {
  kReady,      // handshake done: speak TLS
  kPlaintext,  // the first byte does not start a TLS handshake: refuse in plaintext (refuse_plaintext)
  kFailed,     // the handshake failed
  kTimedOut,   // not done within the timeout
  kClosed,     // the client closed (or reset) before sending a byte, or the socket was closed meanwhile
};

// Counts a failed TLS start in rapport_tls_handshake_failures_total (kReady and kClosed are not failures).
void count_tls_start(FrontStats& stats, Transport transport, TlsStart result);

// The TLS start of a connection on a TLS listener: read the first bytes; a
// client that speaks plaintext is reported (kPlaintext) without a handshake;
// otherwise the server handshake runs over those bytes. The whole start must
// finish within `timeout`. `done` runs exactly once, on the connection's
// strand (socket, stream and timer are bound to it); `owner` keeps them alive.
template <typename SslStream>
void start_tls(std::shared_ptr<Connection> owner, SslStream& stream, tcp::socket& socket, asio::steady_timer& timer,
               std::chrono::milliseconds timeout, std::array<char, 2048>& hello, std::function<void(TlsStart)> done) {
  struct State {
    bool finished = false;
    bool timed_out = false;
    std::function<void(TlsStart)> done;
  };
  auto state = std::make_shared<State>();
  state->done = std::move(done);
  const auto finish = [state, &timer](TlsStart result) {
    if (state->finished) return;
    state->finished = true;
    timer.cancel();
    state->done(state->timed_out && result != TlsStart::kReady ? TlsStart::kTimedOut : result);
  };
  timer.expires_after(timeout);
  timer.async_wait([owner, state, &socket](const boost::system::error_code& ec) {
    if (ec || state->finished) return;
    state->timed_out = true;
    boost::system::error_code ignored;
    socket.cancel(ignored);  // the pending read or handshake completes with operation_aborted
  });
  socket.async_read_some(asio::buffer(hello), [owner, state, finish, &stream, &socket, &hello](
                                                  const boost::system::error_code& ec, std::size_t n) {
    if (state->finished) return;
    if (ec || n == 0 || state->timed_out || !socket.is_open()) {
      finish(TlsStart::kClosed);  // kTimedOut when the timer fired
      return;
    }
    if (!starts_tls_handshake(hello[0])) {
      finish(TlsStart::kPlaintext);
      return;
    }
    // Variadic: Beast's ssl_stream checks this handler against void(error_code) but calls it with
    // (error_code, size_t); Asio's ssl::stream calls it with (error_code, size_t).
    stream.async_handshake(ssl::stream_base::server, asio::buffer(hello.data(), n),
                           [owner, state, finish, &socket](const boost::system::error_code& e, auto... /*used*/) {
                             if (!socket.is_open()) {
                               finish(TlsStart::kClosed);
                             } else {
                               finish(e ? TlsStart::kFailed : TlsStart::kReady);
                             }
                           });
  });
}

// Answers a plaintext client of a TLS port with `text` in plaintext (`text`
// must outlive the write: a constant or a member of owner), then closes
// gracefully (linger_close with `linger`); `closed` runs on the strand once
// the socket is closed.
void refuse_plaintext(std::shared_ptr<Connection> owner, tcp::socket& socket, asio::steady_timer& timer,
                      std::string_view text, std::chrono::milliseconds linger, std::function<void()> closed);

// The write deadline of a connection. A write fails only when nothing moves
// for `timeout`: the peer acknowledges no byte of ours (TCP_INFO
// bytes_acked, so kernel buffers and TLS records count alike) and no write
// completes. A client that reads slowly but steadily keeps its connection;
// one that stops reading is cut off between `timeout` and 1.25 x `timeout`
// after its last progress. Used on the connection's strand only.
class WriteWatch {
 public:
  explicit WriteWatch(const Strand& strand) : timer_(strand) {}
  // A write starts: from now on `stalled` runs (once) if nothing moves for `timeout`. `owner` holds this watch.
  void start(std::shared_ptr<Connection> owner, tcp::socket& socket, std::chrono::milliseconds timeout,
             std::function<void()> stalled);
  // The write completed, or the connection closes.
  void stop();

 private:
  void arm(std::shared_ptr<Connection> owner, tcp::socket& socket);
  void tick(std::shared_ptr<Connection> owner, tcp::socket& socket);

  asio::steady_timer timer_;
  std::uint64_t generation_ = 0;  // a tick of an earlier write is ignored
  bool active_ = false;
  std::chrono::milliseconds timeout_{0};
  std::uint64_t acked_ = 0;  // the peer's acknowledged bytes at the last progress
  std::chrono::steady_clock::time_point last_progress_{};
  std::function<void()> stalled_;
};

// How long a graceful close waits for the peer to take our last bytes (linger_close, close_notify).
inline constexpr std::chrono::milliseconds kLinger{2000};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `tls`: the context of a TLS listener (null: plaintext); held here so it outlives the front's SSL stream.
  Connection(Core& core, Front front, Strand strand, std::shared_ptr<ssl::context> tls)
      : core_(core), front_(front), transport_(transport_of(front)), strand_(std::move(strand)), tls_(std::move(tls)) {}
  virtual ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // On the strand: closes at once when draining already, else begins the front's protocol (begin()).
  void start();
  // On the strand: stop reading; finish what was submitted, write the answers, then close.
  virtual void drain() = 0;
  // Close the socket now. Only called when no io thread runs.
  void force_close() { close_now(); }
  Strand& strand() { return strand_; }

  std::uint64_t id() const { return id_; }
  Front front() const { return front_; }
  Transport transport() const { return transport_; }
  // Called by Core::add under the registry mutex, before the connection starts.
  void set_registered(std::uint64_t id) {
    id_ = id;
    registered_ = true;
  }
  // The client's address ("127.0.0.1:40122"), for the debug log; set by the listener before start.
  void set_peer(std::string peer) { peer_ = std::move(peer); }
  void log_opened() const;  // debug: "<transport> connection <id> opened from <peer>"

 protected:
  // The front's protocol: on a TLS listener the TLS start (start_tls) first, ending in tls_started().
  virtual void begin() = 0;
  // Closes the socket at once; idempotent; ends in finished().
  virtual void close_now() = 0;

  // The end of the TLS start: counts a failure; answers a plaintext client with `refusal` (which must outlive the
  // write) and closes gracefully; closes on any other failure or when draining. True: the front may go on in TLS.
  bool tls_started(TlsStart result, tcp::socket& socket, asio::steady_timer& timer, std::string_view refusal);

  // Deregisters (once) and logs the close (debug); call when the socket is closed for good.
  void finished() {
    if (registered_) {
      registered_ = false;
      log_closed();
      core_.remove(id_, front_);
    }
  }
  void log_closed() const;  // debug: "<transport> connection <id> from <peer> closed after <ms> ms, <n> lines|requests"

  Core& core_;
  const Front front_;
  const Transport transport_;
  Strand strand_;
  std::shared_ptr<ssl::context> tls_;  // before the fronts' streams: outlives their SSL objects
  std::array<char, 2048> hello_{};     // TLS: the first bytes, handed to the handshake
  std::uint64_t id_ = 0;
  bool registered_ = false;
  bool started_ = false;
  bool draining_ = false;
  bool closed_ = false;
  std::string peer_;
  const std::chrono::steady_clock::time_point opened_ = std::chrono::steady_clock::now();
  std::uint64_t served_ = 0;  // lines (TCP) or requests (HTTP) answered; kept by the front
};

// Keeps a connection and the Core alive inside a completion handed to other
// threads. Members are destroyed in reverse order: the connection first.
template <typename C>
struct Anchor {
  std::shared_ptr<Core> core;
  std::shared_ptr<C> connection;
};

// Graceful close: shut down the send side (FIN after every queued byte), then
// wait until the peer has acknowledged all our bytes (SIOCOUTQ == 0), the
// peer closes, or `linger` passes; then close. Avoids the RST that a close
// with unread input sends, which would destroy responses not yet delivered.
// `done` runs on the strand after the socket is closed.
void linger_close(std::shared_ptr<Connection> owner, tcp::socket& socket, asio::steady_timer& timer,
                  std::chrono::milliseconds linger, std::function<void()> done);

// The peer's address "ip:port" ("[ip6]:port"), or "unknown" once the socket is gone; for audit lines.
std::string peer_of(const tcp::socket& socket);

// Factories (tcp_front.cc, http_front.cc). `socket` is bound to `strand`, a
// new strand. A non-null `tls` makes a TLS connection (handshake first).
// `front` is Front::kHttp or Front::kMetrics for HTTP.
std::shared_ptr<Connection> make_tcp_connection(Core& core, Strand strand, tcp::socket socket,
                                                std::shared_ptr<ssl::context> tls);
std::shared_ptr<Connection> make_http_connection(Core& core, Strand strand, tcp::socket socket, Front front,
                                                 std::shared_ptr<ssl::context> tls);

}  // namespace rapport::net
