// Writer: one partition's storage writer thread and the bounded queue in front of it
// (rapportd runs one per partition; daemon/partitioned_sink.h splits the fronts' work).
//
// Fronts submit decoded chunks (IngestSink::try_submit); the writer takes
// everything queued (up to batch_max_events) as one group commit, stores it
// durably with Store::apply_batch, then completes every submission with the
// outcome of each of its events — the acknowledgement point — and only then
// writes the next checkpoint slice (Store::checkpoint_step), so no
// acknowledgement waits for checkpoint work. When nothing is queued it keeps
// writing slices until the checkpoint in progress is done. Administrative
// writes (erasure, model metadata) run as jobs on the same thread, in order.
// The Store must be opened with StoreOptions::checkpoint_in_apply_batch off.
// Thread safety: try_submit, post and the accessors may be called from any
// thread; start/stop from the owner.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <variant>
#include <vector>

#include "daemon/config.h"
#include "daemon/metrics.h"
#include "ingest/submission.h"
#include "storage/store.h"

namespace rapport {

class Writer final : public IngestSink {
 public:
  using Job = std::function<void(Store&)>;

  // `partition`: the index of the store's partition (metrics labels, logs).
  Writer(Store& store, Metrics& metrics, WriterOptions options, ApplyConfig apply, std::uint32_t partition = 0);
  ~Writer() override;  // stop()

  void start();
  // Stops taking new work, commits everything queued, completes it, joins. Idempotent.
  void stop();

  bool try_submit(std::unique_ptr<Submission>& submission) override;
  bool accepting() const override { return accepting_.load(std::memory_order_acquire); }

  // All or nothing: queues parts[i] (null = none) on writers[i] if every one
  // of them has room (as try_submit), else queues none and leaves parts as
  // they were. The writers' locks are taken in index order.
  static bool try_submit_parts(std::span<Writer* const> writers, std::vector<std::unique_ptr<Submission>>& parts);

  // Runs `job` on the writer thread after everything queued before it.
  // Returns false if the writer has stopped (the job is not run).
  bool post(Job job);

  void set_apply_config(const ApplyConfig& apply);
  // Begins a checkpoint of whatever is pending (if none is in progress); the
  // writer finishes it in slices between batches and while idle.
  bool request_checkpoint();
  // Called on the writer thread after every commit and job (the change feed's long-polls wake on it).
  // May be set while the writer runs.
  void set_on_change(std::function<void()> on_change);
  // Number of completed writer loop iterations (commits and jobs); the watchdog checks it moves.
  std::uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }
  // True while the writer has work queued or in hand.
  bool busy() const;

 private:
  using Item = std::variant<std::unique_ptr<Submission>, Job>;
  void run();
  void commit(std::vector<std::unique_ptr<Submission>>& batch);
  // The test hook (WriterOptions::test_stall_after_commits): blocks until stop() once it is due.
  void stall_if_due();
  // Under mutex_: whether a submission of n events fits the queue now.
  bool has_room_locked(std::size_t n) const;
  // Under mutex_: queues a submission of n events.
  void push_locked(std::unique_ptr<Submission> submission, std::size_t n);
  void checkpoint_step(bool begin_now);
  // --log-level debug: logs the checkpoint's begin, slice and end that this step made, if any.
  void log_checkpoint_step(const StoreStats& before, std::chrono::steady_clock::time_point started,
                           std::chrono::steady_clock::time_point finished);

  Store& store_;
  Metrics& metrics_;
  prometheus::Gauge& partition_queue_depth_;
  prometheus::Counter& partition_commits_;
  const WriterOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;         // guarded by mutex_
  std::size_t queued_events_ = 0;  // guarded by mutex_
  bool stopping_ = false;          // guarded by mutex_
  bool in_hand_ = false;           // guarded by mutex_
  ApplyConfig apply_;              // guarded by mutex_

  // Guarded by mutex_ (set_on_change).
  std::function<void()> on_change_;

  std::atomic<bool> accepting_{true};
  std::atomic<std::uint64_t> progress_{0};
  std::thread thread_;
  std::uint64_t commits_ = 0;  // writer thread only: group commits started

  // Writer-thread scratch, reused across commits.
  std::vector<Event> events_;
  std::vector<EventOutcome> outcomes_;
  std::vector<DeadLetter> dead_letters_;
  std::vector<SourceOffset> sources_;
  bool checkpointing_ = false;       // a checkpoint is in progress: idle time writes its slices
  bool checkpoint_failing_ = false;  // the last slice failed (logged once until one succeeds)
  std::chrono::steady_clock::time_point checkpoint_started_;  // debug log: when the checkpoint began
  std::uint64_t checkpoint_first_slice_ = 0;                  // debug log: slices committed before it
};

}  // namespace rapport
