// Dead letters: rejected items kept, bounded, for operators. See engine.h.
#include <algorithm>

#include "storage/engine.h"

namespace rapport {
namespace storage_internal {

int Engine::append_dead_letters(MDB_txn* txn, std::span<const DeadLetter> letters, std::string& context) {
  if (letters.empty()) return 0;
  context = "cannot append dead letters";
  // Next sequence: the stored high-water mark, else the last key + 1.
  std::uint64_t next = 1;
  MDB_val k = to_val(kDeadLetterNextKey), v;
  int rc = mdb_get(txn, meta, &k, &v);
  if (rc == 0) {
    std::string_view stored = to_view(v);
    if (stored.size() != 9 || static_cast<std::uint8_t>(stored[0]) != kRecordVersion) {
      context = "meta record " + in_quotes(kDeadLetterNextKey) + " is corrupt";
      return kFailed;
    }
    next = parse_sequence_key(stored.substr(1));
  } else if (rc != MDB_NOTFOUND) {
    return rc;
  }
  Cursor cursor;
  if ((rc = cursor.open(txn, deadletter)) != 0) return rc;
  rc = cursor.get(k, v, MDB_LAST);
  if (rc == 0) {
    next = std::max(next, parse_sequence_key(to_view(k)) + 1);
  } else if (rc != MDB_NOTFOUND) {
    return rc;
  }
  for (const DeadLetter& letter : letters) {
    key = sequence_key(next++);
    encode_dead_letter(letter, value);
    k = to_val(key);
    v = to_val(value);
    if ((rc = mdb_put(txn, deadletter, &k, &v, MDB_APPEND)) != 0) return rc;
  }
  value.assign(1, static_cast<char>(kRecordVersion));
  value += sequence_key(next);
  k = to_val(kDeadLetterNextKey);
  v = to_val(value);
  if ((rc = mdb_put(txn, meta, &k, &v, 0)) != 0) return rc;
  // Trim the oldest beyond capacity.
  MDB_stat st;
  if ((rc = mdb_stat(txn, deadletter, &st)) != 0) return rc;
  for (std::size_t n = st.ms_entries; n > options.dead_letter_capacity; --n) {
    if ((rc = cursor.get(k, v, MDB_FIRST)) != 0) return rc;
    if ((rc = cursor.del()) != 0) return rc;
  }
  return 0;
}

}  // namespace storage_internal

using namespace storage_internal;

Status Store::add_dead_letters(std::span<const DeadLetter> letters) {
  if (letters.empty() && !impl_->options.read_only) return Status::Ok();
  Impl& d = *impl_;
  return d.write(
      [&](MDB_txn* txn, std::string& context) -> int { return d.append_dead_letters(txn, letters, context); });
}

Result<std::vector<StoredDeadLetter>> Store::dead_letters(std::uint64_t after, std::size_t limit) const {
  const Impl& d = *impl_;
  std::vector<StoredDeadLetter> result;
  if (d.empty || limit == 0 || after == UINT64_MAX) return result;
  Status s = d.read([&](MDB_txn* txn) {
    Cursor cursor;
    int rc = cursor.open(txn, d.deadletter);
    std::string start = sequence_key(after + 1);
    MDB_val k = to_val(start), v;
    if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
    while (rc == 0 && result.size() < limit) {
      StoredDeadLetter& item = result.emplace_back();
      item.sequence = parse_sequence_key(to_view(k));
      if (Status st = decode_dead_letter(item.sequence, to_view(v), item.letter); !st) return st;
      rc = cursor.get(k, v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return Status::Error(d.describe("cannot read dead letters", rc));
    return Status::Ok();
  });
  if (!s) return s;
  return result;
}

Result<std::size_t> Store::remove_dead_letters(std::span<const std::uint64_t> sequences) {
  if (sequences.empty() && !impl_->options.read_only) return std::size_t{0};
  Impl& d = *impl_;
  std::size_t removed = 0;
  Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
    context = "cannot remove dead letters";
    removed = 0;
    for (std::uint64_t seq : sequences) {
      std::string key = sequence_key(seq);
      MDB_val k = to_val(key);
      int rc = mdb_del(txn, d.deadletter, &k, nullptr);
      if (rc == 0) ++removed;
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
  });
  if (!s) return s;
  return removed;
}

}  // namespace rapport
