#include "daemon/kafka_state.h"

#include <chrono>
#include <vector>

#include "common/log.h"

namespace rapport {

std::string encode_input_offset(std::uint64_t offset) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((offset >> (8 * (7 - i))) & 0xff);
  return out;
}

std::optional<std::int64_t> decode_input_offset(std::string_view bytes) {
  if (bytes.size() != 8) return std::nullopt;
  std::uint64_t v = 0;
  for (unsigned char c : bytes) v = (v << 8) | c;
  return static_cast<std::int64_t>(v);
}

Result<TakeOver> take_over_partition(RestoreMode mode, const kafka::RestoreOptions& options, Store& store,
                                     const std::string& offset_key, std::optional<std::int64_t> local,
                                     KafkaStateMetrics& metrics) {
  const auto started = std::chrono::steady_clock::now();
  const auto p = static_cast<std::uint32_t>(options.partition);
  const auto done = [&](TakeOver t) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    metrics.restores(t.source).Increment();
    metrics.restore_duration().Observe(seconds);
    metrics.restore_read(p).Set(0);
    metrics.restore_to_read(p).Set(0);
    log_info("kafka: partition taken over", {{"partition", static_cast<std::int64_t>(p)},
                                             {"source", t.source},
                                             {"customers", t.customers},
                                             {"resume_offset", t.resume ? *t.resume : std::int64_t{0}},
                                             {"seconds", seconds}});
    return t;
  };
  const auto from_input = [&] { return done(TakeOver{local ? "local" : "input", local, 0}); };
  if (mode == RestoreMode::kInput) return from_input();

  log_info("kafka: restoring partition from the changes topic",
           {{"partition", static_cast<std::int64_t>(p)}, {"topic", options.topic}});
  Result<kafka::RestoredPartition> read =
      kafka::restore_partition(options, [&](const kafka::RestoreProgress& progress) {
        metrics.restore_read(p).Set(static_cast<double>(progress.read));
        metrics.restore_to_read(p).Set(static_cast<double>(progress.total));
        log_info("kafka: restore progress",
                 {{"partition", static_cast<std::int64_t>(p)}, {"read", progress.read}, {"total", progress.total}});
      });
  if (!read) {
    metrics.restore_read(p).Set(0);
    metrics.restore_to_read(p).Set(0);
    return read.status();
  }
  if (read->undecodable > 0) {
    metrics.restore_skipped().Increment(static_cast<double>(read->undecodable));
    log_warn("kafka: restore skipped undecodable changes records", {{"partition", static_cast<std::int64_t>(p)},
                                                                    {"count", read->undecodable},
                                                                    {"first", read->first_undecodable}});
  }
  if (!read->input_offset) return from_input();  // nothing published for p
  const auto position = static_cast<std::int64_t>(*read->input_offset);
  if (local && *local > position) return from_input();  // this store is newer (its last commits' records were lost)
  if (local && *local == position) {
    // The same position: keep the state here, but apply erasures another owner made since (a tombstone
    // moves no position).
    std::vector<RestoredCustomer> erased;
    for (const auto& [id, state] : read->customers) {
      if (!state) erased.push_back(RestoredCustomer{id, nullptr});
    }
    if (Status s = store.restore_customers(erased); !s) return s;
    return done(TakeOver{"local", local, erased.size()});
  }

  // Replace the store's state: every customer the topic names, and erase the ones it does not.
  std::vector<RestoredCustomer> customers;
  customers.reserve(read->customers.size());
  for (const auto& [id, state] : read->customers) {
    customers.push_back(RestoredCustomer{id, state ? &*state : nullptr});
  }
  std::vector<std::string> gone;
  Status listed = store.for_each_customer([&](std::string_view id, const CustomerState&) {
    if (!read->customers.contains(std::string(id))) gone.emplace_back(id);
    return true;
  });
  if (!listed) return listed;
  for (const std::string& id : gone) customers.push_back(RestoredCustomer{id, nullptr});
  const std::string offset_bytes = encode_input_offset(*read->input_offset);
  const std::pair<std::string_view, std::string_view> meta[] = {{offset_key, offset_bytes}};
  if (Status s = store.restore_customers(customers, meta); !s) return s;
  return done(TakeOver{"changes", position, customers.size()});
}

}  // namespace rapport
