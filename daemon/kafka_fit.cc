#include "daemon/kafka_fit.h"

#include <random>

#include "common/clock.h"
#include "common/log.h"

namespace rapport {
namespace {

std::string random_instance() {
  std::random_device rd;
  const std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 0; i < 16; ++i) out[static_cast<std::size_t>(i)] = kHex[(v >> (4 * (15 - i))) & 0xf];
  return out;
}

}  // namespace

KafkaFit::KafkaFit(const PartitionedStore& store, prometheus::Registry& registry, std::chrono::milliseconds timeout,
                   HeldPartitions held, Join join)
    : store_(store),
      partitions_(store.partition_count()),
      timeout_(timeout),
      instance_(random_instance()),
      held_(std::move(held)),
      join_(std::move(join)) {
  skipped_ = &prometheus::BuildCounter()
                  .Name("rapport_kafka_stats_skipped_total")
                  .Help("Stats-topic records skipped because they did not decode (or name another partition count)")
                  .Register(registry)
                  .Add({});
  published_ = &prometheus::BuildCounter()
                    .Name("rapport_kafka_stats_published_total")
                    .Help("Stats-topic records this instance published (its partitions' stats for a fit)")
                    .Register(registry)
                    .Add({});
  auto& slots = prometheus::BuildCounter()
                    .Name("rapport_kafka_fit_slots_total")
                    .Help(
                        "Fits in Kafka mode by whether every partition's stats came in (collected) or a partition "
                        "was still missing after [kafka] stats_timeout_s (skipped: the previous model stays)")
                    .Register(registry);
  collected_ = &slots.Add({{"outcome", "collected"}});
  slots_skipped_ = &slots.Add({{"outcome", "skipped"}});
}

KafkaFit::~KafkaFit() {
  stop();
  topic_.reset();  // joins the follower
}

Status KafkaFit::start(const kafka::ClientOptions& client, std::string topic) {
  auto followed = kafka::FollowedTopic::start(client, std::move(topic), "stats topic",
                                              [this](const kafka::FollowedTopic::Record& r) { on_record(r); });
  if (!followed) return followed.status();
  topic_ = std::move(*followed);
  return Status::Ok();
}

void KafkaFit::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
}

void KafkaFit::on_record(const kafka::FollowedTopic::Record& record) {
  if (!record.value) return;  // a tombstone: nothing to collect
  auto decoded = decode_stats_record(*record.value);
  if (decoded.ok() && decoded->partitions != partitions_) {
    decoded = Status::Error("stats record of " + std::to_string(decoded->partitions) +
                            " partitions; this instance has " + std::to_string(partitions_));
  }
  bool join = false;
  std::int64_t as_of = 0;
  {
    std::lock_guard lock(mutex_);
    if (!decoded.ok()) {
      skipped_->Increment();
      if (!skip_logged_) {
        skip_logged_ = true;
        log_warn("kafka: stats record skipped (further ones are only counted): " + decoded.message(),
                 {{"key", std::string(record.key)}});
      }
      return;
    }
    StatsRecord& r = *decoded;
    as_of = r.as_of_ms;
    Publication& pub = slots_[as_of][r.partition][r.publication];
    if (pub.chunks != 0 && pub.chunks != r.chunks) {  // a publication's chunks disagree: keep the newest count
      pub.got.clear();
    }
    pub.chunks = r.chunks;
    pub.got[r.chunk] = std::move(r.stats);
    // Join a fit another instance asked for now; records older than the timeout are history.
    const bool recent = record.timestamp_ms < 0 || record.timestamp_ms >= wall_ms() - timeout_.count();
    if (recent && !stopping_ && handled_.count(as_of) == 0) {
      handled_.insert(as_of);
      while (handled_.size() > 64) handled_.erase(handled_.begin());
      join = true;
    }
    prune();
  }
  changed_.notify_all();
  if (join && join_) join_(as_of);
}

void KafkaFit::prune() {
  while (slots_.size() > kMaxSlots) {
    auto victim = slots_.begin();
    if (collecting_ && victim->first == *collecting_) ++victim;
    slots_.erase(victim);
  }
}

