// rapportctl migrate: re-partitions a stopped state dir (docs/design.md, "Partitions", "Migration").
#include "daemon/ctl/migrate.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/json_writer.h"
#include "daemon/alert_delivery.h"
#include "daemon/alerts.h"
#include "daemon/ctl/backup.h"
#include "daemon/customer_json.h"
#include "daemon/value_records.h"
#include "storage/identity.h"

namespace rapport {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMigrateBatchEvents = 20'000;
constexpr std::size_t kTimelinePage = 10'000;
constexpr std::string_view kCompleteMarker = "COMPLETE";   // in the work dir: the new layout is built and verified
constexpr std::string_view kOldMovedMarker = "OLD_MOVED";  // in the work dir: the old layout is out of the way
constexpr std::string_view kOldDirName = "migrate-old";

// The meta keys rapportd keeps (partition 0); the storage's own keys are written by the new Stores themselves.
// The identity record (merged groups, shadowed events, an operation in progress) is layout-free: it names
// customers, not partitions, so it moves as it is.
constexpr std::string_view kMetaKeys[] = {kValueModelMetaKey, kValueTierCountsMetaKey, kIdentityMetaKey};

// Test hook (docs/design.md, "Test hooks"): RAPPORT_TEST_MIGRATE_CRASH=batch:N kills this process (SIGKILL)
// after N event batches were committed; swap:K after step K (1..4) of moving the new layout into place.
void crash_if_due(std::string_view phase, std::uint64_t count) {
  const char* hook = std::getenv("RAPPORT_TEST_MIGRATE_CRASH");
  if (hook == nullptr) return;
  const std::string want(hook);
  if (want == std::string(phase) + ":" + std::to_string(count)) ::kill(::getpid(), SIGKILL);
}

bool sync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

Status write_marker(const fs::path& path) {
  {
    std::ofstream out(path, std::ios::trunc);
    out << "rapportctl migrate\n";
    if (!out) return Status::Error("cannot write " + path.string());
  }
  if (!sync_path(path) || !sync_path(path.parent_path())) return Status::Error("cannot flush " + path.string());
  return Status::Ok();
}

Status rename_durably(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) return Status::Error("cannot move " + from.string() + " to " + to.string() + ": " + ec.message());
  sync_path(from.parent_path());
  sync_path(to.parent_path());
  return Status::Ok();
}

// Moves the verified new layout (in work) into the state dir. Every step checks what is already done,
// so a run killed anywhere in here finishes the swap when run again.
Status swap_in(const fs::path& dir, const fs::path& work) {
  std::error_code ec;
  const fs::path old = dir / kOldDirName;
  if (!fs::exists(work / kOldMovedMarker, ec)) {
    fs::create_directories(old, ec);
    if (ec) return Status::Error("cannot create " + old.string() + ": " + ec.message());
    if (fs::exists(dir / "partitions", ec) && !fs::exists(old / "partitions", ec)) {
      if (Status s = rename_durably(dir / "partitions", old / "partitions"); !s.ok()) return s;
    }
    crash_if_due("swap", 1);
    if (fs::exists(dir / "data.mdb", ec) && !fs::exists(old / "data.mdb", ec)) {
      if (Status s = rename_durably(dir / "data.mdb", old / "data.mdb"); !s.ok()) return s;
    }
    fs::remove(dir / "lock.mdb", ec);  // the old environment's reader table
    if (Status s = write_marker(work / kOldMovedMarker); !s.ok()) return s;
  }
  crash_if_due("swap", 2);
  if (fs::exists(work / "partitions", ec)) {
    if (Status s = rename_durably(work / "partitions", dir / "partitions"); !s.ok()) return s;
  }
  crash_if_due("swap", 3);
  if (fs::exists(work / "data.mdb", ec)) {
    if (Status s = rename_durably(work / "data.mdb", dir / "data.mdb"); !s.ok()) return s;
  }
  crash_if_due("swap", 4);
  fs::remove_all(old, ec);
  if (ec) return Status::Error("cannot remove " + old.string() + ": " + ec.message());
  fs::remove_all(work, ec);
  if (ec) return Status::Error("cannot remove " + work.string() + ": " + ec.message());
  sync_path(dir);
  return Status::Ok();
}

