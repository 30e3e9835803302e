#include "ingest/net/tcp_progress.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

namespace rapport::net {

bool tcp_bytes_acked(int fd, std::uint64_t& acked) {
  tcp_info info{};
  socklen_t length = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return false;
  // An older kernel fills a shorter struct: the field must be inside what it wrote.
  if (length < offsetof(tcp_info, tcpi_bytes_acked) + sizeof info.tcpi_bytes_acked) return false;
  acked = info.tcpi_bytes_acked;
  return true;
}

}  // namespace rapport::net
