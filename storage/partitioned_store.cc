#include "storage/partitioned_store.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>
#include <thread>
#include <utility>

#include "storage/partitioner.h"

namespace rapport {
namespace {

namespace fs = std::filesystem;

std::string encode_layout(std::uint32_t partitions) {
  return std::string(kPartitionHashName) + "/" + std::to_string(partitions);
}

Result<std::uint32_t> decode_layout(std::string_view text) {
  const auto slash = text.find('/');
  std::uint32_t p = 0;
  if (slash == std::string_view::npos || text.substr(0, slash) != kPartitionHashName) {
    return Status::Error("the recorded partition layout '" + std::string(text) + "' uses a hash this version lacks");
  }
  const std::string_view digits = text.substr(slash + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p);
  if (ec != std::errc() || end != digits.data() + digits.size() || p == 0 || p > kMaxPartitions) {
    return Status::Error("the recorded partition layout '" + std::string(text) + "' is corrupt");
  }
  return p;
}

// Store::for_each_customer from strictly after `after` ("" = from the first).
Status for_each_after(const Store& store, std::string_view after, const PartitionedStore::CustomerVisitor& visit) {
  if (after.empty()) return store.for_each_customer(visit);
  return store.for_each_customer(visit, after);
}

// One partition's customers strictly after `after`, at most `limit`, in key order.
Status page_after(const Store& store, const std::string& after, std::size_t limit,
                  std::vector<std::pair<std::string, CustomerState>>& out) {
  out.clear();
  return for_each_after(store, after, [&](std::string_view id, const CustomerState& state) {
    out.emplace_back(std::string(id), state);
    return out.size() < limit;
  });
}

constexpr std::size_t kMergePage = 256;

}  // namespace

std::uint32_t default_partitions() {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::clamp<std::uint32_t>(cores == 0 ? 1 : cores, 1, kMaxPartitions);
}

std::string partition_directory(const std::string& directory, std::uint32_t index) {
  if (index == 0) return directory;
  return (fs::path(directory) / "partitions" / std::to_string(index)).string();
}

PartitionedStore::PartitionedStore(PartitionedStoreOptions options, std::vector<std::unique_ptr<Store>> partitions)
    : options_(std::move(options)), partitions_(std::move(partitions)) {}

PartitionedStore::~PartitionedStore() = default;

Result<std::unique_ptr<PartitionedStore>> PartitionedStore::open(const PartitionedStoreOptions& options) {
  std::error_code ec;
  const std::string& dir = options.directory;
  if (!options.ignore_unfinished_migration && fs::exists(fs::path(dir) / kMigrateDirName, ec)) {
    return Status::Error("state dir " + dir + " holds an unfinished `rapportctl migrate` (" +
                         (fs::path(dir) / kMigrateDirName).string() +
                         "): run the same rapportctl migrate again to finish it");
  }
  if (options.partitions && (*options.partitions == 0 || *options.partitions > kMaxPartitions)) {
    return Status::Error("partitions must be between 1 and " + std::to_string(kMaxPartitions));
  }
  const bool existed = fs::exists(fs::path(dir) / "data.mdb", ec);
  StoreOptions base = options;
  auto first = Store::open(base);
  if (!first.ok()) return first.status();
  std::vector<std::unique_ptr<Store>> stores;
  stores.push_back(std::move(first).value());

  auto layout = stores[0]->get_meta(kLayoutMetaKey);
  if (!layout.ok()) return layout.status();
  std::optional<std::uint32_t> recorded;
  if (layout->has_value()) {
    auto p = decode_layout(**layout);
    if (!p.ok()) return Status::Error(dir + ": " + p.message());
    recorded = *p;
  } else if (existed) {
    recorded = 1;  // written before partitions existed
  }
  if (options.partitions && recorded && *options.partitions != *recorded) {
    return Status::Error(
        "state dir " + dir + " has " + std::to_string(*recorded) +
        " partition(s) but the config sets storage.partitions = " + std::to_string(*options.partitions) +
        ": stop rapportd and run `rapportctl migrate --partitions " + std::to_string(*options.partitions) +
        "`, or set partitions = " + std::to_string(*recorded));
  }
  const std::uint32_t count = options.partitions ? *options.partitions : recorded ? *recorded : default_partitions();
  if (!layout->has_value() && !options.read_only) {
    if (Status s = stores[0]->put_meta(kLayoutMetaKey, encode_layout(count)); !s.ok()) return s;
  }
  for (std::uint32_t i = 1; i < count; ++i) {
    StoreOptions part = base;
    part.directory = partition_directory(dir, i);
    // A partition of a dir that already had its layout must be there: never replaced by an empty one.
    if ((options.read_only || layout->has_value()) && !fs::exists(fs::path(part.directory) / "data.mdb", ec)) {
      return Status::Error("state dir " + dir + " has " + std::to_string(count) + " partitions but " + part.directory +
                           " is missing (restore it from a backup, or restore the whole backup)");
    }
    if (!options.read_only) {
      fs::create_directories(part.directory, ec);
      if (ec) return Status::Error("cannot create " + part.directory + ": " + ec.message());
    }
    auto opened = Store::open(part);
    if (!opened.ok()) return Status::Error("partition " + std::to_string(i) + ": " + opened.message());
    stores.push_back(std::move(opened).value());
  }
  PartitionedStoreOptions kept = options;
  kept.partitions = count;
  return std::unique_ptr<PartitionedStore>(new PartitionedStore(std::move(kept), std::move(stores)));
}

std::uint32_t PartitionedStore::partition_of(std::string_view customer_id) const {
  return rapport::partition_of(customer_id, partition_count());
}

Status PartitionedStore::apply_batch(std::span<const Event> events, const ApplyConfig& config,
                                     std::vector<EventOutcome>& outcomes, std::span<const DeadLetter> dead_letters) {
  const std::uint32_t n = partition_count();
  if (n == 1) return partitions_[0]->apply_batch(events, config, outcomes, dead_letters);
  std::vector<std::vector<Event>> parts(n);
  std::vector<std::vector<std::size_t>> positions(n);
  for (std::size_t i = 0; i < events.size(); ++i) {
    const std::uint32_t p = partition_of(events[i].customer_id.view());
    parts[p].push_back(events[i]);
    positions[p].push_back(i);
  }
  outcomes.assign(events.size(), EventOutcome::kAccepted);
  std::vector<EventOutcome> part_outcomes;
  Status first_error;
  for (std::uint32_t p = 0; p < n; ++p) {
    if (parts[p].empty() && (p != 0 || dead_letters.empty())) continue;
    Status s = partitions_[p]->apply_batch(parts[p], config, part_outcomes,
                                           p == 0 ? dead_letters : std::span<const DeadLetter>{});
    if (!s.ok()) {
      if (first_error.ok()) first_error = Status::Error("partition " + std::to_string(p) + ": " + s.message());
      continue;
    }
    for (std::size_t j = 0; j < positions[p].size(); ++j) outcomes[positions[p][j]] = part_outcomes[j];
  }
  return first_error;
}

Result<bool> PartitionedStore::erase_customer(std::string_view customer_id) {
  return partitions_[partition_of(customer_id)]->erase_customer(customer_id);
}

Status PartitionedStore::checkpoint() {
  for (auto& p : partitions_) {
    if (Status s = p->checkpoint(); !s.ok()) return s;
  }
  return Status::Ok();
}

Result<PartitionedStore::FeedPage> PartitionedStore::changes(std::span<const std::uint64_t> after,
                                                             std::size_t limit) const {
  if (after.size() != partitions_.size()) {
    return Status::Error("a change feed position names " + std::to_string(after.size()) +
                         " partitions; the store has " + std::to_string(partitions_.size()));
  }
  FeedPage page;
  for (std::uint32_t i = 0; i < partitions_.size(); ++i) {
    auto part = partitions_[i]->changes(after[i], limit);
    if (!part.ok()) return part.status();
    page.floors.push_back(part->floor);
    for (Change& c : part->items) page.items.push_back(FeedItem{i, std::move(c)});
  }
  // Each partition's items are in seq order: a stable sort by seq keeps partition order on ties.
  std::stable_sort(page.items.begin(), page.items.end(),
                   [](const FeedItem& a, const FeedItem& b) { return a.change.seq < b.change.seq; });
  if (page.items.size() > limit) page.items.resize(limit);
  return page;
}

Result<std::optional<CustomerState>> PartitionedStore::get_customer(std::string_view customer_id) const {
  return partitions_[partition_of(customer_id)]->get_customer(customer_id);
}

Result<std::vector<TimelineEvent>> PartitionedStore::customer_events(std::string_view customer_id,
                                                                     const std::optional<TimelineKey>& after,
                                                                     std::size_t limit) const {
  return partitions_[partition_of(customer_id)]->customer_events(customer_id, after, limit);
}

Status PartitionedStore::for_each_customer(const CustomerVisitor& visit, std::string_view after) const {
  if (partition_count() == 1) return for_each_after(*partitions_[0], after, visit);
  // k-way merge: one page per partition, refilled after its last key when used up.
  struct Cursor {
    std::vector<std::pair<std::string, CustomerState>> page;
    std::size_t next = 0;
    bool exhausted = false;  // the last page was short: nothing after it
  };
  std::vector<Cursor> cursors(partition_count());
  const auto refill = [&](std::uint32_t p, const std::string& from) -> Status {
    Cursor& c = cursors[p];
    c.next = 0;
    if (Status s = page_after(*partitions_[p], from, kMergePage, c.page); !s.ok()) return s;
    c.exhausted = c.page.size() < kMergePage;
    return Status::Ok();
  };
  const auto greater = [&](std::uint32_t a, std::uint32_t b) {
    return cursors[a].page[cursors[a].next].first > cursors[b].page[cursors[b].next].first;
  };
  std::priority_queue<std::uint32_t, std::vector<std::uint32_t>, decltype(greater)> heap(greater);
  const std::string start(after);
  for (std::uint32_t p = 0; p < partition_count(); ++p) {
    if (Status s = refill(p, start); !s.ok()) return s;
    if (!cursors[p].page.empty()) heap.push(p);
  }
  while (!heap.empty()) {
    const std::uint32_t p = heap.top();
    heap.pop();
    Cursor& c = cursors[p];
    if (!visit(c.page[c.next].first, c.page[c.next].second)) return Status::Ok();
    if (++c.next == c.page.size()) {
      if (c.exhausted) continue;
      const std::string last = c.page.back().first;
      if (Status s = refill(p, last); !s.ok()) return s;
      if (c.page.empty()) continue;
    }
    heap.push(p);
  }
  return Status::Ok();
}

Status PartitionedStore::for_each_customer_unordered(const CustomerVisitor& visit) const {
  bool stopped = false;
  for (const auto& p : partitions_) {
    Status s = p->for_each_customer([&](std::string_view id, const CustomerState& state) {
      if (!visit(id, state)) stopped = true;
      return !stopped;
    });
    if (!s.ok()) return s;
    if (stopped) break;
  }
  return Status::Ok();
}

Status PartitionedStore::put_meta(std::string_view key, std::string_view value) {
  return partitions_[0]->put_meta(key, value);
}
Result<std::optional<std::string>> PartitionedStore::get_meta(std::string_view key) const {
  return partitions_[0]->get_meta(key);
}
Status PartitionedStore::add_dead_letters(std::span<const DeadLetter> letters) {
  return partitions_[0]->add_dead_letters(letters);
}
Result<std::vector<StoredDeadLetter>> PartitionedStore::dead_letters(std::uint64_t after, std::size_t limit) const {
  return partitions_[0]->dead_letters(after, limit);
}
Result<std::size_t> PartitionedStore::remove_dead_letters(std::span<const std::uint64_t> sequences) {
  return partitions_[0]->remove_dead_letters(sequences);
}

std::vector<StoreStats> PartitionedStore::partition_stats() const {
  std::vector<StoreStats> out;
  out.reserve(partitions_.size());
  for (const auto& p : partitions_) out.push_back(p->stats());
  return out;
}

StoreStats PartitionedStore::stats() const {
  const std::vector<StoreStats> parts = partition_stats();
  StoreStats sum = parts[0];
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const StoreStats& s = parts[i];
    sum.map_bytes += s.map_bytes;
    sum.used_bytes += s.used_bytes;
    sum.readers += s.readers;
    sum.customers += s.customers;
    sum.events += s.events;
    sum.pending_events += s.pending_events;
    sum.journal_entries += s.journal_entries;
    sum.dead_letters += s.dead_letters;
    sum.checkpoint_in_progress = sum.checkpoint_in_progress || s.checkpoint_in_progress;
    sum.checkpoints += s.checkpoints;
    sum.checkpoint_slices += s.checkpoint_slices;
  }
  return sum;
}

