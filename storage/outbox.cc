// The alerts outbox (storage/outbox.h): `outbox` and `outbox_dead`, sequence -> payload.
#include <algorithm>

#include "storage/engine.h"

namespace rapport {
namespace storage_internal {

int Engine::append_outbox(MDB_txn* txn, std::span<const std::string> payloads, std::string& context, OutboxArea area,
                          std::uint64_t min_next) {
  if (payloads.empty() && min_next == 0) return 0;
  context = "cannot append to the alerts outbox";
  std::uint64_t next = 0;
  int rc = get_meta_u64(txn, kOutboxNextKey, next, context);
  if (rc != 0) return rc;
  next = std::max<std::uint64_t>({next, min_next, 1});
  Cursor cursor;
  if ((rc = cursor.open(txn, area == OutboxArea::kPending ? outbox : outbox_dead)) != 0) return rc;
  MDB_val k, v;
  for (MDB_dbi dbi : {outbox, outbox_dead}) {  // never below an entry that exists (a store copied without meta)
    Cursor last;
    if ((rc = last.open(txn, dbi)) != 0) return rc;
    rc = last.get(k, v, MDB_LAST);
    if (rc == 0) next = std::max(next, parse_sequence_key(to_view(k)) + 1);
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  }
  for (const std::string& payload : payloads) {
    key = sequence_key(next++);
    value.assign(1, static_cast<char>(kRecordVersion));
    value += payload;
    k = to_val(key);
    v = to_val(value);
    if ((rc = cursor.put(k, v, MDB_APPEND)) != 0) return rc;
  }
  if ((rc = put_meta_u64(txn, kOutboxNextKey, next, context)) != 0) return rc;
  // Beyond the bound: drop the oldest pending deliveries, never refuse the batch.
  MDB_stat st;
  if ((rc = mdb_stat(txn, outbox, &st)) != 0) return rc;
  const std::size_t capacity = std::max<std::size_t>(options.outbox_capacity, 1);
  std::uint64_t dropped = 0;
  Cursor oldest;
  if ((rc = oldest.open(txn, outbox)) != 0) return rc;
  for (std::size_t n = st.ms_entries; n > capacity; --n, ++dropped) {
    if ((rc = oldest.get(k, v, MDB_FIRST)) != 0) return rc;
    if ((rc = oldest.del()) != 0) return rc;
  }
  // Counted once committed is not knowable here; a retried transaction may count twice (a metric, not a ledger).
  if (dropped > 0) outbox_dropped.fetch_add(dropped, std::memory_order_relaxed);
  return 0;
}

std::vector<std::pair<std::uint64_t, bool>> Engine::take_outbox_changes() {
  std::lock_guard<std::mutex> lock(outbox_queue_mutex);
  std::vector<std::pair<std::uint64_t, bool>> out;
  out.swap(outbox_queue);
  return out;
}

void Engine::requeue_outbox_changes(std::vector<std::pair<std::uint64_t, bool>>& queued) {
  if (queued.empty()) return;
  std::lock_guard<std::mutex> lock(outbox_queue_mutex);
  outbox_queue.insert(outbox_queue.end(), queued.begin(), queued.end());
}

int Engine::apply_outbox_changes(MDB_txn* txn, std::span<const std::pair<std::uint64_t, bool>> queued,
                                 std::string& context) {
  for (const auto& [seq, delivered] : queued) {
    const std::string k8 = sequence_key(seq);
    MDB_val k = to_val(k8), v;
    int rc = mdb_get(txn, outbox, &k, &v);
    if (rc == MDB_NOTFOUND) continue;  // dropped by the bound, or already changed
    if (rc == 0 && !delivered) {
      const std::string copy(to_view(v));  // v points into a page the delete may free
      MDB_val cv = to_val(copy);
      rc = mdb_put(txn, outbox_dead, &k, &cv, 0);
    }
    if (rc == 0) rc = mdb_del(txn, outbox, &k, nullptr);
    if (rc != 0) {
      context = "cannot update the alerts outbox";
      return rc;
    }
  }
  return 0;
}

}  // namespace storage_internal

using namespace storage_internal;

namespace {

MDB_dbi area_dbi(const Engine& d, OutboxArea area) { return area == OutboxArea::kPending ? d.outbox : d.outbox_dead; }

}  // namespace

void Store::set_outbox_observer(std::shared_ptr<OutboxObserver> observer) {
  std::lock_guard<std::mutex> op(impl_->op_mutex);
  impl_->outbox_observer = std::move(observer);
}

Status Store::add_outbox(std::span<const std::string> payloads) {
  Impl& d = *impl_;
  if (payloads.empty() && !d.options.read_only) return Status::Ok();
  return d.write([&](MDB_txn* txn, std::string& context) -> int { return d.append_outbox(txn, payloads, context); });
}

Status Store::import_outbox(std::span<const std::string> pending, std::span<const std::string> dead,
                            std::uint64_t next_at_least) {
  Impl& d = *impl_;
  return d.write([&](MDB_txn* txn, std::string& context) -> int {
    int rc = d.append_outbox(txn, pending, context, OutboxArea::kPending, next_at_least);
    if (rc == 0) rc = d.append_outbox(txn, dead, context, OutboxArea::kDead, next_at_least);
    return rc;
  });
}

Result<std::uint64_t> Store::outbox_next_sequence() const {
  const Impl& d = *impl_;
  std::uint64_t next = 1;
  if (d.empty || !d.has_outbox) return next;
  Status s = d.read([&](MDB_txn* txn) {
    std::string context = "cannot read the alerts outbox";
    std::uint64_t stored = 0;
    int rc = d.get_meta_u64(txn, kOutboxNextKey, stored, context);
    next = std::max(next, stored);
    for (MDB_dbi dbi : {d.outbox, d.outbox_dead}) {
      Cursor last;
      MDB_val k, v;
      if (rc == 0) rc = last.open(txn, dbi);
      if (rc == 0) rc = last.get(k, v, MDB_LAST);
      if (rc == 0) next = std::max(next, parse_sequence_key(to_view(k)) + 1);
      if (rc == MDB_NOTFOUND) rc = 0;
    }
    if (rc != 0) return Status::Error(d.describe(context, rc));
    return Status::Ok();
  });
  if (!s) return s;
  return next;
}

Result<std::vector<OutboxEntry>> Store::outbox(OutboxArea area, std::uint64_t after, std::size_t limit) const {
  const Impl& d = *impl_;
  std::vector<OutboxEntry> result;
  if (d.empty || !d.has_outbox || limit == 0 || after == UINT64_MAX) return result;
  Status s = d.read([&](MDB_txn* txn) {
    Cursor cursor;
    int rc = cursor.open(txn, area_dbi(d, area));
    const std::string start = sequence_key(after + 1);
    MDB_val k = to_val(start), v;
    if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
    while (rc == 0 && result.size() < limit) {
      const std::string_view stored = to_view(v);
      const std::uint64_t seq = parse_sequence_key(to_view(k));
      if (stored.empty() || static_cast<std::uint8_t>(stored[0]) != kRecordVersion) {
        return Status::Error("alerts outbox entry " + std::to_string(seq) + " in " + in_quotes(d.options.directory) +
                             " has an unknown format");
      }
      result.push_back(OutboxEntry{seq, std::string(stored.substr(1))});
      rc = cursor.get(k, v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return Status::Error(d.describe("cannot read the alerts outbox", rc));
    return Status::Ok();
  });
  if (!s) return s;
  return result;
}

Result<std::size_t> Store::remove_outbox(OutboxArea area, std::span<const std::uint64_t> sequences) {
  Impl& d = *impl_;
  if (sequences.empty() && !d.options.read_only) return std::size_t{0};
  std::size_t removed = 0;
  Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
    context = "cannot remove alerts outbox entries";
    removed = 0;
    for (std::uint64_t seq : sequences) {
      const std::string key = sequence_key(seq);
      MDB_val k = to_val(key);
      const int rc = mdb_del(txn, area_dbi(d, area), &k, nullptr);
      if (rc == 0) ++removed;
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
  });
  if (!s) return s;
  return removed;
}

Result<std::size_t> Store::move_outbox(OutboxArea from, std::span<const std::uint64_t> sequences) {
  Impl& d = *impl_;
  if (sequences.empty() && !d.options.read_only) return std::size_t{0};
  const MDB_dbi source = area_dbi(d, from);
  const MDB_dbi target = area_dbi(d, from == OutboxArea::kPending ? OutboxArea::kDead : OutboxArea::kPending);
  std::size_t moved = 0;
  Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
    context = "cannot move alerts outbox entries";
    moved = 0;
    for (std::uint64_t seq : sequences) {
      const std::string key = sequence_key(seq);
      MDB_val k = to_val(key), v;
      int rc = mdb_get(txn, source, &k, &v);
      if (rc == MDB_NOTFOUND) continue;
      if (rc != 0) return rc;
      const std::string copy(to_view(v));  // v points into the page the delete may free
      MDB_val cv = to_val(copy);
      if ((rc = mdb_put(txn, target, &k, &cv, 0)) != 0) return rc;
      if ((rc = mdb_del(txn, source, &k, nullptr)) != 0) return rc;
      ++moved;
    }
    return 0;
  });
  if (!s) return s;
  return moved;
}

