#include "daemon/partitioned_sink.h"

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "storage/partitioner.h"

namespace rapport {
namespace {

// The original submission's completion, shared by its parts.
struct Join {
  std::function<void(SubmissionResult&&)> done;
  Transport transport = Transport::kTcp;
  std::chrono::steady_clock::time_point received_at{};
  Metrics* metrics = nullptr;
  std::vector<std::vector<std::uint32_t>> positions;  // per partition: the original index of each part event

  std::mutex mutex;
  std::size_t remaining = 0;      // guarded by mutex
  Status status;                  // guarded by mutex: the first failed part's
  std::vector<Outcome> outcomes;  // guarded by mutex

  void complete(std::uint32_t partition, SubmissionResult&& part) {
    SubmissionResult whole;
    {
      std::lock_guard lock(mutex);
      if (!part.status.ok()) {
        if (status.ok()) status = part.status;
      } else {
        const auto& at = positions[partition];
        for (std::size_t j = 0; j < at.size() && j < part.outcomes.size(); ++j) outcomes[at[j]] = part.outcomes[j];
      }
      if (--remaining > 0) return;
      whole.status = status;
      if (status.ok()) whole.outcomes = std::move(outcomes);
    }
    metrics->ack_latency(transport).Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - received_at).count());
    if (done) done(std::move(whole));
  }
};

// The original completion of a submission with identify items: runs once the writers' commit and every
// merge answered (and the refused items' dead letters are stored).
struct IdentifyJoin {
  std::function<void(SubmissionResult&&)> done;
  std::vector<Identify> items;
  Transport transport = Transport::kTcp;
  Writer* meta = nullptr;  // stores the dead letters of refused items

  std::mutex mutex;
  std::size_t remaining = 0;                        // guarded by mutex: the writers' commit + one per merge
  SubmissionResult result;                          // guarded by mutex: the writers'
  Status failure;                                   // guarded by mutex: the first merge that could not run
  std::vector<std::optional<std::string>> refusal;  // guarded by mutex: per item, why its merge was refused

  void committed(SubmissionResult&& written) {
    {
      std::lock_guard lock(mutex);
      result = std::move(written);
    }
    finish_one();
  }

  void merged(std::size_t item, int status, std::string error) {
    {
      std::lock_guard lock(mutex);
      if (status >= 500) {
        if (failure.ok())
          failure = Status::Error("identify (line or item " + std::to_string(items[item].index) + "): " + error);
      } else if (status >= 400) {
        refusal[item] = std::move(error);
      }
    }
    finish_one();
  }

  void finish_one() {
    {
      std::lock_guard lock(mutex);
      if (--remaining > 0) return;
    }
    // The last one: nothing else touches the join from here.
    if (result.status.ok() && !failure.ok()) {
      result.status = failure;
      result.outcomes.clear();
    }
    if (!result.status.ok()) {
      if (done) done(std::move(result));
      return;
    }
    std::vector<DeadLetter> letters;
    const auto now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!refusal[i]) continue;
      Rejection& r = result.refused.emplace_back();
      r.index = items[i].index;
      r.reason = RejectReason::kIdentityRefused;
      r.message = *refusal[i];
      if (items[i].dead_letter) {
        letters.push_back(DeadLetter{now_ms, std::string(transport_name(transport)),
                                     std::string(reject_reason_label(r.reason)), r.message,
                                     std::move(items[i].payload)});
      }
    }
    if (letters.empty() || meta == nullptr) {
      if (done) done(std::move(result));
      return;
    }
    complete_after_letters(std::move(letters));
  }

  // Stores the dead letters on partition 0's writer, then completes (a storage error fails the submission).
  void complete_after_letters(std::vector<DeadLetter> letters);
  std::weak_ptr<IdentifyJoin> weak;  // itself (set at creation): the writer job keeps the join alive
};

void IdentifyJoin::complete_after_letters(std::vector<DeadLetter> letters) {
  std::shared_ptr<IdentifyJoin> join = weak.lock();
  auto job = [join, letters = std::move(letters)](Store& store) mutable {
    if (Status s = store.add_dead_letters(letters); !s.ok()) {
      join->result.status = Status::Error("storing the dead letters of refused identify items: " + s.message());
      join->result.outcomes.clear();
      join->result.refused.clear();
    }
    if (join->done) join->done(std::move(join->result));
  };
  if (!meta->post(job)) {
    // The writer has stopped: the refusals are still answered, without their dead letters.
    if (done) done(std::move(result));
  }
}

}  // namespace

PartitionedSink::PartitionedSink(std::vector<Writer*> writers, Metrics& metrics)
    : writers_(std::move(writers)), metrics_(metrics) {}

bool PartitionedSink::accepting() const {
  for (const Writer* w : writers_) {
    if (!w->accepting()) return false;
  }
  return true;
}

bool PartitionedSink::try_submit(std::unique_ptr<Submission>& submission) {
  if (!submission->identifies.empty()) return submit_identifies(submission);
  return submit_relabeled(submission);
}

bool PartitionedSink::submit_relabeled(std::unique_ptr<Submission>& submission) {
  if (aliases_ == nullptr) return submit_routed(submission);
  std::shared_lock lock(aliases_->route_mutex);
  aliases_->relabel(submission->events);
  return submit_routed(submission);
}

