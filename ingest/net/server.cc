// NetworkServer: listeners, io threads, the connection registry and the
// draining shutdown. The fronts themselves are in tcp_front.cc and
// http_front.cc; what they share is in fronts.h.
#include "ingest/net/server.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <optional>
#include <thread>
#include <utility>

#include "common/clock.h"
#include "common/json_writer.h"
#include "common/log.h"
#include "ingest/net/fronts.h"
#include "ingest/net/tcp_progress.h"

namespace rapport {
namespace net {

namespace {

std::atomic<std::uint64_t> g_settings_generation{1};

const std::shared_ptr<const TokenSet>& open_tokens() {
  static const auto* tokens = new std::shared_ptr<const TokenSet>(std::make_shared<const TokenSet>());
  return *tokens;
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view s) { JsonWriter::append_escaped(out, s); }

Decoder& thread_decoder(const Settings& settings) {
  thread_local std::unique_ptr<Decoder> decoder;
  thread_local std::uint64_t generation = 0;
  if (!decoder) {
    decoder = std::make_unique<Decoder>(settings.decode);
    generation = settings.generation;
  } else if (generation != settings.generation) {
    decoder->set_options(settings.decode);
    generation = settings.generation;
  }
  return *decoder;
}

void count_outcomes(FrontStats& stats, Transport transport, const std::vector<std::uint8_t>& kinds,
                    const std::vector<Outcome>& outcomes) {
  const std::size_t n = std::min(kinds.size(), outcomes.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto type = static_cast<EventType>(kinds[i] & 0x0f);
    if (outcomes[i] == Outcome::kAccepted) {
      stats.accepted(transport, type).Increment();
      stats.by_channel(static_cast<Channel>(kinds[i] >> 4)).Increment();
    } else {
      stats.duplicate(transport, type).Increment();
    }
  }
}

void count_tls_start(FrontStats& stats, Transport transport, TlsStart result) {
  switch (result) {
    case TlsStart::kPlaintext:
      stats.tls_handshake_failures(transport, TlsFailure::kPlaintext).Increment();
      break;
    case TlsStart::kFailed:
      stats.tls_handshake_failures(transport, TlsFailure::kError).Increment();
      break;
    case TlsStart::kTimedOut:
      stats.tls_handshake_failures(transport, TlsFailure::kTimeout).Increment();
      break;
    case TlsStart::kReady:
    case TlsStart::kClosed:
      break;
  }
}

void refuse_plaintext(std::shared_ptr<Connection> owner, tcp::socket& socket, asio::steady_timer& timer,
                      std::string_view text, std::chrono::milliseconds linger, std::function<void()> closed) {
  asio::async_write(socket, asio::buffer(text.data(), text.size()),
                    [owner = std::move(owner), &socket, &timer, linger, closed = std::move(closed)](
                        const boost::system::error_code& /*ec*/, std::size_t /*n*/) mutable {
                      if (!socket.is_open()) {
                        closed();
                        return;
                      }
                      linger_close(std::move(owner), socket, timer, linger, std::move(closed));
                    });
}

void WriteWatch::start(std::shared_ptr<Connection> owner, tcp::socket& socket, std::chrono::milliseconds timeout,
                       std::function<void()> stalled) {
  ++generation_;
  active_ = true;
  timeout_ = std::max(timeout, std::chrono::milliseconds(1));
  stalled_ = std::move(stalled);
  last_progress_ = std::chrono::steady_clock::now();
  if (!tcp_bytes_acked(socket.native_handle(), acked_)) acked_ = 0;
  arm(std::move(owner), socket);
}

void WriteWatch::stop() {
  if (!active_) return;
  active_ = false;
  ++generation_;
  stalled_ = nullptr;
  timer_.cancel();
}

void WriteWatch::arm(std::shared_ptr<Connection> owner, tcp::socket& socket) {
  // Ticks four times per timeout: a stall is noticed at most a quarter of the timeout late.
  const auto period = std::max(timeout_ / 4, std::chrono::milliseconds(1));
  timer_.expires_at(std::min(std::chrono::steady_clock::now() + period, last_progress_ + timeout_));
  timer_.async_wait(
      [this, owner = std::move(owner), &socket, generation = generation_](const boost::system::error_code& ec) mutable {
        if (ec || generation != generation_ || !active_) return;
        tick(std::move(owner), socket);
      });
}

void WriteWatch::tick(std::shared_ptr<Connection> owner, tcp::socket& socket) {
  const auto now = std::chrono::steady_clock::now();
  if (std::uint64_t acked = 0; tcp_bytes_acked(socket.native_handle(), acked) && acked != acked_) {
    acked_ = acked;
    last_progress_ = now;
  }
  if (now - last_progress_ >= timeout_) {
    auto stalled = std::move(stalled_);
    stop();
    if (stalled) stalled();
    return;
  }
  arm(std::move(owner), socket);
}

namespace {

const char* served_unit(Transport transport) { return transport == Transport::kTcp ? " lines" : " requests"; }

}  // namespace

void Connection::start() {
  if (draining_ || closed_) {
    close_now();
    return;
  }
  started_ = true;
  run_guarded(
      transport_name(transport_), [&] { begin(); }, [&] { close_now(); });
}

bool Connection::tls_started(TlsStart result, tcp::socket& socket, asio::steady_timer& timer,
                             std::string_view refusal) {
  if (closed_) return false;  // drained or closed meanwhile: not a failure
  count_tls_start(core_.metrics, transport_, result);
  if (result == TlsStart::kPlaintext) {
    refuse_plaintext(shared_from_this(), socket, timer, refusal, kLinger, [this] { close_now(); });
    return false;
  }
  if (result != TlsStart::kReady || draining_) {
    close_now();
    return false;
  }
  return true;
}

void Connection::log_opened() const {
  log_debug(std::string(transport_name(transport_)) + " connection " + std::to_string(id_) + " opened from " + peer_ +
            (front_ == Front::kMetrics ? " (metrics listener)" : ""));
}

void Connection::log_closed() const {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - opened_).count();
  log_debug(std::string(transport_name(transport_)) + " connection " + std::to_string(id_) + " from " + peer_ +
            " closed after " + std::to_string(ms) + " ms, " + std::to_string(served_) + served_unit(transport_));
}

Core::~Core() = default;

void Core::set_settings(const FrontLimits& limits, const DecodeOptions& decode) {
  auto s = std::make_shared<Settings>();
  s->limits = limits;
  s->decode = decode;
  s->generation = g_settings_generation.fetch_add(1);
  std::lock_guard lock(settings_mutex);
  settings_ = std::move(s);
}

void Core::set_tokens(std::shared_ptr<const TokenSet> tokens) {
  if (!tokens) tokens = open_tokens();
  std::lock_guard lock(settings_mutex);
  tokens_ = std::move(tokens);
}

bool Core::add(const std::shared_ptr<Connection>& connection) {
  {
    std::lock_guard lock(registry_mutex);
    if (draining_flag.load()) return false;
    connection->set_registered(next_id++);
    connections.emplace(connection->id(), connection);
  }
  open_count[static_cast<std::size_t>(connection->front())].fetch_add(1);
  metrics.connections_open(connection->transport()).Increment();
  return true;
}

void Core::remove(std::uint64_t id, Front front) {
  open_count[static_cast<std::size_t>(front)].fetch_sub(1);
  metrics.connections_open(transport_of(front)).Decrement();
  std::lock_guard lock(registry_mutex);
  connections.erase(id);
  registry_changed.notify_all();
}

std::vector<std::shared_ptr<Connection>> Core::snapshot() {
  std::vector<std::shared_ptr<Connection>> out;
  std::lock_guard lock(registry_mutex);
  out.reserve(connections.size());
  for (auto& [id, weak] : connections) {
    if (auto c = weak.lock()) out.push_back(std::move(c));
  }
  return out;
}

void linger_close(std::shared_ptr<Connection> owner, tcp::socket& socket, asio::steady_timer& timer,
                  std::chrono::milliseconds linger, std::function<void()> done) {
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
  const auto deadline = std::chrono::steady_clock::now() + linger;
  // Polls every few milliseconds; a closing connection is rare and short-lived.
  struct Poll {
    std::shared_ptr<Connection> owner;
    tcp::socket* socket;
    asio::steady_timer* timer;
    std::chrono::steady_clock::time_point deadline;
    std::function<void()> done;
    void operator()(const boost::system::error_code& /*ec*/ = {}) {
      int unsent = 0;
      const bool open = socket->is_open();
      if (open && ::ioctl(socket->native_handle(), SIOCOUTQ, &unsent) == 0 && unsent > 0 &&
          std::chrono::steady_clock::now() < deadline) {
        timer->expires_after(std::chrono::milliseconds(5));
        timer->async_wait(std::move(*this));
        return;
      }
      boost::system::error_code ignored;
      socket->close(ignored);
      if (done) done();
    }
  };
  Poll poll{std::move(owner), &socket, &timer, deadline, std::move(done)};
  poll();
}

namespace {

struct ParsedAddress {
  std::string host;
  std::uint16_t port = 0;
};

Result<ParsedAddress> split_host_port(const std::string& address) {
  ParsedAddress out;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return Status::Error("invalid listen address '" + address + "': expected [ipv6]:port");
    }
    out.host = address.substr(1, close - 1);
    port = std::string_view(address).substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) {
      return Status::Error("invalid listen address '" + address + "': expected host:port");
    }
    out.host = address.substr(0, colon);
    port = std::string_view(address).substr(colon + 1);
    if (out.host.find(':') != std::string::npos) {
      return Status::Error("invalid listen address '" + address + "': write IPv6 addresses as [addr]:port");
    }
  }
  unsigned value = 0;
  const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value > 65535) {
    return Status::Error("invalid listen address '" + address + "': port must be 0..65535");
  }
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

