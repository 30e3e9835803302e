#include "daemon/alert_delivery.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <future>

#include "common/clock.h"
#include "common/json_writer.h"
#include "common/log.h"
#include "daemon/customer_json.h"
#include "ingest/net/http_client.h"

namespace rapport {
namespace {

constexpr std::size_t kPage = 256;  // entries scanned per partition per round

// Delivery is background work: its threads run at a lower priority (nice 10) than ingest, so on a busy
// machine a burst of alerts is delivered when the CPU is free rather than slowing acknowledgements.
void lower_priority() { (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10); }

}  // namespace

std::string alert_delivery_id(std::uint32_t partition, std::uint64_t sequence) {
  return std::to_string(partition) + "-" + std::to_string(sequence);
}

AlertDelivery::AlertDelivery(PartitionedStore& store, Writers& writers, Alerts& alerts, AlertMetrics& metrics,
                             AlertDeliveryOptions options)
    : store_(store),
      writers_(writers),
      alerts_(alerts),
      metrics_(metrics),
      options_(std::move(options)),
      flush_posted_(new std::atomic<bool>[store.partition_count()]) {
  for (std::uint32_t p = 0; p < store.partition_count(); ++p) flush_posted_[p] = false;
}

AlertDelivery::~AlertDelivery() { stop(); }

void AlertDelivery::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (started_) return;
  started_ = true;
  dispatcher_ = std::thread([this] { dispatch_loop(); });
  for (std::size_t i = 0; i < std::max<std::size_t>(options_.threads, 1); ++i) {
    workers_.emplace_back([this] { worker_loop(); });
  }
}

void AlertDelivery::stop(std::chrono::milliseconds writer_wait) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  dispatch_wake_.notify_all();
  work_ready_.notify_all();
  if (dispatcher_.joinable()) dispatcher_.join();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  // Commit the deletes of what was delivered, so it is not sent again after a restart. Bounded: a stuck
  // writer runs these jobs (and any other this object posted) only when the daemon stops it, which happens
  // after this returns and before this object is destroyed.
  const auto deadline = std::chrono::steady_clock::now() + writer_wait;
  for (std::uint32_t p = 0; p < writers_.count(); ++p) {
    auto done = std::make_shared<std::promise<void>>();
    auto future = done->get_future();
    const bool posted = writers_.partition(p).post([done](Store& store) {
      (void)store.flush_outbox_changes();
      done->set_value();
    });
    if (posted && future.wait_until(deadline) != std::future_status::ready) {
      log_warn(
          "alerts: the storage writer did not commit the delivered alerts before shutdown; they may be "
          "delivered again after a restart (same Rapport-Delivery id)",
          {{"partition", static_cast<std::uint64_t>(p)}});
    }
  }
}

void AlertDelivery::set_options(const AlertDeliveryOptions& options) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::size_t threads = options_.threads;
  options_ = options;
  options_.threads = threads;  // the pool is sized at start
}

void AlertDelivery::enable_all() {
  std::lock_guard<std::mutex> lock(mutex_);
  disabled_.clear();
}

void AlertDelivery::wake() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken_ = true;
  }
  dispatch_wake_.notify_one();
}

std::chrono::milliseconds AlertDelivery::backoff(int attempts) {
  // mutex_ held. retry_initial * 2^(attempts-1), capped, times a jitter in [0.5, 1].
  double delay = static_cast<double>(options_.retry_initial.count());
  for (int i = 1; i < attempts && delay < static_cast<double>(options_.retry_max.count()); ++i) delay *= 2;
  delay = std::min(delay, static_cast<double>(options_.retry_max.count()));
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const double jitter = 0.5 + 0.5 * static_cast<double>(rng_ >> 11) / static_cast<double>(1ull << 53);
  return std::chrono::milliseconds(static_cast<std::int64_t>(delay * jitter));
}

