#include "daemon/writer.h"

#include <chrono>
#include <string>
#include <utility>

#include "common/log.h"

namespace rapport {

Writer::Writer(Store& store, Metrics& metrics, WriterOptions options, ApplyConfig apply, std::uint32_t partition)
    : store_(store),
      metrics_(metrics),
      partition_queue_depth_(metrics.partition_queue_depth(partition)),
      partition_commits_(metrics.partition_commits(partition)),
      options_(options),
      apply_(apply) {
  metrics_.queue_capacity().Increment(static_cast<double>(options_.queue_capacity_events));
}

Writer::~Writer() { stop(); }

void Writer::start() {
  thread_ = std::thread([this] { run(); });
}

void Writer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  accepting_.store(false, std::memory_order_release);
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Writer::has_room_locked(std::size_t n) const {
  // One oversized submission is let through when the queue is empty, so nothing can stall forever.
  return !stopping_ && !(queued_events_ > 0 && queued_events_ + n > options_.queue_capacity_events);
}

void Writer::push_locked(std::unique_ptr<Submission> submission, std::size_t n) {
  queued_events_ += n;
  queue_.emplace_back(std::move(submission));
  metrics_.queue_depth().Increment(static_cast<double>(n));
  partition_queue_depth_.Increment(static_cast<double>(n));
}

bool Writer::try_submit(std::unique_ptr<Submission>& submission) {
  const std::size_t n = submission->events.size() + submission->rejections.size();
  {
    std::lock_guard lock(mutex_);
    if (!has_room_locked(n)) return false;
    push_locked(std::move(submission), n);
  }
  wake_.notify_one();
  return true;
}

bool Writer::try_submit_parts(std::span<Writer* const> writers, std::vector<std::unique_ptr<Submission>>& parts) {
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(writers.size());
  for (std::size_t i = 0; i < writers.size(); ++i) {
    if (!parts[i]) continue;
    locks.emplace_back(writers[i]->mutex_);
    if (!writers[i]->has_room_locked(parts[i]->events.size() + parts[i]->rejections.size())) return false;
  }
  std::vector<Writer*> woken;
  for (std::size_t i = 0; i < writers.size(); ++i) {
    if (!parts[i]) continue;
    const std::size_t n = parts[i]->events.size() + parts[i]->rejections.size();
    writers[i]->push_locked(std::move(parts[i]), n);
    woken.push_back(writers[i]);
  }
  locks.clear();
  for (Writer* w : woken) w->wake_.notify_one();
  return true;
}

bool Writer::post(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    queue_.emplace_back(std::move(job));
  }
  wake_.notify_one();
  return true;
}

void Writer::set_apply_config(const ApplyConfig& apply) {
  std::lock_guard lock(mutex_);
  apply_ = apply;
}

bool Writer::request_checkpoint() {
  return post([this](Store&) { checkpoint_step(true); });
}

void Writer::checkpoint_step(bool begin_now) {
  // --log-level debug: the checkpoint's steps (begin, each slice, end), from the store's counters.
  const bool debug = log_enabled(LogLevel::kDebug);
  const StoreStats before = debug ? store_.stats() : StoreStats{};
  const auto started = std::chrono::steady_clock::now();
  auto more = store_.checkpoint_step(begin_now);
  const auto finished = std::chrono::steady_clock::now();
  metrics_.checkpoint_slice_duration().Observe(std::chrono::duration<double>(finished - started).count());
  if (!more.ok()) {
    metrics_.checkpoint_failures().Increment();
    if (!checkpoint_failing_) log_warn(more.message() + " (retried; the journal holds every acknowledged event)");
    checkpoint_failing_ = true;
    checkpointing_ = false;  // retried after the next batch or request, not in a tight loop
    return;
  }
  if (checkpoint_failing_) log_info("checkpoint resumed");
  checkpoint_failing_ = false;
  checkpointing_ = *more;
  if (debug) log_checkpoint_step(before, started, finished);
}

void Writer::log_checkpoint_step(const StoreStats& before, std::chrono::steady_clock::time_point started,
                                 std::chrono::steady_clock::time_point finished) {
  using Ms = std::chrono::duration<double, std::milli>;
  const StoreStats after = store_.stats();
  if (after.checkpoint_slices == before.checkpoint_slices && after.checkpoints == before.checkpoints) return;
  if (!before.checkpoint_in_progress) {
    checkpoint_started_ = started;
    checkpoint_first_slice_ = before.checkpoint_slices;
    log_debug("checkpoint begin", {{"pending_events", before.pending_events}});
  }
  log_debug("checkpoint slice", {{"slice", after.checkpoint_slices - checkpoint_first_slice_},
                                 {"ms", Ms(finished - started).count()},
                                 {"pending_events", after.pending_events}});
  if (after.checkpoints != before.checkpoints) {
    log_debug("checkpoint end", {{"slices", after.checkpoint_slices - checkpoint_first_slice_},
                                 {"customers", after.customers},
                                 {"events", after.events},
                                 {"pending_events", after.pending_events},
                                 {"ms", Ms(finished - checkpoint_started_).count()}});
  }
}

