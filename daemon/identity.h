// IdentityService: merge, unmerge and erasure of alias groups (docs/design.md,
// "Identity"). One worker thread runs the operations one at a time; each
//  1. checks the request against the groups (blocked ids, max_aliases, cycles),
//  2. takes AliasTable::read_mutex (readers wait), swaps the routing snapshot
//     and queues a barrier on every partition's writer (under route_mutex), and
//     waits until every writer is parked in it: no event is applied meanwhile,
//  3. stages the events to move, records the operation (storage/identity.h) —
//     from here a crash rolls it forward at the next start —, re-applies and
//     erases, records the new groups (the commit point), releases the writers.
// Thread safety: merge/unmerge/erase_group from any thread (queued); recover()
// before the writers and fronts start; start/stop from the owner.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemon/alias_table.h"
#include "daemon/config.h"
#include "daemon/partitioned_sink.h"
#include "storage/identity.h"
#include "storage/partitioned_store.h"

namespace prometheus {
class Counter;
class Histogram;
class Registry;
}  // namespace prometheus

namespace rapport {

// The answer of an identity operation: status 200 with the group as it is afterwards, or a 4xx/5xx and why.
struct IdentityAnswer {
  int status = 200;
  std::string error;
  std::string survivor;
  std::vector<std::string> aliases;
};

// The test hook (docs/design.md, "Test hooks"): RAPPORT_TEST_IDENTITY_CRASH=<step> kills rapportd (SIGKILL)
// at that step of an identity operation: parked (writers parked, nothing recorded), recorded (the operation
// recorded), applied (staged events re-applied), erased (customers erased), committed (new groups recorded).
inline constexpr const char* kIdentityCrashEnv = "RAPPORT_TEST_IDENTITY_CRASH";

// Kafka mode ([kafka]) has no identity merges: a merge moves customers across partitions, which the instances
// of the consumer group own separately. POST {id}:merge and :unmerge answer 409 with this reason.
inline constexpr const char* kIdentityKafkaRefusal =
    "identity merges are not available in Kafka mode: a merge moves customers across partitions, which the "
    "instances of the consumer group own separately";

class IdentityService {
 public:
  IdentityService(PartitionedStore& store, Writers& writers, prometheus::Registry& registry, IdentityOptions options,
                  ApplyConfig apply);
  ~IdentityService();  // stop()

  // Loads the groups and runs a recorded operation to completion. Before the writers start.
  Status recover();
  void start();
  void stop();  // finishes the operation in hand, answers the queued ones 503

  using Done = std::function<void(IdentityAnswer&&)>;
  void merge(std::string survivor, std::vector<std::string> from, Done done);
  void unmerge(std::string survivor, std::vector<std::string> ids, Done done);
  // Erases a survivor or alias's whole group: every id, its events and dedup keys, and the group.
  // Answers 404 when `id` is in no group (the caller erases it alone).
  void erase_group(std::string id, Done done);

  AliasTable& table() { return table_; }
  void set_options(IdentityOptions options, ApplyConfig apply);

 private:
  void run();
  void execute(IdentityOpKind kind, std::string survivor, std::vector<std::string> ids, const Done& done);
  // Runs a recorded operation (after it was recorded, or at recovery): re-apply, erase, record the new groups.
  Status complete(const IdentityState& recorded);
  IdentityAnswer check(IdentityOpKind kind, const std::string& survivor, std::vector<std::string>& ids) const;
  // Reads the events the operation moves into recorded.op (staged, shadowed).
  Status stage(IdentityState& recorded) const;
  Status apply_staged(const std::vector<Event>& events);

  PartitionedStore& store_;
  Writers& writers_;
  AliasTable table_;
  IdentityState state_;  // the groups and shadowed events (op: none); worker thread (and recover)

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;  // mutex_
  bool stopping_ = false;                    // mutex_
  IdentityOptions options_;                  // mutex_
  ApplyConfig apply_;                        // mutex_
  std::thread thread_;

  prometheus::Counter* merges_ = nullptr;
  prometheus::Counter* unmerges_ = nullptr;
  prometheus::Histogram* aliases_ = nullptr;
};

}  // namespace rapport
