// rapport-sink: the physical reference for the end-to-end benchmark. A
// loopback TCP server that speaks the ingest side of rapportd's NDJSON
// protocol and does nothing else: per connection it reads, splits lines,
// decodes and validates each with rapport's own Decoder (simdjson; --no-decode
// skips it), and answers {"ack":N} after every read. No queue, no storage, no
// fsync. `rapport-loadgen --mode sink --tcp ADDR` against it measures what
// loopback TCP + decoding allow on this machine, with the same client.
//
//   rapport-sink [--listen 127.0.0.1:0] [--no-decode]
// Prints "listening tcp=HOST:PORT" on stderr once ready; SIGTERM/SIGINT stop it
// and print the totals.
#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "common/clock.h"
#include "ingest/decoder.h"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

std::atomic<std::uint64_t> g_lines{0}, g_bad{0}, g_bytes{0};

// One thread per connection: the benchmark uses a handful.
void serve(tcp::socket socket, bool decode) {
  rapport::Decoder decoder;
  rapport::Event event;
  rapport::RejectReason reason{};
  std::string_view message;
  std::vector<char> buf(1 << 20);
  std::size_t len = 0;
  std::uint64_t line_no = 0, bad = 0, bytes = 0;
  std::string answer;
  boost::system::error_code ec;
  const std::int64_t now = rapport::wall_ms() + 24 * 3600 * 1000;  // far future: no event is "from the future"
  for (;;) {
    const std::size_t n = socket.read_some(asio::buffer(buf.data() + len, buf.size() - len), ec);
    if (ec) break;
    len += n;
    bytes += n;
    std::size_t pos = 0;
    const std::uint64_t first = line_no;
    for (;;) {
      const char* nl = static_cast<const char*>(std::memchr(buf.data() + pos, '\n', len - pos));
      if (nl == nullptr) break;
      const std::string_view line(buf.data() + pos, static_cast<std::size_t>(nl - (buf.data() + pos)));
      pos = static_cast<std::size_t>(nl - buf.data()) + 1;
      ++line_no;
      if (decode && !decoder.decode_line(line, now, event, reason, message)) ++bad;
    }
    std::memmove(buf.data(), buf.data() + pos, len - pos);
    len -= pos;
    if (len == buf.size()) break;  // a line over 1 MiB: give up on this connection
    if (line_no != first) {
      answer = "{\"ack\":" + std::to_string(line_no) + "}\n";
      asio::write(socket, asio::buffer(answer), ec);
      if (ec) break;
    }
  }
  g_lines += line_no;
  g_bad += bad;
  g_bytes += bytes;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  bool decode = true;
  CLI::App app{"rapport-sink — loopback NDJSON sink: read, decode, ack; no storage (benchmark reference)"};
  app.add_option("--listen", listen, "host:port to listen on (default 127.0.0.1:0 = any free port)");
  app.add_flag("!--no-decode", decode, "Only split lines, do not decode them");
  CLI11_PARSE(app, argc, argv);

  asio::io_context io;
  const auto colon = listen.rfind(':');
  tcp::acceptor acceptor(io, {asio::ip::make_address(listen.substr(0, colon)),
                              static_cast<unsigned short>(std::stoi(listen.substr(colon + 1)))});
  const auto ep = acceptor.local_endpoint();
  std::fprintf(stderr, "listening tcp=%s:%u\n", ep.address().to_string().c_str(), ep.port());
  std::fflush(stderr);

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
  });
  std::function<void()> accept = [&] {
    acceptor.async_accept([&](const boost::system::error_code& ec, tcp::socket s) {
      if (ec) return;
      s.set_option(tcp::no_delay(true));
      std::thread(serve, std::move(s), decode).detach();
      accept();
    });
  };
  accept();
  io.run();
  std::fprintf(stderr, "rapport-sink: %llu lines (%llu not valid events), %llu bytes\n",
               static_cast<unsigned long long>(g_lines.load()), static_cast<unsigned long long>(g_bad.load()),
               static_cast<unsigned long long>(g_bytes.load()));
  return 0;
}