// --- backups --------------------------------------------------------------------

Status PartitionedStore::backup(const std::string& destination_directory) const {
  std::error_code ec;
  BackupManifest manifest;
  manifest.partitions = partition_count();
  manifest.hash = std::string(kPartitionHashName);
  for (std::uint32_t i = 0; i < partition_count(); ++i) {
    const std::string dest = partition_directory(destination_directory, i);
    fs::create_directories(dest, ec);
    if (ec) return Status::Error("cannot create " + dest + ": " + ec.message());
    if (Status s = partitions_[i]->backup(dest); !s.ok()) {
      return Status::Error("partition " + std::to_string(i) + ": " + s.message());
    }
    // The copy's own position: opened read-only (lock.mdb removed again: a backup is data files alone).
    StoreOptions check;
    check.directory = dest;
    check.read_only = true;
    {
      auto copy = Store::open(check);
      if (!copy.ok())
        return Status::Error("the copy of partition " + std::to_string(i) + " does not open: " + copy.message());
      const StoreStats s = (*copy)->stats();
      manifest.copies.push_back(BackupPartition{i, s.checkpoint_sequence, s.journal_entries, s.customers, s.events});
    }
    fs::remove(fs::path(dest) / "lock.mdb", ec);
  }
  // The manifest last: a backup without it (and with more than one partition) is incomplete.
  std::ostringstream text;
  text << "rapport-backup 1\npartitions " << manifest.partitions << "\nhash " << manifest.hash << "\n";
  for (const BackupPartition& c : manifest.copies) {
    text << "partition " << c.index << " checkpoint_sequence " << c.checkpoint_sequence << " journal_entries "
         << c.journal_entries << " customers " << c.customers << " events " << c.events << "\n";
  }
  const fs::path path = fs::path(destination_directory) / kBackupManifest;
  const fs::path staging = path.string() + ".tmp";
  {
    std::ofstream out(staging, std::ios::trunc);
    out << text.str();
    out.flush();
    if (!out) return Status::Error("cannot write " + staging.string());
  }
  fs::rename(staging, path, ec);
  if (ec) return Status::Error("cannot write " + path.string() + ": " + ec.message());
  return Status::Ok();
}