bool PartitionedSink::submit_identifies(std::unique_ptr<Submission>& submission) {
  Submission& whole = *submission;
  auto join = std::make_shared<IdentifyJoin>();
  join->weak = join;
  join->transport = whole.transport;
  join->meta = writers_[0];
  join->items = std::move(whole.identifies);
  whole.identifies.clear();
  join->refusal.resize(join->items.size());
  join->remaining = 1 + join->items.size();
  join->done = std::move(whole.done);
  whole.done = [join](SubmissionResult&& written) { join->committed(std::move(written)); };
  if (!submit_relabeled(submission)) {
    // Nothing queued: the submission goes back to the caller as it was.
    whole.done = std::move(join->done);
    whole.identifies = std::move(join->items);
    return false;
  }
  // After the rest is queued: each merge parks the writers behind it, so the same submission's events to
  // either id are stored before the merge moves them.
  for (std::size_t i = 0; i < join->items.size(); ++i) {
    MergeDone merged = [join, i](int status, std::string error) { join->merged(i, status, std::move(error)); };
    if (merge_) {
      merge_(join->items[i].customer_id, join->items[i].aliases, std::move(merged));
    } else {
      merged(409, merge_refusal_);
    }
  }
  return true;
}

bool PartitionedSink::submit_routed(std::unique_ptr<Submission>& submission) {
  const auto count = static_cast<std::uint32_t>(writers_.size());
  if (count == 1) return writers_[0]->try_submit(submission);
  Submission& whole = *submission;
  const bool has_letters = !whole.rejections.empty() || whole.dead_letters_dropped > 0;

  auto join = std::make_shared<Join>();
  join->positions.resize(count);
  for (std::size_t i = 0; i < whole.events.size(); ++i) {
    const std::uint32_t p = partition_of(whole.events[i].customer_id.view(), count);
    join->positions[p].push_back(static_cast<std::uint32_t>(i));
  }
  std::uint32_t touched = 0, only = 0;
  for (std::uint32_t p = 0; p < count; ++p) {
    if (!join->positions[p].empty() || (p == 0 && has_letters)) {
      ++touched;
      only = p;
    }
  }
  if (touched <= 1) return writers_[only]->try_submit(submission);

  std::vector<std::unique_ptr<Submission>> parts(count);
  for (std::uint32_t p = 0; p < count; ++p) {
    if (join->positions[p].empty() && !(p == 0 && has_letters)) continue;
    auto part = std::make_unique<Submission>();
    part->transport = whole.transport;
    part->events.reserve(join->positions[p].size());
    part->event_index.reserve(join->positions[p].size());
    for (const std::uint32_t i : join->positions[p]) {
      part->events.push_back(whole.events[i]);
      if (i < whole.event_index.size()) part->event_index.push_back(whole.event_index[i]);
    }
    if (p == 0) {
      part->rejections = std::move(whole.rejections);
      part->dead_letters_dropped = whole.dead_letters_dropped;
    }
    // received_at stays unset: the join observes the ack latency of the whole.
    part->done = [join, p](SubmissionResult&& result) { join->complete(p, std::move(result)); };
    parts[p] = std::move(part);
  }
  join->done = std::move(whole.done);
  join->transport = whole.transport;
  join->received_at = whole.received_at;
  join->metrics = &metrics_;
  join->remaining = touched;
  join->outcomes.assign(whole.events.size(), Outcome::kAccepted);
  if (!Writer::try_submit_parts(writers_, parts)) {
    // Nothing queued: the submission goes back to the caller as it was.
    whole.done = std::move(join->done);
    if (parts[0]) whole.rejections = std::move(parts[0]->rejections);
    return false;
  }
  submission.reset();
  return true;
}

namespace {

std::vector<Writer*> raw(const std::vector<std::unique_ptr<Writer>>& writers) {
  std::vector<Writer*> out;
  for (const auto& w : writers) out.push_back(w.get());
  return out;
}

std::vector<std::unique_ptr<Writer>> make_writers(PartitionedStore& store, Metrics& metrics,
                                                  const WriterOptions& options, const ApplyConfig& apply) {
  std::vector<std::unique_ptr<Writer>> out;
  for (std::uint32_t p = 0; p < store.partition_count(); ++p) {
    out.push_back(std::make_unique<Writer>(store.partition(p), metrics, options, apply, p));
  }
  return out;
}

}  // namespace

Writers::Writers(PartitionedStore& store, Metrics& metrics, const WriterOptions& options, const ApplyConfig& apply)
    : store_(store),
      writers_(make_writers(store, metrics, options, apply)),
      last_progress_(writers_.size(), ~std::uint64_t{0}),
      sink_(raw(writers_), metrics) {
  metrics.partitions().Set(static_cast<double>(writers_.size()));
}

Writers::~Writers() { stop(); }

void Writers::start() {
  for (auto& w : writers_) w->start();
}

void Writers::stop() {
  for (auto& w : writers_) w->stop();
}

void Writers::set_on_change(const std::function<void()>& on_change) {
  for (auto& w : writers_) w->set_on_change(on_change);
}

void Writers::set_apply_config(const ApplyConfig& apply) {
  for (auto& w : writers_) w->set_apply_config(apply);
}

void Writers::request_idle_checkpoints() {
  for (auto& w : writers_) {
    if (!w->busy()) w->request_checkpoint();
  }
}

bool Writers::stalled() {
  bool stalled = false;
  for (std::size_t i = 0; i < writers_.size(); ++i) {
    const std::uint64_t progress = writers_[i]->progress();
    if (progress == last_progress_[i] && writers_[i]->busy()) stalled = true;
    last_progress_[i] = progress;
  }
  return stalled;
}

}  // namespace rapport
