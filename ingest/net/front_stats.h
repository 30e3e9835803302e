// FrontStats: what the network fronts count, declared here and implemented
// by their owner (the daemon exports it with prometheus-cpp; tests count in
// memory). No metrics library is visible to ingest/net.
//
// Every method returns a reference the owner resolved once (no lookup per
// event); implementations must be thread-safe (io threads call them
// concurrently) and outlive the NetworkServer.
#pragma once

#include <cstdint>

#include "ingest/decoder.h"
#include "ingest/submission.h"
#include "scoring/event.h"

namespace rapport {

// A count that only goes up.
class StatCounter {
 public:
  virtual ~StatCounter() = default;
  void Increment(double amount = 1.0) { add(amount); }

 protected:
  virtual void add(double amount) = 0;
};

// A level that goes up and down (open connections).
class StatGauge {
 public:
  virtual ~StatGauge() = default;
  virtual void Increment() = 0;
  virtual void Decrement() = 0;
};

// Why a TLS start on a TLS listener failed.
enum class TlsFailure : std::uint8_t {
  kPlaintext,  // the client spoke plaintext (answered in plaintext and closed)
  kError,      // the handshake failed: no common version or cipher, the client rejected the certificate, garbage
  kTimeout,    // not finished within read_timeout
};
inline constexpr int kTlsFailureCount = 3;

// The route of an HTTP request, for the per-route stats. The fronts answer
// two kinds of request themselves (below); every other value is whatever the
// HttpHandler returned, opaque to the fronts (the daemon's route ids).
enum class HttpRoute : std::uint8_t {
  kEvents = 0,  // POST /v1/events, served by the HTTP front
  kOther = 1,   // refused before routing: malformed request, over a limit, unknown route, plaintext on a TLS port
};

class FrontStats {
 public:
  virtual ~FrontStats() = default;

  // --- items (events and rejected lines) ---
  virtual StatCounter& received(Transport t) = 0;
  virtual StatCounter& rejected(Transport t, RejectReason r) = 0;
  virtual StatCounter& refused(Transport t) = 0;  // storage or a full queue refused them (the sender retries)
  virtual StatCounter& accepted(Transport t, EventType e) = 0;
  virtual StatCounter& duplicate(Transport t, EventType e) = 0;
  virtual StatCounter& by_channel(Channel c) = 0;  // accepted events by channel class

  // --- connections (tcp, http) ---
  virtual StatGauge& connections_open(Transport t) = 0;
  virtual StatCounter& connections_refused(Transport t) = 0;  // the connection cap was reached
  virtual StatCounter& tls_handshake_failures(Transport t, TlsFailure f) = 0;

  // --- HTTP, once per answered request ---
  virtual void observe_http(HttpRoute route, int status, double seconds) = 0;
};

}  // namespace rapport