Result<tcp::endpoint> resolve(const std::string& address) {
  auto parsed = split_host_port(address);
  if (!parsed.ok()) return parsed.status();
  const std::string& host = parsed->host;
  if (host.empty() || host == "*") return tcp::endpoint(tcp::v4(), parsed->port);
  if (host == "localhost") return tcp::endpoint(asio::ip::address_v4::loopback(), parsed->port);
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(ip, parsed->port);
  asio::io_context io;
  tcp::resolver resolver(io);
  const auto results = resolver.resolve(host, std::to_string(parsed->port), ec);
  if (ec || results.empty()) {
    return Status::Error("cannot resolve listen address '" + address +
                         "': " + (ec ? ec.message() : std::string("no addresses")));
  }
  return results.begin()->endpoint();
}

std::string endpoint_string(const tcp::endpoint& e) {
  const auto a = e.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(e.port());
}

const char* front_name(Front front) {
  switch (front) {
    case Front::kTcp:
      return "tcp";
    case Front::kHttp:
      return "http";
    case Front::kMetrics:
      return "metrics";
  }
  return "?";
}

// Accepts connections of one front and hands them to it.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(Core& core, Front front)
      : core_(core), front_(front), strand_(asio::make_strand(core.io)), acceptor_(strand_), timer_(strand_) {}

  Status open(const std::string& address, int fd) {
    boost::system::error_code ec;
    const char* what = front_name(front_);
    if (fd >= 0) {
      sockaddr_storage storage{};
      socklen_t length = sizeof storage;
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
        return Status::Error(std::string("cannot adopt the ") + what + " socket (fd " + std::to_string(fd) +
                             "): " + std::strerror(errno));
      }
      acceptor_.assign(storage.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
      if (ec) {
        return Status::Error(std::string("cannot adopt the ") + what + " socket (fd " + std::to_string(fd) +
                             "): " + ec.message());
      }
    } else {
      auto endpoint = resolve(address);
      if (!endpoint.ok()) return endpoint.status();
      const auto fail = [&](const boost::system::error_code& e) {
        return Status::Error("cannot listen on " + address + ": " + e.message());
      };
      acceptor_.open(endpoint->protocol(), ec);
      if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) acceptor_.bind(*endpoint, ec);
      if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        return fail(ec);
      }
    }
    const auto local = acceptor_.local_endpoint(ec);
    if (ec) return Status::Error(std::string("cannot read the ") + what + " listener's address: " + ec.message());
    endpoint_ = endpoint_string(local);
    return Status::Ok();
  }

  const std::string& endpoint() const { return endpoint_; }

  void start() {
    asio::post(strand_, [self = shared_from_this()] { self->accept(); });
  }
  void stop() {
    asio::post(strand_, [self = shared_from_this()] {
      boost::system::error_code ec;
      self->timer_.cancel();
      self->acceptor_.close(ec);
    });
  }
  // Only when no io thread runs.
  void close_now() {
    boost::system::error_code ec;
    acceptor_.close(ec);
  }

 private:
  void accept() {
    if (!acceptor_.is_open()) return;
    auto strand = asio::make_strand(core_.io);
    acceptor_.async_accept(
        strand, [self = shared_from_this(), strand](const boost::system::error_code& ec, tcp::socket socket) mutable {
          self->on_accept(ec, std::move(strand), std::move(socket));
        });
  }

  void on_accept(const boost::system::error_code& ec, Strand strand, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // EMFILE and friends: back off instead of spinning.
      log_warn("accept failed: " + ec.message());
      timer_.expires_after(std::chrono::milliseconds(50));
      timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
        if (!e) self->accept();
      });
      return;
    }
    try {
      const auto settings = core_.settings();
      const std::size_t cap = front_ == Front::kMetrics ? kMaxMetricsConnections : settings->limits.max_connections;
      boost::system::error_code ignored;
      if (core_.draining()) {
        socket.close(ignored);
      } else if (core_.open(front_) >= cap) {
        core_.metrics.connections_refused(transport_of(front_)).Increment();
        socket.close(ignored);
      } else {
        socket.set_option(tcp::no_delay(true), ignored);
        auto tls = core_.tls_context(front_);
        const auto peer = socket.remote_endpoint(ignored);
        auto connection = front_ == Front::kTcp
                              ? make_tcp_connection(core_, strand, std::move(socket), std::move(tls))
                              : make_http_connection(core_, strand, std::move(socket), front_, std::move(tls));
        connection->set_peer(endpoint_string(peer));
        if (core_.add(connection)) {
          connection->log_opened();
          asio::post(strand, [connection] { connection->start(); });
        } else {
          connection->force_close();
        }
      }
    } catch (const std::exception& e) {
      log_warn(std::string("accept: ") + e.what());
    }
    accept();
  }

  Core& core_;
  const Front front_;
  Strand strand_;
  tcp::acceptor acceptor_;
  asio::steady_timer timer_;
  std::string endpoint_;
};

}  // namespace