class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet) {}
  void report(const char* what, std::uint64_t done, std::uint64_t total, bool force = false) {
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::seconds(1)) return;
    last_ = now;
    std::fprintf(stderr, "migrate: %s %llu / %llu\n", what, static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(total));
  }

 private:
  bool quiet_;
  std::chrono::steady_clock::time_point last_{};
};

// The alerts outboxes (pending and dead), each entry to the partition that now owns its customer, keeping its
// delivery id: an entry without a carried id gets "<old partition>-<old sequence>" written into its record.
// Every new partition's sequences start above the highest any old partition used, so ids minted after the
// migrate never repeat one a receiver has seen. One transaction per new partition; a re-run skips those that
// already hold entries.
Status copy_outboxes(const PartitionedStore& source, PartitionedStore& target) {
  const std::uint32_t to = target.partition_count();
  std::vector<std::vector<std::string>> pending(to), dead(to);
  std::uint64_t next = 1;
  for (std::uint32_t p = 0; p < source.partition_count(); ++p) {
    auto high = source.partition(p).outbox_next_sequence();
    if (!high.ok()) return high.status();
    next = std::max(next, *high);
    for (OutboxArea area : {OutboxArea::kPending, OutboxArea::kDead}) {
      std::uint64_t after = 0;
      for (;;) {
        auto page = source.partition(p).outbox(area, after, 1000);
        if (!page.ok()) return page.status();
        if (page->empty()) break;
        after = page->back().sequence;
        for (const OutboxEntry& e : *page) {
          AlertMessage m;
          if (Status d = decode_alert_record(e.payload, m); !d.ok()) {
            return Status::Error("alerts outbox entry " + alert_delivery_id(p, e.sequence) + ": " + d.message());
          }
          if (m.id.empty()) m.id = alert_delivery_id(p, e.sequence);
          auto& into = area == OutboxArea::kPending ? pending : dead;
          into[target.partition_of(m.customer_id)].push_back(encode_alert_record(m));
        }
      }
    }
  }
  for (std::uint32_t t = 0; t < to; ++t) {
    auto held = target.partition(t).outbox_stats();
    if (!held.ok()) return held.status();
    if (held->pending + held->dead > 0) continue;  // copied by an earlier run
    if (Status s = target.partition(t).import_outbox(pending[t], dead[t], next); !s.ok()) return s;
  }
  return Status::Ok();
}

Status copy_everything(const PartitionedStore& source, PartitionedStore& target, const Config& config,
                       Progress& progress) {
  // Meta (idempotent puts).
  for (std::string_view key : kMetaKeys) {
    auto value = source.get_meta(key);
    if (!value.ok()) return value.status();
    if (value->has_value()) {
      if (Status s = target.put_meta(key, **value); !s.ok()) return s;
    }
  }
  // Dead letters, oldest first, one transaction per page: a re-run skips as many as the target holds.
  std::uint64_t skip = target.stats().dead_letters, after = 0;
  for (;;) {
    auto page = source.dead_letters(after, 1000);
    if (!page.ok()) return page.status();
    if (page->empty()) break;
    after = page->back().sequence;
    std::vector<DeadLetter> letters;
    for (const StoredDeadLetter& d : *page) {
      if (skip > 0) {
        --skip;
        continue;
      }
      letters.push_back(d.letter);
    }
    if (!letters.empty()) {
      if (Status s = target.add_dead_letters(letters); !s.ok()) return s;
    }
  }
  if (Status s = copy_outboxes(source, target); !s.ok()) return s;
  // Events, customer by customer (replay is deduplicated: what a killed run stored comes back as duplicates).
  std::vector<std::string> ids;
  if (Status s = source.for_each_customer_unordered([&](std::string_view id, const CustomerState&) {
        ids.emplace_back(id);
        return true;
      });
      !s.ok()) {
    return s;
  }
  std::vector<Event> batch;
  std::vector<EventOutcome> outcomes;
  std::uint64_t batches = 0;
  const auto flush = [&]() -> Status {
    if (batch.empty()) return Status::Ok();
    if (Status s = target.apply_batch(batch, config.apply, outcomes); !s.ok()) return s;
    batch.clear();
    crash_if_due("batch", ++batches);
    return Status::Ok();
  };
  for (std::size_t c = 0; c < ids.size(); ++c) {
    std::optional<TimelineKey> at;
    for (;;) {
      auto events = source.customer_events(ids[c], at, kTimelinePage);
      if (!events.ok()) return events.status();
      for (const TimelineEvent& t : *events)
        batch.push_back(event_from_timeline(t, ids[c], t.sent_as));  // keeps the id it was sent as
      if (events->size() < kTimelinePage) break;
      at.emplace(events->back().ts_ms, events->back().event_id);
    }
    if (batch.size() >= kMigrateBatchEvents) {
      if (Status s = flush(); !s.ok()) return s;
    }
    progress.report("customers", c + 1, ids.size());
  }
  if (Status s = flush(); !s.ok()) return s;
  progress.report("customers", ids.size(), ids.size(), true);
  return target.checkpoint();
}

