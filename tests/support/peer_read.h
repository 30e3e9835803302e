// A deterministic split of what a test sends over loopback TCP: after
// sending one part, wait_until_peer_read(fd) returns once the server process
// has read every byte sent so far (none left unacknowledged in this socket's
// send queue, none left unread in the server-side socket's receive queue, as
// /proc/net/tcp shows it). The next part then necessarily arrives in a later
// read of the server, however slow the machine: no sleep that hopes it was fast enough.
#pragma once

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

namespace rapport::test {

// Bytes the server-side socket of the loopback connection `fd` has received but its process has not
// read yet; nullopt when /proc/net/tcp does not list it.
inline std::optional<unsigned long> server_unread_bytes(int fd) {
  sockaddr_in local{}, peer{};
  socklen_t len = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return std::nullopt;
  len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return std::nullopt;
  const unsigned client_port = ntohs(local.sin_port), server_port = ntohs(peer.sin_port);
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    // "  N: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 ..." (local, remote, state, tx:rx queues)
    std::istringstream fields(line);
    std::string slot, local_address, remote_address, state, queues;
    fields >> slot >> local_address >> remote_address >> state >> queues;
    const auto port = [](const std::string& address) {
      return static_cast<unsigned>(std::stoul(address.substr(address.find(':') + 1), nullptr, 16));
    };
    if (local_address.find(':') == std::string::npos || queues.find(':') == std::string::npos) continue;
    if (port(local_address) == server_port && port(remote_address) == client_port) {
      return std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16);
    }
  }
  return std::nullopt;
}

// True once everything sent on `fd` has been read by the server process; false after `timeout` (the
// server stopped reading: a test failure, not a timing margin). Polls the two queues.
inline bool wait_until_peer_read(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int unacked = 0;
    if (::ioctl(fd, SIOCOUTQ, &unacked) == 0 && unacked == 0 && server_unread_bytes(fd).value_or(1) == 0) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // between checks of the condition
  }
}

}  // namespace rapport::test