Result<std::optional<BackupManifest>> read_backup_manifest(const std::string& directory) {
  std::error_code ec;
  const fs::path path = fs::path(directory) / kBackupManifest;
  if (!fs::exists(path, ec)) return std::optional<BackupManifest>();
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read " + path.string());
  BackupManifest m;
  std::string word;
  int version = 0;
  if (!(in >> word >> version) || word != "rapport-backup" || version != 1) {
    return Status::Error(path.string() + " is not a Rapport backup manifest (version 1)");
  }
  if (!(in >> word >> m.partitions) || word != "partitions" || m.partitions == 0 || m.partitions > kMaxPartitions ||
      !(in >> word >> m.hash) || word != "hash") {
    return Status::Error(path.string() + " is corrupt");
  }
  BackupPartition c;
  std::string k1, k2, k3, k4;
  while (in >> word >> c.index >> k1 >> c.checkpoint_sequence >> k2 >> c.journal_entries >> k3 >> c.customers >> k4 >>
         c.events) {
    if (word != "partition" || c.index != m.copies.size()) return Status::Error(path.string() + " is corrupt");
    m.copies.push_back(c);
  }
  if (!in.eof() || m.copies.size() != m.partitions) {
    return Status::Error(path.string() + " lists " + std::to_string(m.copies.size()) + " of " +
                         std::to_string(m.partitions) + " partitions (corrupt)");
  }
  return std::optional<BackupManifest>(std::move(m));
}

