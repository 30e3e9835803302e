#include "daemon/kafka_source.h"

#include <atomic>
#include <future>
#include <set>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/source_offset.h"
#include "daemon/kafka_state.h"

namespace rapport {

KafkaSource::~KafkaSource() = default;

Status KafkaSource::enable_state(const KafkaOptions& options, KafkaStateMetrics& metrics) {
  options_ = options;
  if (!options.changes_topic.empty()) {
    auto publisher = kafka::ChangesPublisher::create(kafka::ClientOptions{options.brokers, options.properties},
                                                     options.changes_topic);
    if (!publisher) return publisher.status();
    publisher_ = std::move(*publisher);
  }
  state_metrics_ = &metrics;
  return Status::Ok();
}

Result<std::optional<std::int64_t>> KafkaSource::take_over(const std::string& topic, std::int32_t partition) {
  if (partition < 0 || static_cast<std::uint32_t>(partition) >= store_.partition_count()) {
    return Status::Error("topic " + topic + " partition " + std::to_string(partition) + " has no engine partition (" +
                         std::to_string(store_.partition_count()) + " partitions)");
  }
  const auto p = static_cast<std::uint32_t>(partition);
  if (state_metrics_ == nullptr) return store_.partition(p).source_offset(topic, partition);
  // The restore's commit goes through partition p's writer, ordered with its other writes (erasures, an
  // earlier owner's chunk); the consumer thread waits for it.
  const RestoreMode mode = publisher_ ? options_.restore : RestoreMode::kInput;
  kafka::RestoreOptions restore;
  restore.client = kafka::ClientOptions{options_.brokers, options_.properties};
  restore.topic = options_.changes_topic;
  restore.partition = partition;
  auto promise = std::make_shared<std::promise<Result<TakeOver>>>();
  std::future<Result<TakeOver>> taken = promise->get_future();
  const bool posted = writers_.partition(p).post([this, promise, mode, restore, topic, partition](Store& store) {
    auto local = store.source_offset(topic, partition);
    if (!local) {
      promise->set_value(local.status());
      return;
    }
    promise->set_value(
        take_over_partition(mode, restore, store, source_offset_key(topic, partition), *local, *state_metrics_));
  });
  if (!posted) return Status::Error("partition " + std::to_string(p) + "'s writer has stopped");
  try {
    Result<TakeOver> t = taken.get();
    if (!t) return Status::Error("taking over partition " + std::to_string(p) + ": " + t.message());
    return t->resume;
  } catch (const std::future_error&) {  // the writer stopped before it ran the job
    return Status::Error("partition " + std::to_string(p) + "'s writer stopped before the take-over");
  }
}

void KafkaSource::let_go(const std::string&, std::int32_t partition) {
  if (!publisher_) return;
  // What was published for the partition reaches the cluster before the next owner restores it.
  if (Status flushed = publisher_->flush(std::chrono::seconds(30)); !flushed) {
    log_warn("kafka: changes topic not flushed before partition " + std::to_string(partition) +
             " was let go (its next owner restores from an older position and replays the input from there): " +
             flushed.message());
  }
}

void KafkaSource::produce_failed(const Status& status) {
  const std::uint64_t n = produce_failures_.fetch_add(1, std::memory_order_relaxed);
  if (n % 1000 == 0) {
    log_warn(
        "kafka: publishing to the changes topic failed (ingest goes on; the first of every 1000 such "
        "failures is logged): " +
        status.message());
  }
}

void KafkaSource::publish_commit(std::uint32_t partition, const std::vector<std::string>& ids,
                                 const SubmissionResult& result, std::int64_t next) {
  if (!result.status.ok()) return;  // nothing committed
  Store& store = store_.partition(partition);
  std::set<std::string_view> changed;
  for (std::size_t i = 0; i < ids.size() && i < result.outcomes.size(); ++i) {
    if (result.outcomes[i] == Outcome::kAccepted) changed.insert(ids[i]);
  }
  std::vector<CustomerState> states;
  std::vector<std::string_view> names;
  states.reserve(changed.size());
  for (std::string_view id : changed) {
    auto state = store.get_customer(id);
    if (!state) {
      // Without this snapshot the marker would claim a state the topic does not hold: publish nothing
      // for this commit (a restore resumes from the previous marker and replays the input from there).
      produce_failed(Status::Error("cannot read customer state to publish: " + state.message()));
      return;
    }
    if (!*state) continue;  // gone (not expected: erasures run on this thread)
    states.push_back(std::move(**state));
    names.push_back(id);
  }
  std::vector<kafka::ChangedCustomer> out;
  out.reserve(states.size());
  for (std::size_t i = 0; i < states.size(); ++i) out.push_back(kafka::ChangedCustomer{names[i], &states[i]});
  if (Status s = publisher_->publish(static_cast<std::int32_t>(partition), out, static_cast<std::uint64_t>(next)); !s) {
    produce_failed(s);
  }
}

void KafkaSource::erased(std::string_view customer_id) {
  if (!publisher_) return;
  const auto partition = static_cast<std::int32_t>(store_.partition_of(customer_id));
  if (Status s = publisher_->publish_erasure(partition, customer_id); !s) produce_failed(s);
}

void KafkaSource::refresh_metrics() {
  if (state_metrics_ != nullptr && publisher_) state_metrics_->refresh(publisher_->stats());
}

bool KafkaSource::try_submit(std::uint32_t partition, std::unique_ptr<Submission>& submission) {
  if (partition >= writers_.count()) return false;
  // With a changes topic: publish what the commit changed, on the writer thread, before the chunk completes.
  std::function<void(const SubmissionResult&)> after_commit;
  if (publisher_ && submission->source) {
    std::vector<std::string> ids;
    ids.reserve(submission->events.size());
    for (const Event& e : submission->events) ids.emplace_back(e.customer_id.view());
    after_commit = [this, partition, ids = std::move(ids), next = submission->source->next_offset](
                       const SubmissionResult& result) { publish_commit(partition, ids, result, next); };
  }
  if (partition == 0 || submission->rejections.empty()) {
    if (!after_commit) return writers_.partition(partition).try_submit(submission);
    std::function<void(SubmissionResult &&)> original = submission->done;
    submission->done = [after_commit = std::move(after_commit), original](SubmissionResult&& r) {
      after_commit(r);
      if (original) original(std::move(r));
    };
    if (writers_.partition(partition).try_submit(submission)) return true;
    submission->done = std::move(original);
    return false;
  }
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
  submission->done = [joint, finish, after_commit](SubmissionResult&& r) {
    if (after_commit) after_commit(r);
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
