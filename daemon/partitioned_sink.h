// PartitionedSink: the IngestSink in front of the partitions' writers.
//
// Splits each Submission by the partition of each event's customer_id
// (storage/partitioner.h); the rejected items (dead letters) go with
// partition 0's part. The parts are queued all or none (Writer::
// try_submit_parts). The original completes once every part has completed:
// outcomes in the original order; if any part failed, the original fails with
// that part's message (the other parts may be stored: a retry is deduplicated).
// Since the original completes only after its last part, a front's answer for
// it (a TCP ack, an HTTP 200) never runs ahead of any partition's commit.
// A submission that touches a single partition is passed on as it is.
// Identify items (Submission::identifies) are taken out first: the rest is
// submitted as above, then one merge per item is queued (set_merge, the
// identity service); the original completes only after the writers' commit
// and every merge, so an ack means the merge is recorded. A refused merge is
// listed in SubmissionResult::refused and stored as a dead letter (by
// partition 0's writer) before the completion; a merge that cannot run
// (shutting down, storage error) fails the submission, as a failed part does.
// Thread safety: try_submit from any thread; completions run on writer threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/alias_table.h"
#include "daemon/metrics.h"
#include "daemon/writer.h"
#include "ingest/submission.h"
#include "storage/partitioned_store.h"

namespace rapport {

// Identity: merges `from` into `survivor` (IdentityService::merge) and calls `done` with the answer's HTTP
// status (200: merged, or merged already; 4xx: refused; 5xx: could not run) and its error.
using MergeDone = std::function<void(int status, std::string error)>;
using MergeFn = std::function<void(std::string survivor, std::vector<std::string> from, MergeDone done)>;

class PartitionedSink final : public IngestSink {
 public:
  // writers[i] writes partition i; at least one.
  PartitionedSink(std::vector<Writer*> writers, Metrics& metrics);

  bool try_submit(std::unique_ptr<Submission>& submission) override;
  bool accepting() const override;
  // Identity: events sent to an alias are relabeled to its survivor before routing (set before the fronts start).
  void set_aliases(const AliasTable* aliases) { aliases_ = aliases; }
  // Identity: runs the merges of identify items (set before the fronts start). Without it (Kafka mode, no
  // identity service) every identify item is refused with `refusal`.
  void set_merge(MergeFn merge, std::string refusal) {
    merge_ = std::move(merge);
    merge_refusal_ = std::move(refusal);
  }

 private:
  bool submit_relabeled(std::unique_ptr<Submission>& submission);
  bool submit_identifies(std::unique_ptr<Submission>& submission);
  bool submit_routed(std::unique_ptr<Submission>& submission);
  std::vector<Writer*> writers_;
  const AliasTable* aliases_ = nullptr;
  MergeFn merge_;
  std::string merge_refusal_ = "identify events are not accepted: rapportd has no identity service here";
  Metrics& metrics_;
};

// One Writer per partition of a PartitionedStore, and the sink in front of them.
// Thread safety: as Writer.
class Writers {
 public:
  Writers(PartitionedStore& store, Metrics& metrics, const WriterOptions& options, const ApplyConfig& apply);
  ~Writers();  // stop()

  void start();
  void stop();  // every writer: stops taking work, drains, joins

  std::uint32_t count() const { return static_cast<std::uint32_t>(writers_.size()); }
  Writer& partition(std::uint32_t index) { return *writers_[index]; }
  // The writer of the customer's partition (erasure).
  Writer& owner(std::string_view customer_id) { return *writers_[store_.partition_of(customer_id)]; }
  // The writer of partition 0, which holds meta and dead letters.
  Writer& meta() { return *writers_[0]; }
  IngestSink& sink() { return sink_; }
  void set_aliases(const AliasTable* aliases) { sink_.set_aliases(aliases); }
  void set_merge(MergeFn merge, std::string refusal) { sink_.set_merge(std::move(merge), std::move(refusal)); }
  bool accepting() const { return sink_.accepting(); }

  void set_apply_config(const ApplyConfig& apply);
  // Writer::set_on_change on every writer.
  void set_on_change(const std::function<void()>& on_change);
  // Asks every idle writer to checkpoint whatever is pending (the clock's checkpoint).
  void request_idle_checkpoints();
  // True if some writer has work in hand or queued and has completed nothing since the last call
  // (the watchdog withholds its ping then). The first call only records progress.
  bool stalled();

 private:
  PartitionedStore& store_;
  std::vector<std::unique_ptr<Writer>> writers_;
  std::vector<std::uint64_t> last_progress_;
  PartitionedSink sink_;
};

}  // namespace rapport