const KafkaFit::Publication* KafkaFit::complete_publication(const Slot& slot, std::uint32_t partition) {
  const auto it = slot.find(partition);
  if (it == slot.end()) return nullptr;
  for (const auto& [id, pub] : it->second) {  // ids ascending
    if (pub.complete()) return &pub;
  }
  return nullptr;
}

Status KafkaFit::publish(std::int64_t as_of_ms, std::uint32_t partition, const std::string& publication,
                         const EvaluateConfig& scoring) {
  PopulationStats stats;
  Status visited = store_.partition(partition).for_each_customer([&](std::string_view, const CustomerState& state) {
    stats.add(state, as_of_ms, scoring);
    return true;
  });
  if (!visited.ok()) return Status::Error("partition " + std::to_string(partition) + ": " + visited.message());
  const auto encoded = encode_stats_records(as_of_ms, partition, partitions_, publication, stats);
  std::vector<std::pair<std::string, std::optional<std::string>>> records;
  records.reserve(encoded.size());
  for (const auto& [key, value] : encoded) records.emplace_back(key, value);
  if (Status s = topic_->publish(records, timeout_); !s.ok()) return s;
  published_->Increment(static_cast<double>(records.size()));
  return Status::Ok();
}

Result<PopulationStats> KafkaFit::collect(std::int64_t as_of_ms, const EvaluateConfig& scoring) {
  std::string publication;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || !topic_) return Status::Error("kafka: the stats topic is not running");
    handled_.insert(as_of_ms);
    while (handled_.size() > 64) handled_.erase(handled_.begin());
    collecting_ = as_of_ms;
    publication = instance_ + "-" + std::to_string(++publications_);
  }
  const auto missing = [&] {  // mutex_
    std::vector<std::uint32_t> out;
    const auto slot = slots_.find(as_of_ms);
    for (std::uint32_t p = 0; p < partitions_; ++p) {
      if (slot == slots_.end() || complete_publication(slot->second, p) == nullptr) out.push_back(p);
    }
    return out;
  };
  // Until every partition is in: publish each partition this instance holds whose stats are not in yet
  // (re-checked while waiting, so a partition assigned here meanwhile is published too).
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  std::set<std::uint32_t> published;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    const std::vector<std::uint32_t> held = held_ ? held_() : std::vector<std::uint32_t>{};
    lock.lock();
    std::optional<std::uint32_t> next;
    for (std::uint32_t p : held) {
      if (p < partitions_ && published.count(p) == 0 && complete_publication(slots_[as_of_ms], p) == nullptr) {
        next = p;
        break;
      }
    }
    if (next) {
      lock.unlock();
      Status s = publish(as_of_ms, *next, publication, scoring);
      lock.lock();
      if (!s.ok()) {
        collecting_.reset();
        return s;
      }
      published.insert(*next);
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (missing().empty() || now >= deadline) break;
    changed_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(500)));
  }
  collecting_.reset();
  if (stopping_) return Status::Error("shutting down");
  if (const auto absent = missing(); !absent.empty()) {
    slots_skipped_->Increment();
    std::string list;
    for (std::uint32_t p : absent) list += (list.empty() ? "" : ", ") + std::to_string(p);
    return Status::Error("fit as of " + format_rfc3339(as_of_ms) + " skipped: no stats for partition(s) " + list +
                         " on the stats topic within " + std::to_string(timeout_.count() / 1000) +
                         " s (their owner is gone or behind); the previous model stays");
  }
  PopulationStats merged;
  const Slot& slot = slots_.at(as_of_ms);
  for (std::uint32_t p = 0; p < partitions_; ++p) {
    const Publication* pub = complete_publication(slot, p);
    PopulationStats part;
    for (const auto& [chunk, stats] : pub->got) {
      for (const auto& entry : stats.buyers) part.buyers[entry.first] += entry.second;
    }
    part.customers = pub->got.begin()->second.customers;
    part.non_buyer_leads = pub->got.begin()->second.non_buyer_leads;
    merged.merge(part);
  }
  // Older slots are done with (a newer model wins anyway); this one stays for another fit asked of it.
  slots_.erase(slots_.begin(), slots_.lower_bound(as_of_ms));
  collected_->Increment();
  return merged;
}

}  // namespace rapport
