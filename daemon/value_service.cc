#include "daemon/value_service.h"

#include <algorithm>

#include "common/clock.h"
#include "common/log.h"
#include "daemon/customer_json.h"
#include "daemon/kafka_fit.h"
#include "daemon/population_stats.h"
#include "daemon/value_records.h"

namespace rapport {
namespace {

constexpr std::string_view kModelKey = kValueModelMetaKey;
constexpr std::string_view kTierCountsKey = kValueTierCountsMetaKey;

}  // namespace

PurchaseSummary purchase_summary(const Scores& s) {
  return PurchaseSummary{s.x, s.t_x_days, s.T_days, s.mean_repeat_spend};
}

namespace {

using VisitAll = std::function<Status(const std::function<bool(std::string_view, const CustomerState&)>&)>;

Result<ValueSnapshot> fit_visited(const VisitAll& for_each_customer, const EvaluateConfig& scoring,
                                  const ValueConfig& value, std::int64_t as_of_ms) {
  const auto started = std::chrono::steady_clock::now();
  PopulationStats stats;
  Status visited = for_each_customer([&](std::string_view, const CustomerState& state) {
    stats.add(state, as_of_ms, scoring);
    return true;
  });
  if (!visited.ok()) return visited;
  auto snap = fit_population_stats(stats, value, as_of_ms);
  if (snap.ok())
    snap->model.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return snap;
}

}  // namespace

std::array<std::uint64_t, kTierCount> customers_by_tier(const ValueSnapshot* fit, std::uint64_t customers) {
  std::array<std::uint64_t, kTierCount> out{};
  std::uint64_t ranked = 0;
  if (fit != nullptr) {
    for (int t = 0; t < kTierCount; ++t) {
      if (static_cast<Tier>(t) == Tier::kUnranked) continue;
      out[t] = fit->tier_counts[t];
      ranked += out[t];
    }
  }
  out[static_cast<int>(Tier::kUnranked)] = customers > ranked ? customers - ranked : 0;
  return out;
}

Result<ValueSnapshot> fit_population(const Store& store, const EvaluateConfig& scoring, const ValueConfig& value,
                                     std::int64_t as_of_ms) {
  return fit_visited([&](const auto& visit) { return store.for_each_customer(visit); }, scoring, value, as_of_ms);
}

Result<ValueSnapshot> fit_population(const PartitionedStore& store, const EvaluateConfig& scoring,
                                     const ValueConfig& value, std::int64_t as_of_ms) {
  return fit_visited([&](const auto& visit) { return store.for_each_customer_unordered(visit); }, scoring, value,
                     as_of_ms);
}

ValueService::ValueService(PartitionedStore& store, Writers& writer, Metrics& metrics, const Config& config)
    : store_(store), writer_(writer), metrics_(metrics) {
  set_config(config);
}

ValueService::~ValueService() { stop(); }

void ValueService::set_config(const Config& config) {
  std::lock_guard lock(mutex_);
  evaluate_ = config.evaluate;
  value_ = config.value;
  wake_.notify_all();
}

Status ValueService::load() {
  auto model_bytes = store_.get_meta(kModelKey);
  if (!model_bytes.ok()) return model_bytes.status();
  if (!model_bytes->has_value()) return Status::Ok();
  auto snap = std::make_shared<ValueSnapshot>();
  Status s = deserialize(**model_bytes, snap->model);
  if (!s.ok()) return Status::Error("stored value model ignored: " + s.message());
  auto counts = store_.get_meta(kTierCountsKey);
  if (counts.ok() && counts->has_value()) decode_tier_counts(**counts, snap->tier_counts);
  std::lock_guard lock(mutex_);
  current_ = std::move(snap);
  return Status::Ok();
}

void ValueService::start() {
  if (auto snap = current()) {
    metrics_.model_fit_timestamp().Set(static_cast<double>(snap->model.fitted_at_ms) / 1000.0);
    metrics_.model_log_likelihood().Set(snap->model.bgnbd_log_likelihood);
  }
  thread_ = std::thread([this] { run(); });
}

void ValueService::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<FitRequest> waiting;
  {
    std::lock_guard lock(mutex_);
    waiting.swap(waiting_);
  }
  for (auto& request : waiting) request.done(Status::Error("shutting down"));
  std::vector<Job> jobs;
  {
    std::lock_guard lock(mutex_);
    jobs.swap(jobs_);
  }
  for (auto& job : jobs) job(/*cancelled=*/true);
}

