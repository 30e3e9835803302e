// A webhook receiver for tests: a plain-socket HTTP/1.1 server on 127.0.0.1 (port 0) that records
// every request (headers, body) and answers with the status the test sets (200 by default, e.g. 503 for an
// outage). One request per connection. Waits are for conditions with generous deadlines, never fixed sleeps.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace rapport::test {

class WebhookReceiver {
 public:
  struct Request {
    std::string method, target;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
    int answered = 0;  // the status it was answered with
  };

  WebhookReceiver() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 64) != 0) {
      throw std::runtime_error("bind/listen");
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~WebhookReceiver() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  // The status every following request is answered with (and a Location header when `location` is not empty,
  // e.g. to answer 307 like a Kafka group member redirecting to the owner).
  void answer(int status, const std::string& location = "") {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = status;
    location_ = location;
  }

  std::vector<Request> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }
  // Waits until pred(requests) holds or `deadline` passes; returns whether it held.
  bool wait_for(const std::function<bool(const std::vector<Request>&)>& pred,
                std::chrono::seconds deadline = std::chrono::seconds(60)) const {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, deadline, [&] { return pred(requests_); });
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      handle(c);
      ::close(c);
    }
  }

  static bool read_more(int c, std::string& buf) {
    pollfd p{c, POLLIN, 0};
    if (::poll(&p, 1, 10'000) <= 0) return false;
    char chunk[4096];
    const ssize_t n = ::recv(c, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  void handle(int c) {
    std::string buf;
    std::size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (!read_more(c, buf)) return;
    }
    Request r;
    std::size_t line_end = buf.find("\r\n");
    const std::string first = buf.substr(0, line_end);
    r.method = first.substr(0, first.find(' '));
    r.target = first.substr(first.find(' ') + 1, first.rfind(' ') - first.find(' ') - 1);
    for (std::size_t pos = line_end + 2; pos < end;) {
      const std::size_t next = buf.find("\r\n", pos);
      const std::string line = buf.substr(pos, next - pos);
      const std::size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
      pos = next + 2;
    }
    const std::size_t length =
        r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : std::size_t{0};
    while (buf.size() < end + 4 + length) {
      if (!read_more(c, buf)) return;
    }
    r.body = buf.substr(end + 4, length);
    std::string location;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      r.answered = status_;
      location = location_;
    }
    const std::string response = "HTTP/1.1 " + std::to_string(r.answered) + " X\r\n" +
                                 (location.empty() ? "" : "Location: " + location + "\r\n") +
                                 "Content-Length: 0\r\nConnection: close\r\n\r\n";
    ::send(c, response.data(), response.size(), MSG_NOSIGNAL);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(std::move(r));
    }
    changed_.notify_all();
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  int status_ = 200;      // mutex_
  std::string location_;  // mutex_
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<Request> requests_;
  std::thread thread_;
};

}  // namespace rapport::test