bool Writer::busy() const {
  std::lock_guard lock(mutex_);
  return in_hand_ || !queue_.empty();
}

void Writer::run() {
  std::vector<std::unique_ptr<Submission>> batch;
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      if (queue_.empty() && checkpointing_ && !stopping_) {
        // Idle: the next slice of the checkpoint in progress (the queue is checked again after it).
        // Busy and counted as progress like any other work, so a stuck slice starves the watchdog.
        in_hand_ = true;
        lock.unlock();
        checkpoint_step(false);
        lock.lock();
        in_hand_ = false;
        lock.unlock();
        progress_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        in_hand_ = false;
        return;  // stopping and drained; the Store completes the checkpoint when it closes
      }
      // Take either one job, or a run of submissions up to the batch limit.
      if (std::holds_alternative<Job>(queue_.front())) {
        job = std::move(std::get<Job>(queue_.front()));
        queue_.pop_front();
      } else {
        std::size_t events = 0;
        while (!queue_.empty() && std::holds_alternative<std::unique_ptr<Submission>>(queue_.front())) {
          auto& next = std::get<std::unique_ptr<Submission>>(queue_.front());
          const std::size_t n = next->events.size() + next->rejections.size();
          if (!batch.empty() && events + n > options_.batch_max_events) break;
          events += n;
          queued_events_ -= n;
          batch.push_back(std::move(next));
          queue_.pop_front();
        }
        metrics_.queue_depth().Decrement(static_cast<double>(events));
        partition_queue_depth_.Decrement(static_cast<double>(events));
      }
      in_hand_ = true;
    }
    if (job) {
      job(store_);
    } else {
      stall_if_due();
      commit(batch);
      batch.clear();
    }
    {
      std::lock_guard lock(mutex_);
      in_hand_ = false;
      if (on_change_) on_change_();
    }
    progress_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Writer::set_on_change(std::function<void()> on_change) {
  std::lock_guard lock(mutex_);
  on_change_ = std::move(on_change);
}

void Writer::stall_if_due() {
  const std::uint64_t commit = commits_++;
  if (!options_.test_stall_after_commits || commit < *options_.test_stall_after_commits) return;
  std::unique_lock lock(mutex_);
  if (stopping_) return;  // released: from now on every commit goes through
  log_warn("test hook: the storage writer is stalled after " + std::to_string(commit) + " commits until shutdown");
  wake_.wait(lock, [&] { return stopping_; });
}

void Writer::commit(std::vector<std::unique_ptr<Submission>>& batch) {
  ApplyConfig apply;
  {
    std::lock_guard lock(mutex_);
    apply = apply_;
  }
  events_.clear();
  dead_letters_.clear();
  sources_.clear();
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  for (const auto& s : batch) {
    events_.insert(events_.end(), s->events.begin(), s->events.end());
    if (s->source) sources_.push_back(*s->source);  // a later one of the same topic partition wins
    for (const Rejection& r : s->rejections) {
      dead_letters_.push_back(DeadLetter{now_ms, std::string(transport_name(s->transport)),
                                         std::string(reject_reason_label(r.reason)), r.message, r.payload});
    }
  }

  const auto started = std::chrono::steady_clock::now();
  Status status = store_.apply_batch(events_, apply, outcomes_, dead_letters_, sources_);
  const auto finished = std::chrono::steady_clock::now();
  metrics_.commit_duration().Observe(std::chrono::duration<double>(finished - started).count());
  metrics_.commit_batch_events().Observe(static_cast<double>(events_.size() + dead_letters_.size()));
  if (!status.ok()) metrics_.commit_failures().Increment();
  partition_commits_.Increment();

  std::size_t offset = 0;
  for (auto& s : batch) {
    SubmissionResult result;
    result.status = status;
    if (status.ok()) {
      result.outcomes.reserve(s->events.size());
      for (std::size_t i = 0; i < s->events.size(); ++i) {
        result.outcomes.push_back(outcomes_[offset + i] == EventOutcome::kAccepted ? Outcome::kAccepted
                                                                                   : Outcome::kDuplicate);
      }
    }
    offset += s->events.size();
    if (status.ok() && s->dead_letters_dropped > 0) {
      metrics_.dead_letters_dropped().Increment(static_cast<double>(s->dead_letters_dropped));
    }
    // A part of a split submission has no received_at: the sink observes the whole once every part is done.
    if (s->received_at != std::chrono::steady_clock::time_point{}) {
      metrics_.ack_latency(s->transport).Observe(std::chrono::duration<double>(finished - s->received_at).count());
    }
    if (s->done) s->done(std::move(result));
  }
  // Acknowledged: now the checkpoint's next slice, or its first if one is due.
  if (status.ok()) checkpoint_step(false);
}

}  // namespace rapport