Result<OutboxStats> outbox_totals(const PartitionedStore& store) {
  OutboxStats total;
  for (std::uint32_t p = 0; p < store.partition_count(); ++p) {
    auto st = store.partition(p).outbox_stats();
    if (!st.ok()) return st.status();
    total.pending += st->pending;
    total.dead += st->dead;
  }
  return total;
}

Status verify_outboxes(const PartitionedStore& source, const PartitionedStore& target) {
  auto a = outbox_totals(source);
  if (!a.ok()) return a.status();
  auto b = outbox_totals(target);
  if (!b.ok()) return b.status();
  if (a->pending != b->pending || a->dead != b->dead) {
    return Status::Error("verification failed: the old layout holds " + std::to_string(a->pending) + " pending and " +
                         std::to_string(a->dead) + " dead alert deliveries; the new one " + std::to_string(b->pending) +
                         " and " + std::to_string(b->dead));
  }
  return Status::Ok();
}

// A customer as the API shows it (scores rounded as answered), at one instant.
std::string rendered(std::string_view id, const CustomerState& state, std::int64_t as_of_ms, const Config& config) {
  JsonWriter w;
  write_customer_json(w, id, state, as_of_ms, config.evaluate, nullptr, config.value, /*explain=*/true);
  return w.take();
}

// Every count agrees, and every customer reads the same. A replayed customer is compared as the API
// shows it (at one instant, scores rounded as answered): replay in another order than the original
// ingest may change the last bits of a decayed sum, never what a reader sees.
Status verify(const PartitionedStore& source, const PartitionedStore& target, const Config& config) {
  const std::int64_t as_of_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const StoreStats a = source.stats(), b = target.stats();
  if (a.customers != b.customers || a.events != b.events || a.dead_letters != b.dead_letters) {
    return Status::Error("verification failed: the old layout holds " + std::to_string(a.customers) + " customers, " +
                         std::to_string(a.events) + " events, " + std::to_string(a.dead_letters) +
                         " dead letters; the new one " + std::to_string(b.customers) + ", " + std::to_string(b.events) +
                         ", " + std::to_string(b.dead_letters));
  }
  if (Status s = verify_outboxes(source, target); !s.ok()) return s;
  for (std::string_view key : kMetaKeys) {
    auto x = source.get_meta(key);
    auto y = target.get_meta(key);
    if (!x.ok() || !y.ok() || *x != *y) return Status::Error("verification failed: meta " + std::string(key));
  }
  std::uint64_t differ = 0;
  std::string example;
  Status walked = source.for_each_customer_unordered([&](std::string_view id, const CustomerState& state) {
    auto moved = target.get_customer(id);
    if (!moved.ok() || !moved->has_value() ||
        ((**moved).event_count != state.event_count ||
         rendered(id, **moved, as_of_ms, config) != rendered(id, state, as_of_ms, config))) {
      if (differ++ == 0) example = std::string(id);
    }
    return true;
  });
  if (!walked.ok()) return walked;
  if (differ > 0) {
    return Status::Error("verification failed: " + std::to_string(differ) + " customers (e.g. '" + example +
                         "') score differently after the move; their events were scored under another [scoring] "
                         "config than the one given (-c)");
  }
  return Status::Ok();
}

}  // namespace

