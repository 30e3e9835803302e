// ValueService: the background fitter of the value model and the current
// model snapshot that queries evaluate against.
//
// A fit reads every customer in one LMDB read snapshot (never blocking
// ingest), fits BG/NBD and Gamma-Gamma by maximum likelihood, sets the tier
// thresholds from the population's CLV, counts customers per tier, and
// stores the model in the `meta` database through the writer thread. Fits
// run on the service's own thread, on a schedule and on demand.
// Thread safety: every public method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "daemon/config.h"
#include "daemon/metrics.h"
#include "daemon/partitioned_sink.h"
#include "daemon/population_stats.h"  // ValueSnapshot
#include "daemon/writer.h"
#include "scoring/value_model.h"
#include "storage/partitioned_store.h"
#include "storage/store.h"

namespace rapport {

// Fits the model over every customer of `store` as of `as_of_ms` (a computation over one read
// snapshot): T and t_x are measured at as_of, purchases after its UTC day are ignored and customers
// first seen after that day are not counted (purchases are whole UTC days, so as_of's day counts).
// The model's fitted_at is the wall clock.
Result<ValueSnapshot> fit_population(const Store& store, const EvaluateConfig& scoring, const ValueConfig& value,
                                     std::int64_t as_of_ms);
// Over every partition, one after another (one read snapshot each).
Result<ValueSnapshot> fit_population(const PartitionedStore& store, const EvaluateConfig& scoring,
                                     const ValueConfig& value, std::int64_t as_of_ms);

// The rapport_customers{tier} gauges: the tiers of the last fit (`fit`, null before the first), and as
// "unranked" every customer it did not count (new since, or first seen after its as_of), so that the tiers
// add up to `customers` (the store's count). Erasures since the fit stay in their tier until the next fit
// (then "unranked" is 0 and the sum can exceed `customers` by the number erased).
std::array<std::uint64_t, kTierCount> customers_by_tier(const ValueSnapshot* fit, std::uint64_t customers);

// The inputs of the value model for one customer, in days.
PurchaseSummary purchase_summary(const Scores& scores);

class KafkaFit;

class ValueService {
 public:
  using FitDone = std::function<void(const Result<std::shared_ptr<const ValueSnapshot>>&)>;

  // Fits read `store`; the fitted model is stored by the writer of partition 0 (meta).
  ValueService(PartitionedStore& store, Writers& writer, Metrics& metrics, const Config& config);
  ~ValueService();  // stop()

  // Kafka mode (call before start()): fits collect every partition's stats through `fit` (daemon/kafka_fit.h)
  // instead of reading this store's customers; scheduled fits run at the UTC slots of fit_interval_s (as of
  // the slot's start, so every instance fits the same as_of), an on-demand fit without as_of is as of the
  // latest slot (as of now when fit_interval_s is 0), and a fit becomes the current model only if its as_of
  // is not older than the current one's (every instance ends with the same model).
  void set_kafka_fit(KafkaFit* fit) { kafka_fit_ = fit; }
  // The UTC slot (of `interval`) that `now_ms` is in: its start.
  static std::int64_t slot_start(std::int64_t now_ms, std::chrono::seconds interval);

  // Loads the stored model, if any. A record that cannot be read is reported and ignored.
  Status load();
  void start();
  void stop();
  void set_config(const Config& config);

  // Queues a fit as of `as_of_ms` (default: now, when the fit starts); `done` runs on the fitter
  // thread when it finishes. Requests queued together with the same as_of share one fit; the
  // last fit to succeed becomes the current model. Returns false once stopped.
  bool request_fit(FitDone done, std::optional<std::int64_t> as_of_ms = std::nullopt);

  // The current model (null before the first fit).
  std::shared_ptr<const ValueSnapshot> current() const;

  // Other whole-population work (a backtest) on the fitter thread, one at a time, between fits:
  // `job(false)` runs there; `job(true)` when the service stops before it ran. At most
  // kMaxQueuedJobs wait or run at once; beyond that kBusy and `job` is not kept.
  static constexpr std::size_t kMaxQueuedJobs = 2;
  using Job = std::function<void(bool cancelled)>;
  enum class JobQueued { kQueued, kBusy, kStopping };
  JobQueued request_job(Job job);

 private:
  void run();
  void run_slots(std::unique_lock<std::mutex>& lock);
  // Runs the oldest queued job with the lock released; false when none is queued.
  bool run_next_job(std::unique_lock<std::mutex>& lock);  // run() in Kafka mode
  void fit_now();
  Result<std::shared_ptr<const ValueSnapshot>> fit_once(const EvaluateConfig& evaluate, const ValueConfig& value,
                                                        std::int64_t as_of_ms);

  PartitionedStore& store_;
  KafkaFit* kafka_fit_ = nullptr;
  Writers& writer_;
  Metrics& metrics_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  EvaluateConfig evaluate_;  // guarded by mutex_
  ValueOptions value_;       // guarded by mutex_
  struct FitRequest {
    std::optional<std::int64_t> as_of_ms;
    FitDone done;
  };
  std::vector<FitRequest> waiting_;               // guarded by mutex_
  std::vector<Job> jobs_;                         // guarded by mutex_; the first may be running
  std::size_t jobs_running_ = 0;                  // guarded by mutex_
  bool fit_requested_ = false;                    // guarded by mutex_
  std::atomic<bool> waiting_logged_{false};       // "no value model yet" said since the last fit
  bool stopping_ = false;                         // guarded by mutex_
  std::shared_ptr<const ValueSnapshot> current_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace rapport
