#include "daemon/value_service.h"

#include <algorithm>

#include "common/clock.h"
#include "common/log.h"
#include "daemon/customer_json.h"
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
  constexpr std::int64_t kDayMs = 86'400'000;
  const auto day_of = [](std::int64_t ms) { return ms >= 0 ? ms / kDayMs : (ms - kDayMs + 1) / kDayMs; };
  const std::int64_t as_of_day = day_of(as_of_ms);
  std::vector<PurchaseSummary> buyers;
  std::vector<float> profit_12m;  // parallel to buyers
  std::uint64_t customers = 0, non_buyer_leads = 0;
  Status visited = for_each_customer([&](std::string_view, const CustomerState& state) {
    if (state.event_count == 0 || day_of(state.first_seen_ms) > as_of_day) return true;  // not a customer yet
    ++customers;
    const Scores s = evaluate(state, as_of_ms, scoring);
    const PurchaseHistory h = purchase_history_as_of(state, as_of_ms);
    if (h.transactions == 0) {
      if (s.profit_12m < 0) ++non_buyer_leads;
      return true;
    }
    buyers.push_back(PurchaseSummary{h.x, h.t_x_days, h.T_days, h.mean_repeat_spend});
    profit_12m.push_back(static_cast<float>(s.profit_12m));
    return true;
  });
  if (!visited.ok()) return visited;

  // Too little data is the normal state of a new install, not a failure.
  const FitReadiness readiness = fit_readiness(buyers);
  if (!readiness.ready()) {
    return Status::NotReady("no value model yet: waiting for " + std::to_string(kMinFitCustomers) +
                            " customers who bought, " + std::to_string(kMinFitRepeaters) +
                            " of them with repeat purchases (have " + std::to_string(readiness.customers) + " and " +
                            std::to_string(readiness.repeaters_with_spend) + ")");
  }
  auto bgnbd = fit_bgnbd(buyers);
  if (!bgnbd.ok()) return bgnbd.status();
  auto gamma_gamma = fit_gamma_gamma(buyers);
  if (!gamma_gamma.ok()) return gamma_gamma.status();

  ValueSnapshot snap;
  ValueModel& m = snap.model;
  m.bgnbd = bgnbd->params;
  m.gamma_gamma = gamma_gamma->params;
  m.bgnbd_log_likelihood = bgnbd->log_likelihood;
  m.gamma_gamma_log_likelihood = gamma_gamma->log_likelihood;
  m.bgnbd_customers = bgnbd->customers;
  m.gamma_gamma_customers = gamma_gamma->customers;
  m.bgnbd_iterations = bgnbd->iterations;
  m.gamma_gamma_iterations = gamma_gamma->iterations;
  m.bgnbd_converged = bgnbd->converged;
  m.gamma_gamma_converged = gamma_gamma->converged;
  m.as_of_ms = as_of_ms;
  m.fitted_at_ms = wall_ms();
  m.customers = customers;
  for (const PurchaseSummary& b : buyers) m.repeat_customers += b.x > 0 ? 1 : 0;

  // Tier thresholds from the CLV of every non-lead customer (non-buyers have CLV 0).
  std::vector<double> clvs;
  std::vector<double> buyer_clv(buyers.size());
  clvs.reserve(customers);
  for (std::size_t i = 0; i < buyers.size(); ++i) {
    buyer_clv[i] = customer_value(m, value, buyers[i]).clv;
    if (profit_12m[i] >= 0) clvs.push_back(buyer_clv[i]);
  }
  const std::uint64_t non_buyers = customers - buyers.size();
  clvs.insert(clvs.end(), non_buyers - non_buyer_leads, 0.0);
  set_tier_thresholds(m, value, clvs);

  snap.tier_counts[static_cast<int>(Tier::kLead)] = non_buyer_leads;
  snap.tier_counts[static_cast<int>(classify_tier(&m, 0.0, 0.0))] += non_buyers - non_buyer_leads;
  for (std::size_t i = 0; i < buyers.size(); ++i) {
    ++snap.tier_counts[static_cast<int>(classify_tier(&m, buyer_clv[i], profit_12m[i]))];
  }
  m.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
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

void ValueService::run() {
  std::unique_lock lock(mutex_);
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
    if (!jobs_.empty()) {  // after a due fit, so that jobs never hold fits back
      Job job = std::move(jobs_.front());
      jobs_.erase(jobs_.begin());
      ++jobs_running_;
      lock.unlock();
      job(/*cancelled=*/false);
      job = nullptr;
      lock.lock();
      --jobs_running_;
      continue;
    }
    if (scheduled) {
      wake_.wait_until(lock, next_fit);
    } else {
      wake_.wait(lock);
    }
  }
}

void ValueService::fit_now() {
  EvaluateConfig evaluate;
  ValueConfig value;
  std::vector<FitRequest> waiting;
  {
    std::lock_guard lock(mutex_);
    evaluate = evaluate_;
    value = value_;
    waiting.swap(waiting_);
  }
  // One fit per distinct as_of, in the order first asked for (a scheduled fit: one as of now).
  std::vector<std::optional<std::int64_t>> as_ofs;
  for (const FitRequest& r : waiting) {
    if (std::find(as_ofs.begin(), as_ofs.end(), r.as_of_ms) == as_ofs.end()) as_ofs.push_back(r.as_of_ms);
  }
  if (as_ofs.empty()) as_ofs.emplace_back();
  for (const auto& as_of : as_ofs) {
    auto result = fit_once(evaluate, value, as_of.value_or(wall_ms()));
    for (FitRequest& r : waiting) {
      if (r.as_of_ms == as_of) r.done(result);
    }
  }
}

Result<std::shared_ptr<const ValueSnapshot>> ValueService::fit_once(const EvaluateConfig& evaluate,
                                                                    const ValueConfig& value, std::int64_t as_of_ms) {
  log_debug("value model fit starting", {{"as_of", format_rfc3339(as_of_ms)}});
  auto fitted = fit_population(store_, evaluate, value, as_of_ms);
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