Result<std::uint32_t> check_backup_complete(const std::string& directory) {
  std::error_code ec;
  auto manifest = read_backup_manifest(directory);
  if (!manifest.ok()) return manifest.status();
  if (!manifest->has_value()) {
    // Made before partitions existed (data.mdb alone), or interrupted before its manifest.
    if (fs::exists(fs::path(directory) / "partitions", ec)) {
      return Status::Error(directory + " is an incomplete backup: it has partitions but no " +
                           std::string(kBackupManifest) + " (the backup did not finish)");
    }
    if (!fs::is_regular_file(fs::path(directory) / "data.mdb", ec)) {
      return Status::Error(directory + " is not a backup: it has no data.mdb (make one with `rapportctl backup`)");
    }
    return 1u;
  }
  const BackupManifest& m = **manifest;
  if (m.hash != kPartitionHashName) {
    return Status::Error(directory + " was partitioned by '" + m.hash + "', which this version lacks");
  }
  for (std::uint32_t i = 0; i < m.partitions; ++i) {
    const fs::path data = fs::path(partition_directory(directory, i)) / "data.mdb";
    if (!fs::is_regular_file(data, ec)) {
      return Status::Error(directory + " is an incomplete backup: partition " + std::to_string(i) + " of " +
                           std::to_string(m.partitions) + " (" + data.string() + ") is missing");
    }
  }
  return m.partitions;
}

}  // namespace rapport