void Store::queue_outbox_change(std::uint64_t sequence, bool delivered) {
  std::lock_guard<std::mutex> lock(impl_->outbox_queue_mutex);
  impl_->outbox_queue.emplace_back(sequence, delivered);
}

Result<std::size_t> Store::flush_outbox_changes() {
  Impl& d = *impl_;
  auto queued = d.take_outbox_changes();
  if (queued.empty()) return std::size_t{0};
  Status s =
      d.write([&](MDB_txn* txn, std::string& context) -> int { return d.apply_outbox_changes(txn, queued, context); });
  if (!s) {
    d.requeue_outbox_changes(queued);
    return s;
  }
  return queued.size();
}

Result<OutboxStats> Store::outbox_stats() const {
  const Impl& d = *impl_;
  OutboxStats stats;
  stats.dropped = d.outbox_dropped.load(std::memory_order_relaxed);
  if (d.empty || !d.has_outbox) return stats;
  Status s = d.read([&](MDB_txn* txn) {
    MDB_stat st;
    int rc = mdb_stat(txn, d.outbox, &st);
    if (rc == 0) stats.pending = st.ms_entries;
    if (rc == 0 && (rc = mdb_stat(txn, d.outbox_dead, &st)) == 0) stats.dead = st.ms_entries;
    if (rc != 0) return Status::Error(d.describe("cannot read the alerts outbox size", rc));
    return Status::Ok();
  });
  if (!s) return s;
  return stats;
}

}  // namespace rapport