ValueService::JobQueued ValueService::request_job(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return JobQueued::kStopping;
    if (jobs_.size() + jobs_running_ >= kMaxQueuedJobs) return JobQueued::kBusy;
    jobs_.push_back(std::move(job));
  }
  wake_.notify_all();
  return JobQueued::kQueued;
}

bool ValueService::request_fit(FitDone done, std::optional<std::int64_t> as_of_ms) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    waiting_.push_back(FitRequest{as_of_ms, std::move(done)});
    fit_requested_ = true;
  }
  wake_.notify_all();
  return true;
}

std::shared_ptr<const ValueSnapshot> ValueService::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

std::int64_t ValueService::slot_start(std::int64_t now_ms, std::chrono::seconds interval) {
  const std::int64_t width = static_cast<std::int64_t>(interval.count()) * 1000;
  if (width <= 0) return now_ms;
  return now_ms >= 0 ? now_ms / width * width : (now_ms - width + 1) / width * width;
}

void ValueService::run() {
  std::unique_lock lock(mutex_);
  if (kafka_fit_ != nullptr) {
    run_slots(lock);
    return;
  }
  auto next_fit = std::chrono::steady_clock::now();
  // The first fit: a minute after start when no model is stored yet (data may
  // be arriving), else one interval after start.
  next_fit +=
      current_ ? value_.fit_interval : std::min<std::chrono::seconds>(value_.fit_interval, std::chrono::seconds(60));
  while (!stopping_) {
    const bool scheduled = value_.fit_interval.count() > 0;
    if (fit_requested_ || (scheduled && std::chrono::steady_clock::now() >= next_fit)) {
      fit_requested_ = false;
      lock.unlock();
      fit_now();
      lock.lock();
      next_fit = std::chrono::steady_clock::now() + value_.fit_interval;
      continue;
    }
    if (run_next_job(lock)) continue;  // after a due fit, so that jobs never hold fits back
    if (scheduled) {
      wake_.wait_until(lock, next_fit);
    } else {
      wake_.wait(lock);
    }
  }
}

bool ValueService::run_next_job(std::unique_lock<std::mutex>& lock) {
  if (jobs_.empty()) return false;
  Job job = std::move(jobs_.front());
  jobs_.erase(jobs_.begin());
  ++jobs_running_;
  lock.unlock();
  job(/*cancelled=*/false);
  job = nullptr;
  lock.lock();
  --jobs_running_;
  return true;
}