int ctl_migrate(const CtlTarget& target, std::uint32_t partitions, bool quiet) {
  if (!target.url.empty()) return ctl_error("migrate rewrites a stopped state dir: use --state-dir, not --url");
  if (partitions == 0 || partitions > kMaxPartitions) {
    return ctl_error("--partitions must be between 1 and " + std::to_string(kMaxPartitions));
  }
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  const fs::path dir = config->storage.directory;
  const fs::path work = dir / kMigrateDirName;
  std::error_code ec;
  if (!fs::exists(dir / "data.mdb", ec) && !fs::exists(work / kCompleteMarker, ec)) {
    return ctl_error("no state dir at " + dir.string() + " (no data.mdb)");
  }
  if (state_dir_partitions_in_use(dir.string()) || state_dir_partitions_in_use(work.string())) {
    return ctl_error(dir.string() + " is in use by a running process (rapportd?): stop it before migrating");
  }
  Progress progress(quiet);
  const auto started = std::chrono::steady_clock::now();

  if (!fs::exists(work / kCompleteMarker, ec)) {
    PartitionedStoreOptions source_options = config->storage;
    source_options.partitions.reset();  // the recorded layout
    source_options.read_only = true;
    source_options.ignore_unfinished_migration = true;
    auto source = PartitionedStore::open(source_options);
    if (!source.ok()) return ctl_error(source.message());
    const std::uint32_t from = (*source)->partition_count();
    if (from == partitions && !fs::exists(work, ec)) {
      std::printf("%s already has %u partition(s): nothing to do\n", dir.c_str(), partitions);
      return kExitOk;
    }
    const StoreStats before = (*source)->stats();
    std::fprintf(stderr, "migrate: %s from %u to %u partition(s): %llu customers, %llu events, %llu dead letters\n",
                 dir.c_str(), from, partitions, static_cast<unsigned long long>(before.customers),
                 static_cast<unsigned long long>(before.events), static_cast<unsigned long long>(before.dead_letters));
    PartitionedStoreOptions target_options = config->storage;
    target_options.directory = work.string();
    target_options.partitions = partitions;
    target_options.read_only = false;
    target_options.dead_letter_capacity =
        std::max<std::size_t>(target_options.dead_letter_capacity, static_cast<std::size_t>(before.dead_letters));
    {
      auto held = outbox_totals(**source);
      if (!held.ok()) return ctl_error(held.message());
      target_options.outbox_capacity =  // nothing pending is dropped by the move
          std::max<std::size_t>(target_options.outbox_capacity, static_cast<std::size_t>(held->pending));
    }
    {
      auto built = PartitionedStore::open(target_options);
      if (!built.ok()) {
        return ctl_error("cannot build the new layout in " + work.string() + ": " + built.message() +
                         " (to start over, remove " + work.string() + ")");
      }
      if (Status s = copy_everything(**source, **built, *config, progress); !s.ok()) {
        return ctl_error("migrate stopped: " + s.message() +
                         "; the old layout is untouched, run the same command "
                         "again to go on");
      }
      if (Status s = verify(**source, **built, *config); !s.ok()) {
        return ctl_error(s.message() + "; the old layout is untouched (remove " + work.string() + " to use it again)");
      }
    }
    source->reset();
    for (std::uint32_t i = 0; i < partitions; ++i) {
      std::error_code ignored;
      fs::remove(fs::path(partition_directory(work.string(), i)) / "lock.mdb", ignored);
    }
    if (Status s = write_marker(work / kCompleteMarker); !s.ok()) return ctl_error(s.message());
  } else {
    std::fprintf(stderr, "migrate: finishing the interrupted move of the new layout into %s\n", dir.c_str());
  }
  if (Status s = swap_in(dir, work); !s.ok()) {
    return ctl_error("moving the new layout into place: " + s.message() + "; run the same command again to finish");
  }

  // The result opens with its new layout.
  PartitionedStoreOptions check = config->storage;
  check.partitions.reset();
  check.read_only = true;
  auto done = PartitionedStore::open(check);
  if (!done.ok()) return ctl_error("the migrated state dir does not open: " + done.message());
  const StoreStats after = (*done)->stats();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("migrated %s to %u partition(s): %llu customers, %llu events, %llu dead letters in %.1f s\n", dir.c_str(),
              (*done)->partition_count(), static_cast<unsigned long long>(after.customers),
              static_cast<unsigned long long>(after.events), static_cast<unsigned long long>(after.dead_letters), secs);
  if (config->storage.partitions && *config->storage.partitions != (*done)->partition_count()) {
    std::fprintf(stderr, "migrate: now set storage.partitions = %u in the config (it says %u)\n",
                 (*done)->partition_count(), *config->storage.partitions);
  }
  return kExitOk;
}

}  // namespace rapport
