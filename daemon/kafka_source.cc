#include "daemon/kafka_source.h"

#include <atomic>
#include <set>
#include <utility>
#include <vector>

namespace rapport {

Result<std::optional<std::int64_t>> KafkaSource::stored_offset(const std::string& topic, std::int32_t partition) {
  if (partition < 0 || static_cast<std::uint32_t>(partition) >= store_.partition_count()) {
    return Status::Error("topic " + topic + " partition " + std::to_string(partition) + " has no engine partition (" +
                         std::to_string(store_.partition_count()) + " partitions)");
  }
  return store_.partition(static_cast<std::uint32_t>(partition)).source_offset(topic, partition);
}

bool KafkaSource::try_submit(std::uint32_t partition, std::unique_ptr<Submission>& submission) {
  if (partition >= writers_.count()) return false;
  if (partition == 0 || submission->rejections.empty()) return writers_.partition(partition).try_submit(submission);
  // Dead letters live in partition 0: split off a part for it; complete the chunk once both parts have.
  struct Joint {
    std::atomic<int> left{2};
    std::mutex mutex;
    SubmissionResult events;  // partition k's result
    Status dead_letters;      // partition 0's status
    std::function<void(SubmissionResult&&)> done;
  };
  auto joint = std::make_shared<Joint>();
  auto finish = [joint] {
    if (joint->left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    SubmissionResult result = std::move(joint->events);
    if (result.status.ok() && !joint->dead_letters.ok()) result.status = joint->dead_letters;
    if (joint->done) joint->done(std::move(result));
  };
  auto letters = std::make_unique<Submission>();
  letters->transport = submission->transport;
  letters->rejections = std::move(submission->rejections);
  letters->dead_letters_dropped = submission->dead_letters_dropped;
  letters->done = [joint, finish](SubmissionResult&& r) {
    {
      std::lock_guard lock(joint->mutex);
      joint->dead_letters = r.status;
    }
    finish();
  };
  std::function<void(SubmissionResult &&)> original = std::move(submission->done);
  submission->done = [joint, finish](SubmissionResult&& r) {
    {
      std::lock_guard lock(joint->mutex);
      joint->events = std::move(r);
    }
    finish();
  };
  std::vector<std::unique_ptr<Submission>> parts(writers_.count());
  parts[0] = std::move(letters);
  parts[partition] = std::move(submission);
  std::vector<Writer*> writers;
  for (std::uint32_t i = 0; i < writers_.count(); ++i) writers.push_back(&writers_.partition(i));
  joint->done = std::move(original);
  if (Writer::try_submit_parts(writers, parts)) return true;
  // Not queued: put the submission back as it was.
  submission = std::move(parts[partition]);
  submission->rejections = std::move(parts[0]->rejections);
  submission->done = std::move(joint->done);
  return false;
}

KafkaMetrics::KafkaMetrics(prometheus::Registry& registry) {
  lag_ = &prometheus::BuildGauge()
              .Name("rapport_kafka_consumer_lag")
              .Help(
                  "Records in each held input topic partition after the offset stored in LMDB (high watermark - "
                  "stored offset)")
              .Register(registry);
  rebalances_ = &prometheus::BuildCounter()
                     .Name("rapport_kafka_rebalances_total")
                     .Help("Consumer group rebalance callbacks (assignments and revocations) this instance ran")
                     .Register(registry)
                     .Add({});
  records_ = &prometheus::BuildCounter()
                  .Name("rapport_kafka_records_total")
                  .Help("Records read from the input topic (duplicates of a rewind included)")
                  .Register(registry)
                  .Add({});
  bad_records_ = &prometheus::BuildCounter()
                      .Name("rapport_kafka_bad_records_total")
                      .Help("Records turned into dead letters (not an event, or keyed to the wrong partition)")
                      .Register(registry)
                      .Add({});
}

void KafkaMetrics::refresh(const KafkaConsumer& consumer) {
  std::lock_guard lock(mutex_);
  std::set<std::int32_t> held;
  for (const auto& l : consumer.lag()) {
    held.insert(l.partition);
    auto& gauge = lag_by_partition_[l.partition];
    if (gauge == nullptr) gauge = &lag_->Add({{"partition", std::to_string(l.partition)}});
    gauge->Set(static_cast<double>(l.lag));
  }
  // A partition this instance no longer holds is another instance's to report.
  for (auto it = lag_by_partition_.begin(); it != lag_by_partition_.end();) {
    if (held.contains(it->first)) {
      ++it;
      continue;
    }
    lag_->Remove(it->second);
    it = lag_by_partition_.erase(it);
  }
  auto advance = [](prometheus::Counter* counter, std::uint64_t now, std::uint64_t& last) {
    if (now > last) counter->Increment(static_cast<double>(now - last));
    last = now;
  };
  advance(rebalances_, consumer.rebalances(), last_rebalances_);
  advance(records_, consumer.records(), last_records_);
  advance(bad_records_, consumer.bad_records(), last_bad_records_);
}

}  // namespace rapport
