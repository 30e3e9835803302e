// CountingStats: the network fronts' FrontStats counted in memory, for tests
// and fuzz harnesses that drive a NetworkServer without the daemon.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <map>
#include <mutex>
#include <utility>

#include "ingest/net/front_stats.h"

namespace rapport::test {

class Count final : public StatCounter {
 public:
  double Value() const { return value_.load(); }

 protected:
  void add(double amount) override {
    double v = value_.load();
    while (!value_.compare_exchange_weak(v, v + amount)) {
    }
  }

 private:
  std::atomic<double> value_{0};
};

class Level final : public StatGauge {
 public:
  void Increment() override { value_.fetch_add(1); }
  void Decrement() override { value_.fetch_sub(1); }
  double Value() const { return static_cast<double>(value_.load()); }

 private:
  std::atomic<long> value_{0};
};

class CountingStats final : public FrontStats {
 public:
  Count& received(Transport t) override { return received_[i(t)]; }
  Count& rejected(Transport t, RejectReason r) override { return rejected_[i(t)][i(r)]; }
  Count& refused(Transport t) override { return refused_[i(t)]; }
  Count& accepted(Transport t, EventType e) override { return accepted_[i(t)][i(e)]; }
  Count& duplicate(Transport t, EventType e) override { return duplicate_[i(t)][i(e)]; }
  Count& by_channel(Channel c) override { return by_channel_[i(c)]; }
  Level& connections_open(Transport t) override { return connections_open_[i(t)]; }
  Count& connections_refused(Transport t) override { return connections_refused_[i(t)]; }
  Count& tls_handshake_failures(Transport t, TlsFailure f) override { return tls_failures_[i(t)][i(f)]; }
  void observe_http(HttpRoute route, int status, double /*seconds*/) override {
    std::lock_guard lock(mutex_);
    ++http_[{static_cast<int>(route), status}];
  }
  // Requests answered with `status` on `route`.
  int http(HttpRoute route, int status) const {
    std::lock_guard lock(mutex_);
    const auto it = http_.find({static_cast<int>(route), status});
    return it == http_.end() ? 0 : it->second;
  }

 private:
  template <typename E>
  static constexpr std::size_t i(E e) {
    return static_cast<std::size_t>(e);
  }
  std::array<Count, kTransportCount> received_;
  std::array<std::array<Count, kRejectReasonCount>, kTransportCount> rejected_;
  std::array<Count, kTransportCount> refused_;
  std::array<std::array<Count, kEventTypeCount>, kTransportCount> accepted_;
  std::array<std::array<Count, kEventTypeCount>, kTransportCount> duplicate_;
  std::array<Count, kChannelCount> by_channel_;
  std::array<Level, kTransportCount> connections_open_;
  std::array<Count, kTransportCount> connections_refused_;
  std::array<std::array<Count, kTlsFailureCount>, kTransportCount> tls_failures_;
  mutable std::mutex mutex_;
  std::map<std::pair<int, int>, int> http_;
};

}  // namespace rapport::test