std::string peer_of(const tcp::socket& socket) {
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  return ec ? std::string("unknown") : endpoint_string(peer);
}

}  // namespace net

struct NetworkServer::Impl {
  std::shared_ptr<net::Core> core;
  std::shared_ptr<net::Listener> http;
  std::shared_ptr<net::Listener> tcp;
  std::shared_ptr<net::Listener> metrics;
  std::string http_endpoint, tcp_endpoint, metrics_endpoint;
  std::optional<net::asio::executor_work_guard<net::asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::mutex shutdown_mutex;
  bool stopped = false;  // guarded by shutdown_mutex

  void run_thread() {
    for (;;) {
      try {
        core->io.run();
        return;
      } catch (const std::exception& e) {
        log_warn(std::string("unexpected exception on an io thread: ") + e.what());
      } catch (...) {
        log_warn("unexpected exception on an io thread");
      }
    }
  }
};

NetworkServer::NetworkServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NetworkServer::~NetworkServer() { shutdown(std::chrono::milliseconds(0)); }

Result<std::unique_ptr<NetworkServer>> NetworkServer::start(const ServerOptions& options, HttpHandler& handler,
                                                            IngestSink& sink, FrontStats& stats,
                                                            std::shared_ptr<const TokenSet> tokens) {
  auto impl = std::make_unique<Impl>();
  impl->core = std::make_shared<net::Core>(handler, sink, stats);
  impl->core->set_settings(options.limits, options.decode);
  impl->core->set_tokens(std::move(tokens));
  if (options.tls.enabled()) {
    auto context = net::make_tls_context(options.tls);
    if (!context.ok()) return context.status();
    impl->core->set_tls_context(std::move(context.value()));
    impl->core->tls_http = options.tls.http;
    impl->core->tls_tcp = options.tls.tcp;
  }
  try {
    if (!options.http_address.empty() || options.http_fd >= 0) {
      impl->http = std::make_shared<net::Listener>(*impl->core, net::Front::kHttp);
      if (Status s = impl->http->open(options.http_address, options.http_fd); !s.ok()) return s;
      impl->http_endpoint = impl->http->endpoint();
    }
    if (!options.tcp_address.empty() || options.tcp_fd >= 0) {
      impl->tcp = std::make_shared<net::Listener>(*impl->core, net::Front::kTcp);
      if (Status s = impl->tcp->open(options.tcp_address, options.tcp_fd); !s.ok()) return s;
      impl->tcp_endpoint = impl->tcp->endpoint();
    }
    if (!options.metrics_address.empty() || options.metrics_fd >= 0) {
      impl->metrics = std::make_shared<net::Listener>(*impl->core, net::Front::kMetrics);
      if (Status s = impl->metrics->open(options.metrics_address, options.metrics_fd); !s.ok()) return s;
      impl->metrics_endpoint = impl->metrics->endpoint();
      impl->core->metrics_separate = true;
    }
    impl->work.emplace(impl->core->io.get_executor());
    const unsigned n = options.io_threads > 0 ? static_cast<unsigned>(options.io_threads)
                                              : std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < n; ++i) impl->threads.emplace_back([raw = impl.get()] { raw->run_thread(); });
  } catch (const std::exception& e) {
    // Thread creation or an allocation failed; the destructor below cleans up what started.
    auto server = std::unique_ptr<NetworkServer>(new NetworkServer(std::move(impl)));
    server->shutdown(std::chrono::milliseconds(0));
    return Status::Error(std::string("cannot start the network server: ") + e.what());
  }
  if (impl->http) impl->http->start();
  if (impl->tcp) impl->tcp->start();
  if (impl->metrics) impl->metrics->start();
  return std::unique_ptr<NetworkServer>(new NetworkServer(std::move(impl)));
}

