#include "metrics/registry.h"

#include <dirent.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>

namespace rapport {

MetricsRegistry::MetricsRegistry() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& reg = *registry_;
  process_cpu_ = &prometheus::BuildCounter()
                      .Name("process_cpu_seconds_total")
                      .Help("User and system CPU time spent in seconds")
                      .Register(reg)
                      .Add({});
  process_rss_ = &prometheus::BuildGauge()
                      .Name("process_resident_memory_bytes")
                      .Help("Resident memory size in bytes")
                      .Register(reg)
                      .Add({});
  process_fds_ =
      &prometheus::BuildGauge().Name("process_open_fds").Help("Number of open file descriptors").Register(reg).Add({});
  process_start_ = &prometheus::BuildGauge()
                        .Name("process_start_time_seconds")
                        .Help("Start time of the process since the Unix epoch in seconds")
                        .Register(reg)
                        .Add({});
  process_start_->Set(static_cast<double>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()));
}

prometheus::Histogram::BucketBoundaries MetricsRegistry::latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

void MetricsRegistry::set_before_scrape(std::function<void()> refresh) {
  std::lock_guard lock(refresh_mutex_);
  before_scrape_ = std::move(refresh);
}

void MetricsRegistry::refresh_process_metrics() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    if (cpu > process_cpu_reported_) {
      process_cpu_->Increment(cpu - process_cpu_reported_);
      process_cpu_reported_ = cpu;
    }
  }
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0;
  long pages_resident = 0;
  if (statm >> pages_total >> pages_resident) {
    process_rss_->Set(static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)));
  }
  if (DIR* dir = opendir("/proc/self/fd")) {
    int count = 0;
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    process_fds_->Set(count - 1);  // minus the descriptor opendir itself holds
  }
}

std::string MetricsRegistry::serialize() {
  {
    std::lock_guard lock(refresh_mutex_);
    if (before_scrape_) before_scrape_();
    refresh_process_metrics();
  }
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace rapport
