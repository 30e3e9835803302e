// The write path: deduplication, the journal, the overlays and replay. See engine.h.
#include <algorithm>
#include <iterator>

#include "storage/engine.h"

namespace rapport {
namespace storage_internal {

// Loads a customer's state (fresh if absent) into state; found says whether it was stored.
int Engine::load_customer(MDB_txn* txn, std::string_view customer_id, CustomerState& state, bool& found,
                          std::string& context) const {
  found = false;
  MDB_val k = to_val(customer_id), v;
  int rc = mdb_get(txn, customers, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) {
    context = "cannot read customer " + in_quotes(customer_id);
    return rc;
  }
  if (Status s = deserialize(to_view(v), state); !s) {
    context = "customer record " + in_quotes(customer_id) + ": " + s.message();
    return kFailed;
  }
  found = true;
  return 0;
}

// True if another process wrote the journal, checkpointed or erased since
// the overlay was last brought up to date.
int Engine::is_stale(MDB_txn* txn, bool& stale, std::string& context) const {
  std::uint64_t stored_generation = 0, last = 0;
  int rc = get_meta_u64(txn, kGenerationKey, stored_generation, context);
  if (rc == 0) rc = journal_last(txn, last, context);
  stale = stored_generation != generation || last > seen_seq;
  return rc;
}

// The batch's (or replay's) new state of a customer, starting from the
// overlay (use_overlay) or the stored record; returns its index in delta.customers.
int Engine::touch(MDB_txn* txn, std::string_view id, bool use_overlay, std::uint32_t& change, std::string& context) {
  const std::uint64_t hash = hash_key(id);
  change = delta.customer_index.find(id, hash, [&](std::uint32_t i) { return delta.customer_id(i); });
  if (change != kNone) return 0;
  StateChange fresh;
  fresh.hash = hash;
  const std::uint32_t live = use_overlay ? active.find_entry(id, hash) : kNone;
  const std::uint32_t held = use_overlay && live == kNone ? frozen.find_entry(id, hash) : kNone;
  if (live != kNone) {
    fresh.live = live;
    fresh.in_db = active.entries[live].in_db;
    fresh.state = take_state();
    *fresh.state = *active.entries[live].state;  // reuses the spare's capacity
  } else if (held != kNone) {
    // The checkpoint in progress writes (or wrote) its record: the stored index may hold its events.
    fresh.in_db = true;
    fresh.state = take_state();
    *fresh.state = *frozen.entries[held].state;
  } else {
    fresh.state = take_state();
    *fresh.state = CustomerState{};
    if (int rc = load_customer(txn, id, *fresh.state, fresh.in_db, context); rc != 0) return rc;
  }
  fresh.id = arena_append(delta.customer_arena, id);
  fresh.id_size = static_cast<std::uint16_t>(id.size());
  change = static_cast<std::uint32_t>(delta.customers.size());
  delta.customers.push_back(std::move(fresh));
  delta.customer_index.insert(change, hash);
  return 0;
}

// Appends with a cursor kept at the end of the journal (no descent from the root per record).
int Engine::append_journal(Cursor& cursor, std::uint64_t seq, std::string_view record, std::string& context) {
  char k_bytes[8];
  put_sequence(k_bytes, seq);
  MDB_val k{sizeof k_bytes, k_bytes}, v = to_val(record);
  int rc = cursor.put(k, v, MDB_APPEND);
  if (rc != 0) context = "cannot append to the journal";
  return rc;
}

// Forgets both overlays and any checkpoint in progress (under
// overlay_mutex, exclusively); returns the entries so that the caller
// frees them after releasing the lock.
std::vector<OverlayEntry> Engine::clear_overlays_locked() {
  std::vector<OverlayEntry> old = active.clear();
  std::vector<OverlayEntry> old_frozen = frozen.clear();
  old.insert(old.end(), std::make_move_iterator(old_frozen.begin()), std::make_move_iterator(old_frozen.end()));
  checkpointing = false;
  slice_order.clear();
  slice_next = slice_records_left = 0;
  return old;
}

// Moves a committed delta into the active overlay.
void Engine::install(Delta& d) {
  std::vector<OverlayEntry> old;  // freed after the lock is released
  std::vector<std::uint32_t> installed(d.customers.size());
  const auto first_new = static_cast<std::uint32_t>(d.rebuild ? 0 : active.pending.size());
  {
    std::unique_lock<std::shared_mutex> lock(overlay_mutex);
    if (d.rebuild) {
      old = clear_overlays_locked();
      generation = d.generation;
      checkpoint_seq = d.checkpoint;
      seen_seq = d.checkpoint;
      next_seq = 1;
    }
    for (std::size_t c = 0; c < d.customers.size(); ++c) {
      StateChange& change = d.customers[c];
      if (!change.changed) continue;
      std::uint32_t index = change.live;
      if (index == kNone) {
        index = static_cast<std::uint32_t>(active.entries.size());
        OverlayEntry& entry = active.entries.emplace_back();
        entry.id = arena_append(active.customer_arena, d.customer_id(static_cast<std::uint32_t>(c)));
        entry.id_size = change.id_size;
        entry.in_db = change.in_db;
        if (!change.in_db) ++active.new_customers;
        active.customer_index.insert(index, change.hash);
      }
      OverlayEntry& entry = active.entries[index];
      active.checkpoint_bytes -= entry.record_bytes;
      entry.record_bytes = estimate_record_bytes(active.customer_id(entry), *change.state);
      active.checkpoint_bytes += entry.record_bytes;
      // The state it replaces is reused by a later batch if nobody else holds it (a reader holding
      // it took its reference under overlay_mutex, which this holds exclusively).
      if (entry.state && entry.state.use_count() == 1 && spare_states.size() < kMaxSpareStates) {
        // use_count() is a relaxed load. Taking and dropping a reference is an acquire-release
        // on the count, which orders the reads of a reader that dropped its reference (a
        // release) before the writer reuses the state.
        { const std::shared_ptr<const CustomerState> sync = entry.state; }
        spare_states.push_back(std::const_pointer_cast<CustomerState>(std::move(entry.state)));
      }
      entry.state = std::move(change.state);
      installed[c] = index;
    }
    for (std::uint32_t i = 0; i < d.events.size(); ++i) {
      const NewEvent& e = d.events[i];
      const auto p = static_cast<std::uint32_t>(active.pending.size());
      active.pending.push_back(
          PendingEvent{e.seq, e.ts_ms, arena_append(active.pending_arena, d.key(i)), kNone, e.key_size});
      OverlayEntry& entry = active.entries[installed[e.customer]];
      if (entry.last == kNone) {
        entry.first = p;
      } else {
        active.pending[entry.last].next = p;
      }
      entry.last = p;
      ++entry.count;
      active.checkpoint_bytes += e.key_size + kIndexValueBytes + kEntryOverhead;
    }
    active.pending_events += d.events.size();
    seen_seq = std::max(seen_seq, d.last_seq);
    next_seq = std::max(next_seq, d.next_seq);
  }
  // The dedup indexes are the writer's alone.
  if (d.rebuild) {
    active.pending_index.clear(d.events.size());
    frozen.pending_index.clear();
  }
  if (d.rebuild) stored_keys_ready = false;  // the stored index may hold keys this process never saw
  for (std::uint32_t i = 0; i < d.events.size(); ++i) {
    active.pending_index.insert(first_new + i, d.events[i].hash);
    if (stored_keys_ready) stored_keys.add(d.events[i].hash);
  }
  if (d.config_changed) {
    journal_config = d.config;
    journal_config_bytes = d.config_bytes;
  }
  if (active.pending_events > 0 && !first_pending) first_pending = std::chrono::steady_clock::now();
  if (active.pending_events == 0) first_pending.reset();
  d.clear();
}

// Brings the overlay up to date with the stored journal: replays entries
// after seen_seq, or rebuilds it from the checkpoint if the stored
// generation differs (open, or another process checkpointed or erased).
Status Engine::refresh() {
  delta.clear();
  Status s = read([&](MDB_txn* txn) -> Status {
    std::string context;
    std::uint64_t stored_generation = 0, checkpoint = 0, next_floor = 0, last = 0;
    int rc = get_meta_u64(txn, kGenerationKey, stored_generation, context);
    if (rc == 0) rc = get_meta_u64(txn, kCheckpointKey, checkpoint, context);
    if (rc == 0) rc = get_meta_u64(txn, kJournalNextKey, next_floor, context);
    if (rc == 0) rc = journal_last(txn, last, context);
    const bool rebuild = stored_generation != generation;
    if (rc == 0 && !rebuild && last <= seen_seq) return Status::Ok();
    delta.rebuild = rebuild;
    delta.generation = stored_generation;
    delta.checkpoint = checkpoint;
    delta.config = journal_config;
    if (rc == 0 && rebuild) {
      // The config in effect at the checkpoint.
      delta.config = ApplyConfig{};
      MDB_val k = to_val(kApplyConfigKey), v;
      rc = mdb_get(txn, meta, &k, &v);
      if (rc == MDB_NOTFOUND) {
        rc = 0;
      } else if (rc == 0) {
        std::string_view stored = to_view(v);
        if (stored.empty() || static_cast<std::uint8_t>(stored[0]) != kRecordVersion ||
            !decode_apply_config(stored.substr(1), delta.config)) {
          return Status::Error("meta record " + in_quotes(kApplyConfigKey) + " is corrupt");
        }
      } else {
        context = "cannot read meta " + in_quotes(kApplyConfigKey);
      }
    }
    if (rc == 0) rc = replay(txn, rebuild ? checkpoint : seen_seq, context);
    if (rc == kFailed) return Status::Error(std::move(context));
    if (rc != 0) return Status::Error(describe(context, rc));
    delta.last_seq = std::max(last, checkpoint);
    delta.next_seq = std::max({last + 1, next_floor, checkpoint + 1});
    return Status::Ok();
  });
  if (!s) {
    delta.clear();
    return s;
  }
  if (delta.rebuild || delta.last_seq > seen_seq) {
    encode_apply_config(delta.config, delta.config_bytes);
    delta.config_changed = true;
    install(delta);
  }
  return Status::Ok();
}

// Applies the journal entries after `after` to delta.
int Engine::replay(MDB_txn* txn, std::uint64_t after, std::string& context) {
  if (!has_journal) return 0;
  Cursor cursor;
  int rc = cursor.open(txn, journal);
  std::string start = sequence_key(after + 1);
  MDB_val k = to_val(start), v;
  if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
  JournalRecord record;
  Event event;
  std::string event_key;
  while (rc == 0) {
    const std::uint64_t seq = parse_sequence_key(to_view(k));
    if (Status s = decode_journal(seq, to_view(v), record); !s) {
      context = s.message();
      return kFailed;
    }
    if (record.kind == kJournalApplyConfig) {
      delta.config = record.config;
    } else {
      event_key.assign(record.customer_id);
      event_key.push_back('\0');
      event_key.append(record.event_id);
      const std::uint64_t hash = hash_key(event_key);
      // Deduplicated before it was journaled; a repeat here would be a bug, so it is not applied twice.
      if (!delta.has_key(event_key, hash) && (delta.rebuild || !is_pending(event_key, hash))) {
        std::uint32_t change = kNone;
        if ((rc = touch(txn, record.customer_id, !delta.rebuild, change, context)) != 0) return rc;
        bool indexed = false;
        if (delta.customers[change].in_db) {
          // A slice of an unfinished checkpoint already wrote it into the stored record.
          MDB_val ik = to_val(event_key), iv;
          rc = mdb_get(txn, events, &ik, &iv);
          if (rc != 0 && rc != MDB_NOTFOUND) {
            context = "cannot look up event " + in_quotes(record.customer_id) + "/" + in_quotes(record.event_id);
            return rc;
          }
          indexed = rc == 0;
        }
        if (!indexed) {
          to_event(record, event);
          apply_event(*delta.customers[change].state, event, delta.config);
          delta.customers[change].changed = true;
          delta.add_event(event_key, hash, change, seq, event.ts_ms);
        }
      }
    }
    rc = cursor.get(k, v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) {
    context = "cannot read the journal";
    return rc;
  }
  return 0;
}

std::shared_ptr<CustomerState> Engine::take_state() {
  if (spare_states.empty()) return std::make_shared<CustomerState>();
  std::shared_ptr<CustomerState> state = std::move(spare_states.back());
  spare_states.pop_back();
  return state;
}

void Engine::build_stored_keys() {
  stored_keys_ready = false;
  Status s = read([&](MDB_txn* txn) -> Status {
    MDB_stat st;
    int rc = mdb_stat(txn, events, &st);
    if (rc != 0) return Status::Error(describe("cannot read the index size", rc));
    stored_keys.reset(2 * (st.ms_entries + pending_events()));
    Cursor cursor;
    MDB_val k, v;
    rc = cursor.open(txn, events);
    if (rc == 0) rc = cursor.get(k, v, MDB_FIRST);
    std::uint64_t hashes[512];
    std::size_t n = 0;
    while (rc == 0) {
      hashes[n++] = hash_key(to_view(k));
      if (n == std::size(hashes)) {
        stored_keys.add(hashes, n);
        n = 0;
      }
      rc = cursor.get(k, v, MDB_NEXT);
    }
    stored_keys.add(hashes, n);
    if (rc != MDB_NOTFOUND) return Status::Error(describe("cannot read the index", rc));
    return Status::Ok();
  });
  if (!s) return;
  for (const Overlay* overlay : {&active, &frozen}) {
    for (const PendingEvent& e : overlay->pending) stored_keys.add(hash_key(overlay->pending_key(e)));
  }
  stored_keys_ready = true;
}

}  // namespace storage_internal

using namespace storage_internal;

Status Store::apply_batch(std::span<const Event> events, const ApplyConfig& config, std::vector<EventOutcome>& outcomes,
                          std::span<const DeadLetter> dead_letters, std::span<const SourceOffset> sources) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].customer_id.empty() || events[i].event_id.empty()) {
      return Status::Error("event " + std::to_string(i) + " of the batch has an empty customer_id or event_id");
    }
  }
  Impl& d = *impl_;
  if (d.options.read_only) return Status::Error("store opened read-only: " + in_quotes(d.options.directory));
  for (const SourceOffset& source : sources) {
    if (source.topic.empty() || source.partition < 0 || source.next_offset < 0) {
      return Status::Error("a source offset needs a topic, a partition >= 0 and an offset >= 0");
    }
  }
  if (events.empty() && dead_letters.empty() && sources.empty()) {
    outcomes.clear();
    return Status::Ok();
  }
  std::lock_guard<std::mutex> op(d.op_mutex);
  // Memory stays bounded: past twice the checkpoint size, a checkpoint must succeed first.
  if (d.pending_events() >= 2 * std::max<std::size_t>(d.options.checkpoint_events, 1)) {
    if (Status s = d.complete_checkpoint_locked(); !s) return s;
  }
  if (!d.stored_keys_ready && !events.empty()) d.build_stored_keys();
  std::string config_bytes;
  encode_apply_config(config, config_bytes);
  std::string journal_record;
  // Outbox changes the delivery queued (delivered, dead) ride in this commit: no transaction of their own.
  auto outbox_changes = d.take_outbox_changes();
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      if (Status s = d.refresh(); !s) {
        d.requeue_outbox_changes(outbox_changes);
        return s;
      }
    }
    bool stale = false;
    Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
      d.delta.clear();
      d.outbox_payloads.clear();
      outcomes.assign(events.size(), EventOutcome::kAccepted);
      int rc = d.is_stale(txn, stale, context);
      if (rc != 0) return rc;
      if (stale) {
        context = "the journal keeps changing (another process is writing)";
        return kFailed;
      }
      std::uint64_t seq = d.next_seq;
      Cursor journal_cursor;
      if ((rc = journal_cursor.open(txn, d.journal)) != 0) {
        context = "cannot append to the journal";
        return rc;
      }
      d.delta.config = config;
      if (config_bytes != d.journal_config_bytes && !events.empty()) {
        // Replay must apply the following events with this config.
        d.delta.config_changed = true;
        d.delta.config_bytes = config_bytes;
        journal_record.assign(1, static_cast<char>(kRecordVersion));
        journal_record.push_back(static_cast<char>(kJournalApplyConfig));
        journal_record += config_bytes;
        if ((rc = d.append_journal(journal_cursor, seq++, journal_record, context)) != 0) return rc;
      }
      for (std::size_t i = 0; i < events.size(); ++i) {
        const Event& e = events[i];
        std::string_view customer_id = e.customer_id.view();
        d.key.assign(customer_id);
        d.key.push_back('\0');
        d.key.append(e.event_id.view());
        const std::uint64_t hash = hash_key(d.key);
        // Duplicate: earlier in this batch, pending since the checkpoint, or in the index.
        if (d.delta.has_key(d.key, hash) || d.is_pending(d.key, hash)) {
          outcomes[i] = EventOutcome::kDuplicate;
          continue;
        }
        std::uint32_t change = kNone;
        if ((rc = d.touch(txn, customer_id, true, change, context)) != 0) return rc;
        StateChange& customer = d.delta.customers[change];
        // Only a customer with a stored record can have indexed events.
        // Only a customer with a stored record can have indexed events, and only a filter hit can be one.
        if (customer.in_db && (!d.stored_keys_ready || d.stored_keys.may_contain(hash))) {
          MDB_val k = to_val(d.key), v;
          rc = mdb_get(txn, d.events, &k, &v);
          if (rc == 0) {
            outcomes[i] = EventOutcome::kDuplicate;
            continue;
          }
          if (rc != MDB_NOTFOUND) {
            context = "cannot look up event " + in_quotes(customer_id) + "/" + in_quotes(e.event_id.view());
            return rc;
          }
        }
        const bool observed = d.outbox_observer && d.outbox_observer->before_event(e, *customer.state);
        apply_event(*customer.state, e, config);
        if (observed) d.outbox_observer->after_event(e, *customer.state, d.outbox_payloads);
        customer.changed = true;
        encode_journal_event(e, journal_record);
        if ((rc = d.append_journal(journal_cursor, seq, journal_record, context)) != 0) {
          context = "cannot journal event " + in_quotes(customer_id) + "/" + in_quotes(e.event_id.view());
          return rc;
        }
        d.delta.add_event(d.key, hash, change, seq, e.ts_ms);
        ++seq;
      }
      d.delta.next_seq = seq;
      d.delta.last_seq = seq - 1;
      if (!d.outbox_payloads.empty() && (rc = d.append_outbox(txn, d.outbox_payloads, context)) != 0) return rc;
      if (!outbox_changes.empty() && (rc = d.apply_outbox_changes(txn, outbox_changes, context)) != 0) return rc;
      for (const SourceOffset& source : sources) {
        rc = d.put_meta_u64(txn, source_offset_key(source.topic, source.partition),
                            static_cast<std::uint64_t>(source.next_offset), context);
        if (rc != 0) return rc;
      }
      return d.append_dead_letters(txn, dead_letters, context);
    });
    if (stale && attempt < 100) continue;
    if (!s) {
      d.delta.clear();
      d.requeue_outbox_changes(outbox_changes);
      return s;
    }
    break;
  }
  d.install(d.delta);
  d.ensure_headroom();
  d.last_batch_events = events.size();
  if (d.options.checkpoint_in_apply_batch) (void)d.checkpoint_step_locked(false);  // on failure: retried later
  return Status::Ok();
}

}  // namespace rapport