std::string NetworkServer::http_endpoint() const { return impl_->http_endpoint; }
std::string NetworkServer::tcp_endpoint() const { return impl_->tcp_endpoint; }
std::string NetworkServer::metrics_endpoint() const { return impl_->metrics_endpoint; }

void NetworkServer::set_tokens(std::shared_ptr<const TokenSet> tokens) { impl_->core->set_tokens(std::move(tokens)); }

void NetworkServer::set_limits(const FrontLimits& limits, const DecodeOptions& decode) {
  impl_->core->set_settings(limits, decode);
}

Status NetworkServer::reload_tls(const TlsOptions& tls) {
  net::Core& core = *impl_->core;
  if (tls.http != core.tls_http || tls.tcp != core.tls_tcp) {
    return Status::Error("tls.http and tls.tcp change only on restart");
  }
  if (!tls.enabled()) return Status::Ok();
  auto context = net::make_tls_context(tls);
  if (!context.ok()) return context.status();
  core.set_tls_context(std::move(context.value()));
  return Status::Ok();
}

void NetworkServer::shutdown(std::chrono::milliseconds deadline) {
  std::lock_guard guard(impl_->shutdown_mutex);
  if (impl_->stopped) return;
  impl_->stopped = true;
  net::Core& core = *impl_->core;
  const auto until = std::chrono::steady_clock::now() + deadline;

  // 1. No new connections: close the listeners, refuse any accept in flight.
  {
    std::lock_guard lock(core.registry_mutex);
    core.draining_flag.store(true, std::memory_order_release);
  }
  if (impl_->http) impl_->http->stop();
  if (impl_->tcp) impl_->tcp->stop();
  if (impl_->metrics) impl_->metrics->stop();

  // 2. Every connection stops reading and finishes what it already submitted.
  if (!impl_->threads.empty()) {
    for (auto& c : core.snapshot()) {
      net::asio::post(c->strand(), [c] { c->drain(); });
    }
    // 3. Wait (at most until the deadline) for them to write their answers and close.
    std::unique_lock lock(core.registry_mutex);
    core.registry_changed.wait_until(lock, until, [&] { return core.connections.empty(); });
  }

  // 4. Stop the io threads, then close whatever is left (no io thread runs any more).
  impl_->work.reset();
  core.io.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  if (impl_->http) impl_->http->close_now();
  if (impl_->tcp) impl_->tcp->close_now();
  if (impl_->metrics) impl_->metrics->close_now();
  for (auto& c : core.snapshot()) c->force_close();
}

}  // namespace rapport