void AlertDelivery::finish(const Key& key, bool delivered) {
  // The change rides in the partition's next commit (LMDB has one writer per environment); a writer job
  // writes it when no batch comes first (one job at a time per partition, so they coalesce under load).
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Tracked& t = tracked_[key];
    t.busy = true;
    t.done = true;  // forgotten once a scan no longer sees it
  }
  store_.partition(key.partition).queue_outbox_change(key.sequence, delivered);
  std::atomic<bool>& posted = flush_posted_[key.partition];
  if (posted.exchange(true)) return;
  const bool ok = writers_.partition(key.partition).post([&posted](Store& store) {
    posted = false;
    if (auto r = store.flush_outbox_changes(); !r.ok()) {
      log_error("cannot update the alerts outbox; the deliveries will be tried again", {{"error", r.message()}});
    }
  });
  if (!ok) posted = false;
}

void AlertDelivery::dispatch_loop() {
  lower_priority();
  std::vector<Job> dead;
  for (;;) {
    AlertDeliveryOptions options;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      dispatch_wake_.wait_for(lock, options_.poll, [this] { return woken_ || stopping_; });
      if (stopping_) return;
      woken_ = false;
      options = options_;
    }
    const auto context = alerts_.context();
    const auto now = std::chrono::steady_clock::now();
    const std::int64_t now_ms = wall_ms();
    std::uint64_t pending = 0, dead_count = 0, dropped = 0;
    std::int64_t oldest_ms = 0;
    for (std::uint32_t p = 0; p < store_.partition_count(); ++p) {
      const Store& partition = store_.partition(p);
      if (auto stats = partition.outbox_stats(); stats.ok()) {
        pending += stats->pending;
        dead_count += stats->dead;
        dropped += stats->dropped;
      }
      auto entries = partition.outbox(OutboxArea::kPending, 0, kPage);
      if (!entries.ok()) {
        log_error("cannot read the alerts outbox",
                  {{"partition", static_cast<std::int64_t>(p)}, {"error", entries.message()}});
        continue;
      }
      if (!entries->empty()) {  // the partition's oldest pending delivery (retries included)
        AlertMessage first;
        if (decode_alert_record(entries->front().payload, first).ok() && (oldest_ms == 0 || first.at_ms < oldest_ms)) {
          oldest_ms = first.at_ms;
        }
      }
      std::vector<std::uint64_t> seen;
      for (const OutboxEntry& entry : *entries) {
        const Key key{p, entry.sequence};
        seen.push_back(entry.sequence);
        bool expired = false;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          Tracked& t = tracked_[key];
          if (!t.first) t.first = now;
          if (t.busy || now < t.due) continue;
          expired = now - *t.first > options.retry_for;
        }
        AlertMessage message;
        if (Status st = decode_alert_record(entry.payload, message); !st.ok()) {
          log_error("alerts outbox entry cannot be read; moved to the dead area",
                    {{"id", alert_delivery_id(p, entry.sequence)}, {"error", st.message()}});
          mark_busy(key);
          finish(key, false);
          continue;
        }
        const auto rule = std::find_if(context->rules.begin(), context->rules.end(),
                                       [&](const AlertRule& r) { return r.name == message.alert; });
        const std::string id = message.id.empty() ? alert_delivery_id(p, entry.sequence) : message.id;
        std::string why_dead;
        bool disabled = false;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          disabled = disabled_.count(message.alert) > 0;
        }
        if (rule == context->rules.end()) {
          why_dead = "its alert is no longer configured";
        } else if (disabled) {
          why_dead = "its alert was disabled by a 410 answer";
        } else if (expired) {
          why_dead = "it was retried for alert_delivery.retry_for_s without success";
        }
        if (!why_dead.empty()) {
          log_warn("alert delivery moved to the dead area (rapportctl alerts list|replay)",
                   {{"alert", message.alert}, {"id", id}, {"reason", why_dead}});
          metrics_.deliveries(message.alert, "dead").Increment();
          mark_busy(key);
          finish(key, false);
          continue;
        }
        // The customer as GET /v1/customers/{id} shows it now (null once erased).
        std::string customer_json;
        if (auto state = store_.get_customer(message.customer_id); state.ok() && state->has_value()) {
          JsonWriter out;
          write_customer_json(out, message.customer_id, **state, now_ms, context->evaluate, context->model.get(),
                              context->value, /*explain=*/false);
          customer_json = out.take();
        }
        {
          std::lock_guard<std::mutex> lock(mutex_);
          std::size_t& in_flight = per_url_[rule->url];
          if (in_flight >= std::max<std::size_t>(options.max_per_url, 1)) continue;
          ++in_flight;
          tracked_[key].busy = true;
          message.id = id;
          message.customer_json = std::move(customer_json);
          queue_.push_back(Job{key, id, rule->url, rule->secret, message.alert, alert_body(message), message.at_ms});
        }
        work_ready_.notify_one();
      }
      // Forget entries no longer in the outbox (dropped by the bound) below the last one read.
      std::lock_guard<std::mutex> lock(mutex_);
      const std::uint64_t last = seen.empty() ? UINT64_MAX : seen.back();
      for (auto it = tracked_.lower_bound(Key{p, 0}); it != tracked_.end() && it->first.partition == p;) {
        const bool gone = it->first.sequence <= last && (!it->second.busy || it->second.done) &&
                          !std::binary_search(seen.begin(), seen.end(), it->first.sequence);
        it = gone ? tracked_.erase(it) : std::next(it);
      }
    }
    metrics_.outbox_pending().Set(static_cast<double>(pending));
    metrics_.outbox_dead().Set(static_cast<double>(dead_count));
    metrics_.outbox_dropped().Set(static_cast<double>(dropped));
    metrics_.outbox_oldest_age().Set(pending == 0 || oldest_ms == 0 ? 0.0
                                                                    : static_cast<double>(now_ms - oldest_ms) / 1000.0);
  }
}

