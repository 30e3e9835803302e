// PartitionedStore: Rapport's state split into P partitions, each its own
// Store (own LMDB environment, write lock, journal, overlay, checkpoints).
// Hides LMDB like Store.
//
// A customer lives in partition partition_of(customer_id, P) (storage/
// partitioner.h: Kafka's default partitioner). Layout of a state dir D:
// partition 0 is D itself (so a state dir written before partitions existed
// is partition 0 of a P = 1 layout and opens unchanged), partition i >= 1 is
// D/partitions/<i>. Partition 0 records the layout (P and the hash) in its
// meta, and holds every other meta key and every dead letter.
//
// Point reads and erasure route by hash; for_each_customer merges the
// partitions in key order (a k-way merge, page by page); the ...unordered
// variant visits them one after another. apply_batch splits a batch by
// partition and commits each part in its partition (not atomic across
// partitions: a failure in one leaves the others' parts stored; replay is
// deduplicated, so sending the batch again is safe).
// See docs/design.md, "Partitions".
//
// Thread safety: as Store. Reads from any thread; writes to partition i are
// serialised by that partition's Store.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "storage/store.h"

namespace rapport {

inline constexpr std::uint32_t kMaxPartitions = 64;

struct PartitionedStoreOptions : StoreOptions {
  // Number of partitions. nullopt: the layout recorded in an existing state dir
  // (1 for a dir written before partitions existed), default_partitions() for a
  // new one. A value that differs from the recorded layout is an error naming
  // `rapportctl migrate --partitions N`.
  std::optional<std::uint32_t> partitions;
  // rapportctl migrate only: open although an unfinished migration is in the dir.
  bool ignore_unfinished_migration = false;
};

// The number of cores, within [1, kMaxPartitions].
std::uint32_t default_partitions();

// Directory of partition `index` of the state dir `directory`.
std::string partition_directory(const std::string& directory, std::uint32_t index);

// The meta key of the layout in partition 0 ("<hash>/<P>", e.g. "murmur2/4").
inline constexpr std::string_view kLayoutMetaKey = "storage.partitions";

// Where rapportctl migrate builds the new layout inside a state dir; rapportd refuses
// to open a dir holding it (the migration must be run again to completion).
inline constexpr std::string_view kMigrateDirName = "migrate";

class PartitionedStore {
 public:
  static Result<std::unique_ptr<PartitionedStore>> open(const PartitionedStoreOptions& options);
  ~PartitionedStore();
  PartitionedStore(const PartitionedStore&) = delete;
  PartitionedStore& operator=(const PartitionedStore&) = delete;

  std::uint32_t partition_count() const { return static_cast<std::uint32_t>(partitions_.size()); }
  std::uint32_t partition_of(std::string_view customer_id) const;
  Store& partition(std::uint32_t index) { return *partitions_[index]; }
  const Store& partition(std::uint32_t index) const { return *partitions_[index]; }

  // Store::apply_batch per partition (dead letters with partition 0's part).
  // outcomes in the order of `events`.
  Status apply_batch(std::span<const Event> events, const ApplyConfig& config, std::vector<EventOutcome>& outcomes,
                     std::span<const DeadLetter> dead_letters = {});
  Result<bool> erase_customer(std::string_view customer_id);
  Status checkpoint();

  Result<std::optional<CustomerState>> get_customer(std::string_view customer_id) const;
  Result<std::vector<TimelineEvent>> customer_events(std::string_view customer_id,
                                                     const std::optional<TimelineKey>& after, std::size_t limit) const;

  using CustomerVisitor = std::function<bool(std::string_view id, const CustomerState& state)>;
  // Every customer in key order, strictly after `after` ("" = from the first);
  // stops early when the visitor returns false. With P = 1 one read snapshot;
  // with P > 1 each partition is read page by page, each page its own snapshot.
  Status for_each_customer(const CustomerVisitor& visit, std::string_view after = {}) const;
  // Every customer, partition after partition (key order within one): for
  // order-independent work (fits, top-N). One snapshot per partition.
  Status for_each_customer_unordered(const CustomerVisitor& visit) const;

  // The change feed of every partition (Store::changes), merged: `after`
  // holds one position per partition (partition_count() of them); items in
  // order of (seq, partition), at most `limit`. floors: each partition's.
  struct FeedItem {
    std::uint32_t partition = 0;
    Change change;
  };
  struct FeedPage {
    std::vector<FeedItem> items;
    std::vector<std::uint64_t> floors;
  };
  Result<FeedPage> changes(std::span<const std::uint64_t> after, std::size_t limit) const;

  // Meta and dead letters: partition 0.
  Status put_meta(std::string_view key, std::string_view value);
  Result<std::optional<std::string>> get_meta(std::string_view key) const;
  Status add_dead_letters(std::span<const DeadLetter> letters);
  Result<std::vector<StoredDeadLetter>> dead_letters(std::uint64_t after, std::size_t limit) const;
  Result<std::size_t> remove_dead_letters(std::span<const std::uint64_t> sequences);

  // Summed over partitions (max_readers and checkpoint_sequence: partition 0's).
  StoreStats stats() const;
  std::vector<StoreStats> partition_stats() const;
  const PartitionedStoreOptions& options() const { return options_; }

  // Every partition copied (Store::backup) into the same layout under an empty
  // destination, then a manifest (kBackupManifest) written last: see
  // read_backup_manifest. Partitions are copied one after another: each copy is
  // one snapshot of its partition; every event acknowledged before backup()
  // began is in the copy.
  Status backup(const std::string& destination_directory) const;

 private:
  PartitionedStore(PartitionedStoreOptions options, std::vector<std::unique_ptr<Store>> partitions);
  PartitionedStoreOptions options_;
  std::vector<std::unique_ptr<Store>> partitions_;
};

// --- backups --------------------------------------------------------------------

inline constexpr std::string_view kBackupManifest = "rapport-backup.manifest";

struct BackupPartition {
  std::uint32_t index = 0;
  std::uint64_t checkpoint_sequence = 0;  // journal position of the copy's last checkpoint
  std::uint64_t journal_entries = 0;      // journal entries in the copy (replayed at open)
  std::uint64_t customers = 0;
  std::uint64_t events = 0;
};

struct BackupManifest {
  std::uint32_t partitions = 1;
  std::string hash{"murmur2"};
  std::vector<BackupPartition> copies;  // one per partition, in order
};

// The manifest of a backup directory; nullopt for a backup made before
// partitions existed (data.mdb alone). An error if it is unreadable.
Result<std::optional<BackupManifest>> read_backup_manifest(const std::string& directory);

// Checks that `directory` holds a complete backup: every partition's data.mdb
// the manifest (or, without one, partition 0's recorded layout) names.
// Returns the number of partitions.
Result<std::uint32_t> check_backup_complete(const std::string& directory);

}  // namespace rapport
