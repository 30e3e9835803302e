// How far a TCP peer has read: the bytes of ours it acknowledged (TCP_INFO
// tcpi_bytes_acked, Linux >= 4.1). Kept apart from fronts.h because
// <linux/tcp.h> and glibc's <netinet/tcp.h> (which Asio includes) clash.
#pragma once

#include <cstdint>

namespace rapport::net {

// False when the socket cannot tell (not TCP, or an old kernel).
bool tcp_bytes_acked(int fd, std::uint64_t& acked);

}  // namespace rapport::net