void ValueService::run_slots(std::unique_lock<std::mutex>& lock) {
  // Kafka mode: a scheduled fit at the start of each UTC slot, as of that start (the same on every instance).
  constexpr std::int64_t kNoSlot = -1;  // (not an optional: GCC 12's -Wmaybe-uninitialized misreads it here)
  std::int64_t next_slot = kNoSlot;
  while (!stopping_) {
    const auto interval = value_.fit_interval;
    const std::int64_t now = wall_ms();
    if (interval.count() > 0 && next_slot == kNoSlot) next_slot = slot_start(now, interval) + interval.count() * 1000;
    if (interval.count() <= 0) next_slot = kNoSlot;
    if (next_slot != kNoSlot && now >= next_slot) {
      waiting_.push_back(FitRequest{next_slot, [](const Result<std::shared_ptr<const ValueSnapshot>>&) {}});
      fit_requested_ = true;
      next_slot = kNoSlot;
    }
    if (fit_requested_) {
      fit_requested_ = false;
      lock.unlock();
      fit_now();
      lock.lock();
      continue;
    }
    if (run_next_job(lock)) continue;
    if (next_slot != kNoSlot) {
      wake_.wait_for(lock, std::chrono::milliseconds(std::min<std::int64_t>(next_slot - now, 60'000)));
    } else {
      wake_.wait(lock);
    }
  }
}

void ValueService::fit_now() {
  EvaluateConfig evaluate;
  ValueConfig value;
  std::vector<FitRequest> waiting;
  std::chrono::seconds interval{0};
  {
    std::lock_guard lock(mutex_);
    evaluate = evaluate_;
    value = value_;
    interval = value_.fit_interval;
    waiting.swap(waiting_);
  }
  // One fit per distinct as_of, in the order first asked for (a scheduled fit: one as of now).
  std::vector<std::optional<std::int64_t>> as_ofs;
  for (const FitRequest& r : waiting) {
    if (std::find(as_ofs.begin(), as_ofs.end(), r.as_of_ms) == as_ofs.end()) as_ofs.push_back(r.as_of_ms);
  }
  if (as_ofs.empty()) as_ofs.emplace_back();
  for (const auto& as_of : as_ofs) {
    std::int64_t as_of_ms = as_of.value_or(wall_ms());
    if (!as_of && kafka_fit_ != nullptr) as_of_ms = slot_start(as_of_ms, interval);  // the latest slot
    auto result = fit_once(evaluate, value, as_of_ms);
    for (FitRequest& r : waiting) {
      if (r.as_of_ms == as_of) r.done(result);
    }
  }
}

Result<std::shared_ptr<const ValueSnapshot>> ValueService::fit_once(const EvaluateConfig& evaluate,
                                                                    const ValueConfig& value, std::int64_t as_of_ms) {
  log_debug("value model fit starting", {{"as_of", format_rfc3339(as_of_ms)}});
  Result<ValueSnapshot> fitted = Status::Error("not fitted");
  if (kafka_fit_ != nullptr) {  // every partition's stats, from every instance
    const auto started = std::chrono::steady_clock::now();
    auto stats = kafka_fit_->collect(as_of_ms, evaluate);
    if (!stats.ok()) {
      log_warn(stats.message());
      return stats.status();
    }
    fitted = fit_population_stats(*stats, value, as_of_ms);
    if (fitted.ok()) {
      fitted->model.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    }
  } else {
    fitted = fit_population(store_, evaluate, value, as_of_ms);
  }
  if (!fitted.ok() && fitted.status().not_ready()) {
    // Said once at info level until a fit succeeds: not a failure, and not counted as one.
    if (!waiting_logged_.exchange(true)) log_info(fitted.message());
    return fitted.status();
  }
  metrics_.model_fits(fitted.ok()).Increment();
  if (!fitted.ok()) {
    log_warn("value model fit failed: " + fitted.message());
    return fitted.status();
  }
  waiting_logged_.store(false);
  auto snap = std::make_shared<const ValueSnapshot>(std::move(*fitted));
  if (kafka_fit_ != nullptr) {  // in Kafka mode the newest as_of wins, whatever order the fits end in
    auto current = this->current();
    if (current && current->model.as_of_ms > snap->model.as_of_ms) {
      log_info("value model fitted as of " + format_rfc3339(snap->model.as_of_ms) + "; the current model (as of " +
               format_rfc3339(current->model.as_of_ms) + ") is newer and stays");
      return Result<std::shared_ptr<const ValueSnapshot>>(std::move(snap));
    }
  }
  metrics_.model_fit_timestamp().Set(static_cast<double>(snap->model.fitted_at_ms) / 1000.0);
  metrics_.model_fit_duration().Set(snap->model.fit_seconds);
  metrics_.model_log_likelihood().Set(snap->model.bgnbd_log_likelihood);
  writer_.meta().post([model = serialize(snap->model), counts = encode_tier_counts(snap->tier_counts)](Store& store) {
    Status s = store.put_meta(kModelKey, model);
    if (s.ok()) s = store.put_meta(kTierCountsKey, counts);
    if (!s.ok()) log_warn("cannot store the value model: " + s.message());
  });
  log_info("value model fitted over " + std::to_string(snap->model.customers) + " customers as of " +
           format_rfc3339(snap->model.as_of_ms) + " in " + std::to_string(snap->model.fit_seconds) + " s");
  {
    std::lock_guard lock(mutex_);
    current_ = snap;
  }
  return Result<std::shared_ptr<const ValueSnapshot>>(std::move(snap));
}

}  // namespace rapport