void AlertDelivery::mark_busy(const Key& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  tracked_[key].busy = true;
}

void AlertDelivery::worker_loop() {
  lower_priority();
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;  // queued entries stay in the outbox
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    deliver(job);
  }
}

void AlertDelivery::deliver(const Job& job) {
  std::chrono::milliseconds timeout;
  std::string ca_file;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    timeout = options_.timeout;
    ca_file = options_.ca_file;
  }
  const std::string& id = job.id;
  int status = 0;
  std::string error;
  if (auto endpoint = parse_http_url(job.url); !endpoint.ok()) {
    error = endpoint.message();
  } else {
    HttpClientRequest request;
    request.method = "POST";
    request.body = job.body;
    request.timeout = timeout;
    if (endpoint->tls) request.ca_file = ca_file;
    request.headers = {{"User-Agent", "rapportd"},
                       {"Rapport-Delivery", id},
                       {"Rapport-Signature", alert_signature(job.secret, wall_ms() / 1000, job.body)}};
    auto response = http_request(*endpoint, request);
    if (response.ok()) {
      status = response->status;
    } else {
      error = response.message();
    }
  }
  const bool delivered = status >= 200 && status < 300;
  const bool gone = status == 410;
  if (delivered) {
    metrics_.deliveries(job.alert, "delivered").Increment();
    metrics_.delivery_latency().Observe(static_cast<double>(std::max<std::int64_t>(wall_ms() - job.at_ms, 0)) / 1000.0);
  } else if (gone) {
    metrics_.deliveries(job.alert, "gone").Increment();
    log_warn("alert disabled: its receiver answered 410 Gone (a reload or restart enables it again)",
             {{"alert", job.alert}, {"url", job.url}, {"id", id}});
  } else {
    metrics_.deliveries(job.alert, "failed").Increment();
    log_warn("alert delivery failed; it will be retried",
             {{"alert", job.alert}, {"id", id}, {"status", status}, {"error", error}});
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = per_url_.find(job.url); it != per_url_.end() && it->second > 0) --it->second;
    if (gone) disabled_.insert(job.alert);
    if (!delivered && !gone) {
      Tracked& t = tracked_[job.key];
      ++t.attempts;
      t.due = std::chrono::steady_clock::now() + backoff(t.attempts);
      t.busy = false;
    }
  }
  if (delivered || gone) finish(job.key, delivered);
  wake();  // a slot for this URL is free
}

}  // namespace rapport
