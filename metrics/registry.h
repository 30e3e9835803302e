// MetricsRegistry: the Prometheus plumbing shared by whatever exports
// metrics (prometheus-cpp core): the registry, the standard process_* series
// (CPU, resident memory, open descriptors, start time), a hook run before
// each scrape, and the text exposition. Knows nothing of Rapport's own
// series: those are declared by their owners (daemon/metrics.h).
// Thread safety: `serialize` and `set_before_scrape` may be called from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace rapport {

class MetricsRegistry {
 public:
  MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  prometheus::Registry& registry() { return *registry_; }

  // Called at the start of every serialize() to refresh gauges.
  void set_before_scrape(std::function<void()> refresh);
  // Text exposition format 0.0.4; refreshes the process_* series first.
  std::string serialize();

  // Buckets for latencies from 100 µs to 10 s.
  static prometheus::Histogram::BucketBoundaries latency_buckets();

 private:
  void refresh_process_metrics();  // under refresh_mutex_

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* process_cpu_ = nullptr;  // advanced by the CPU time used since the last scrape
  double process_cpu_reported_ = 0;             // guarded by refresh_mutex_
  prometheus::Gauge* process_rss_ = nullptr;
  prometheus::Gauge* process_fds_ = nullptr;
  prometheus::Gauge* process_start_ = nullptr;
  std::mutex refresh_mutex_;
  std::function<void()> before_scrape_;  // guarded by refresh_mutex_
};

}  // namespace rapport
