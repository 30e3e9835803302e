// rapportctl: deadletter list/replay, backup, restore.
#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/json_writer.h"
#include "daemon/ctl_admin.h"
#include "daemon/customer_json.h"
#include "ingest/decoder.h"

namespace rapport {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kDeadLetterPage = 1000;  // the API's maximum page
// POST /v1/events lists at most the first 100 rejections: a replay request holds no more items.
constexpr std::size_t kReplayItemsPerRequest = 100;
constexpr std::size_t kReplayBodyBytes = 8u << 20;

double megabytes(std::uintmax_t bytes) { return static_cast<double>(bytes) / 1e6; }

// A dead letter as both the store and the API present it.
struct Letter {
  std::uint64_t sequence = 0;
  std::string received;  // RFC 3339
  std::string transport, reason, error, payload;
};

void print_letter(const Letter& l) {
  JsonWriter w;
  w.begin_object()
      .field("sequence", l.sequence)
      .field("received", l.received)
      .field("transport", l.transport)
      .field("reason", l.reason)
      .field("error", l.error)
      .field("payload", l.payload)
      .end_object();
  std::printf("%s\n", w.str().c_str());
}

Status parse_letters(std::string_view body, std::vector<Letter>& out) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array letters;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS ||
      doc["dead_letters"].get_array().get(letters) != simdjson::SUCCESS) {
    return Status::Error("the daemon's /v1/deadletter answer has no \"dead_letters\" array");
  }
  for (simdjson::dom::element e : letters) {
    Letter& l = out.emplace_back();
    std::string_view s;
    if (e["sequence"].get_uint64().get(l.sequence) != simdjson::SUCCESS) {
      return Status::Error("a dead letter without a sequence number in the daemon's answer");
    }
    const std::pair<const char*, std::string*> fields[] = {{"received", &l.received},
                                                           {"transport", &l.transport},
                                                           {"reason", &l.reason},
                                                           {"error", &l.error},
                                                           {"payload", &l.payload}};
    for (const auto& [name, dest] : fields) {
      if (e[name].get_string().get(s) == simdjson::SUCCESS) dest->assign(s);
    }
  }
  return Status::Ok();
}

// Every letter after `after` (at most `limit`, 0 = all), from the daemon or the store.
Result<std::vector<Letter>> fetch_letters(const CtlTarget& target, const Store* store, std::uint64_t after,
                                          std::size_t limit, const std::function<void(const Letter&)>& each) {
  std::vector<Letter> all;
  for (;;) {
    const std::size_t want = limit == 0 ? kDeadLetterPage : std::min(kDeadLetterPage, limit - all.size());
    if (want == 0) break;
    std::vector<Letter> page;
    if (store == nullptr) {
      HttpClientRequest request;
      request.target = "/v1/deadletter?after=" + std::to_string(after) + "&limit=" + std::to_string(want);
      auto response = ctl_http(target, std::move(request));
      if (!response.ok()) return response.status();
      if (response->status != 200) {
        return Status::Error("deadletter: HTTP " + std::to_string(response->status) + ": " + response->body);
      }
      if (Status s = parse_letters(response->body, page); !s.ok()) return s;
    } else {
      auto stored = store->dead_letters(after, want);
      if (!stored.ok()) return stored.status();
      for (StoredDeadLetter& d : *stored) {
        page.push_back(Letter{d.sequence, format_rfc3339(d.letter.received_ms), std::move(d.letter.transport),
                              std::move(d.letter.reason), std::move(d.letter.message), std::move(d.letter.payload)});
      }
    }
    for (Letter& l : page) {
      after = std::max(after, l.sequence);
      if (each) each(l);
      all.push_back(std::move(l));
    }
    if (page.size() < want) break;
  }
  return all;
}

bool blank(std::string_view s) { return s.find_first_not_of(" \t\r\n") == std::string_view::npos; }

struct ReplayTally {
  std::size_t accepted = 0, duplicates = 0, invalid = 0;
  std::vector<std::uint64_t> replayed;  // sequences to remove
};

void report_invalid(ReplayTally& tally, const Letter& l, std::string_view why) {
  ++tally.invalid;
  std::fprintf(stderr, "  sequence %llu still invalid, kept: %.*s\n", static_cast<unsigned long long>(l.sequence),
               static_cast<int>(why.size()), why.data());
}

// Decodes and applies the letters in this process (state-dir mode).
Status replay_locally(Store& store, const Config& config, const std::vector<Letter>& letters, ReplayTally& tally) {
  Decoder decoder(config.server.decode);
  std::vector<Event> events;
  std::vector<std::uint64_t> sequences;
  std::vector<EventOutcome> outcomes;
  const auto flush = [&]() -> Status {
    if (events.empty()) return Status::Ok();
    if (Status s = store.apply_batch(events, config.apply, outcomes); !s.ok()) return s;
    for (EventOutcome o : outcomes) (o == EventOutcome::kAccepted ? tally.accepted : tally.duplicates)++;
    if (auto removed = store.remove_dead_letters(sequences); !removed.ok()) return removed.status();
    tally.replayed.insert(tally.replayed.end(), sequences.begin(), sequences.end());
    events.clear();
    sequences.clear();
    return Status::Ok();
  };
  for (const Letter& l : letters) {
    if (blank(l.payload)) {
      report_invalid(tally, l, "empty payload (the item was too large to keep)");
      continue;
    }
    Event& event = events.emplace_back();
    RejectReason reason{};
    std::string_view message;
    if (!decoder.decode_line(l.payload, wall_ms(), event, reason, message)) {
      events.pop_back();
      report_invalid(tally, l, std::string(reject_reason_label(reason)) + ": " + std::string(message));
      continue;
    }
    sequences.push_back(l.sequence);
    if (events.size() == kDeadLetterPage) {
      if (Status s = flush(); !s.ok()) return s;
    }
  }
  return flush();
}

// POSTs the letters as NDJSON to the daemon; collects the sequences it accepted (or found duplicate).
Status replay_over_http(const CtlTarget& target, const std::vector<Letter>& letters, ReplayTally& tally) {
  std::size_t next = 0;
  while (next < letters.size()) {
    std::string body;
    std::vector<const Letter*> sent;  // line index -> letter
    while (next < letters.size() && sent.size() < kReplayItemsPerRequest && body.size() < kReplayBodyBytes) {
      const Letter& l = letters[next++];
      if (blank(l.payload)) {
        report_invalid(tally, l, "empty payload (the item was too large to keep)");
        continue;
      }
      std::string line = l.payload;
      std::replace(line.begin(), line.end(), '\n', ' ');  // raw newlines in valid JSON are whitespace
      std::replace(line.begin(), line.end(), '\r', ' ');
      body += line;
      body += '\n';
      sent.push_back(&l);
    }
    if (sent.empty()) continue;
    HttpClientRequest request;
    request.method = "POST";
    request.target = "/v1/events";
    request.content_type = "application/x-ndjson";
    request.body = std::move(body);
    auto response = ctl_http(target, std::move(request), /*default_timeout_s=*/120);
    if (!response.ok()) return response.status();
    if (response->status != 200) {
      return Status::Error("POST /v1/events: HTTP " + std::to_string(response->status) + ": " + response->body);
    }
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    std::uint64_t accepted = 0, duplicates = 0;
    simdjson::dom::array rejected;
    if (parser.parse(response->body).get(doc) != simdjson::SUCCESS ||
        doc["accepted"].get_uint64().get(accepted) != simdjson::SUCCESS ||
        doc["duplicates"].get_uint64().get(duplicates) != simdjson::SUCCESS ||
        doc["rejected"].get_array().get(rejected) != simdjson::SUCCESS) {
      return Status::Error("unexpected answer from POST /v1/events: " + response->body);
    }
    tally.accepted += accepted;
    tally.duplicates += duplicates;
    std::vector<bool> failed(sent.size(), false);
    for (simdjson::dom::element r : rejected) {
      std::uint64_t index = 0;
      std::string_view error = "rejected";
      std::string_view reason = "rejected";
      if (r["index"].get_uint64().get(index) != simdjson::SUCCESS || index >= sent.size()) continue;
      if (r["error"].get_string().get(error) != simdjson::SUCCESS) error = "rejected";
      if (r["reason"].get_string().get(reason) != simdjson::SUCCESS) reason = "rejected";
      failed[index] = true;
      report_invalid(
          tally, *sent[index],
          std::string(reason) + ": " + std::string(error) + " (the daemon also keeps it as a new dead letter)");
    }
    for (std::size_t i = 0; i < sent.size(); ++i) {
      if (!failed[i]) tally.replayed.push_back(sent[i]->sequence);
    }
  }
  return Status::Ok();
}

// Removes the replayed letters from the daemon's dead-letter store (POST /v1/deadletter:remove, a page at a time).
Status remove_over_http(const CtlTarget& target, const std::vector<std::uint64_t>& sequences) {
  for (std::size_t next = 0; next < sequences.size();) {
    const std::size_t end = std::min(sequences.size(), next + kDeadLetterPage);
    std::string body = "{\"sequences\":[";
    for (std::size_t i = next; i < end; ++i) {
      if (i > next) body += ',';
      body += std::to_string(sequences[i]);
    }
    body += "]}";
    next = end;
    HttpClientRequest request;
    request.method = "POST";
    request.target = "/v1/deadletter:remove";
    request.content_type = "application/json";
    request.body = std::move(body);
    auto response = ctl_http(target, std::move(request), /*default_timeout_s=*/120);
    if (!response.ok()) return response.status();
    if (response->status != 200) {
      return Status::Error("the replayed letters were not removed: POST /v1/deadletter:remove: HTTP " +
                           std::to_string(response->status) + ": " + response->body);
    }
  }
  return Status::Ok();
}

// Flushes a file or directory to disk.
bool sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

Result<std::uint64_t> dir_entries(const std::string& dir) {
  std::error_code ec;
  std::uint64_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++n;
  if (ec) return Status::Error("cannot list " + dir + ": " + ec.message());
  return n;
}

}  // namespace

// --- deadletter ---------------------------------------------------------------

int ctl_deadletter_list(const CtlTarget& target, const DeadLetterOptions& options) {
  const auto print = [](const Letter& l) { print_letter(l); };
  if (!target.url.empty()) {
    auto letters = fetch_letters(target, nullptr, options.after, options.limit, print);
    if (!letters.ok()) return ctl_error(letters.message());
    return kExitOk;
  }
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/true);
  if (!store.ok()) return ctl_error(store.message());
  auto letters = fetch_letters(target, store->get(), options.after, options.limit, print);
  if (!letters.ok()) return ctl_error(letters.message());
  return kExitOk;
}

int ctl_deadletter_replay(const CtlTarget& target, const DeadLetterOptions& options) {
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  const bool over_http = !target.url.empty();
  std::unique_ptr<Store> store;  // state-dir mode: the source of the letters and where they are removed
  if (!over_http) {
    auto opened = ctl_open_store(*config, /*read_only=*/false);
    if (!opened.ok()) return ctl_error(opened.message());
    store = std::move(*opened);
  }
  auto letters = fetch_letters(target, store.get(), options.after, options.limit, {});
  if (!letters.ok()) return ctl_error(letters.message());
  if (letters->empty()) {
    std::printf("no dead letters to replay\n");
    return kExitOk;
  }
  ReplayTally tally;
  Status s = over_http ? replay_over_http(target, *letters, tally) : replay_locally(*store, *config, *letters, tally);
  if (s.ok() && over_http) s = remove_over_http(target, tally.replayed);
  std::printf("replayed %zu dead letters: %zu accepted, %zu duplicates, %zu still invalid (kept)\n", letters->size(),
              tally.accepted, tally.duplicates, tally.invalid);
  if (!s.ok()) return ctl_error("replay stopped: " + s.message());
  return tally.invalid > 0 ? kExitPartial : kExitOk;
}

// --- backup ---------------------------------------------------------------------

int ctl_backup(const CtlTarget& target, const std::string& destination, bool quiet) {
  if (!target.url.empty()) {
    return ctl_error("backup copies a state dir (hot, beside the running daemon): use --state-dir, not --url");
  }
  if (destination.empty()) return ctl_error("backup destination is empty");
  std::error_code ec;
  const bool existed = fs::exists(destination, ec);
  if (existed) {
    if (!fs::is_directory(destination, ec))
      return ctl_error("backup destination " + destination + " is not a directory");
    auto entries = dir_entries(destination);
    if (!entries.ok()) return ctl_error(entries.message());
    if (*entries > 0) return ctl_error("backup destination " + destination + " is not empty");
  }
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/true);
  if (!store.ok()) return ctl_error(store.message());
  const std::string& source = config->storage.directory;
  if (fs::weakly_canonical(source, ec) == fs::weakly_canonical(destination, ec)) {
    return ctl_error("backup destination is the state dir itself");
  }

  const StoreStats before = (*store)->stats();
  std::fprintf(stderr, "backing up %.1f MB (about %llu customers, %llu events) from %s to %s (compacting) ...\n",
               megabytes(before.used_bytes), static_cast<unsigned long long>(before.customers),
               static_cast<unsigned long long>(before.events), source.c_str(), destination.c_str());
  const auto started = std::chrono::steady_clock::now();
  std::atomic<bool> done{false};
  Status result;
  std::thread copier([&] {
    result = (*store)->backup(destination);
    done.store(true, std::memory_order_release);
  });
  const bool show = !quiet && isatty(STDERR_FILENO);
  const std::string data_file = (fs::path(destination) / "data.mdb").string();
  while (!done.load(std::memory_order_acquire)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!show) continue;
    const std::uintmax_t size = fs::file_size(data_file, ec);
    if (ec) continue;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "\r  %.1f / %.1f MB written, %.1f s   ", megabytes(size), megabytes(before.used_bytes), secs);
    std::fflush(stderr);
  }
  copier.join();
  if (show) std::fprintf(stderr, "\n");
  store->reset();
  if (!result.ok()) {
    // Leave no half-written backup behind.
    if (existed) {
      fs::remove(data_file, ec);
      fs::remove(fs::path(destination) / "lock.mdb", ec);
    } else {
      fs::remove_all(destination, ec);
    }
    return ctl_error(result.message());
  }
  if (!sync_path(data_file) || !sync_path(destination)) {
    return ctl_error("cannot flush the backup in " + destination + " to disk: " + std::strerror(errno));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  // Verify: the copy opens and holds the snapshot's customers and events.
  StoreOptions verify_options;
  verify_options.directory = destination;
  verify_options.read_only = true;
  StoreStats copied;
  {
    auto copy = Store::open(verify_options);
    if (!copy.ok()) return ctl_error("the backup in " + destination + " does not open: " + copy.message());
    copied = (*copy)->stats();
  }
  fs::remove(fs::path(destination) / "lock.mdb", ec);  // created by the check; a backup is data.mdb alone
  const std::uintmax_t size = fs::file_size(data_file, ec);
  std::printf("backup of %llu customers, %llu events written to %s in %.1f s (%.1f MB)\n",
              static_cast<unsigned long long>(copied.customers), static_cast<unsigned long long>(copied.events),
              destination.c_str(), secs, megabytes(ec ? 0 : size));
  return kExitOk;
}

// --- restore --------------------------------------------------------------------

bool state_dir_in_use(const std::string& directory) {
  const std::string lock_file = (fs::path(directory) / "lock.mdb").string();
  const int fd = ::open(lock_file.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  // Every process with the environment open holds a shared fcntl lock on byte 0 of lock.mdb.
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 1;
  const bool in_use = ::fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
  ::close(fd);
  return in_use;
}

int ctl_restore(const CtlTarget& target, const std::string& source, bool force) {
  if (!target.url.empty()) return ctl_error("restore writes a state dir: use --state-dir, not --url");
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  const std::string& dir = config->storage.directory;
  std::error_code ec;
  const fs::path source_data = fs::path(source) / "data.mdb";
  if (!fs::is_regular_file(source_data, ec)) {
    return ctl_error(source + " is not a backup: it has no data.mdb (make one with `rapportctl backup`)");
  }
  if (fs::weakly_canonical(source, ec) == fs::weakly_canonical(dir, ec)) {
    return ctl_error("the backup and the state dir are the same directory");
  }

  // The backup must open as a Rapport store.
  StoreStats backup_stats;
  {
    const bool had_lock = fs::exists(fs::path(source) / "lock.mdb", ec);
    StoreOptions options;
    options.directory = source;
    options.read_only = true;
    {
      auto backup = Store::open(options);
      if (!backup.ok()) return ctl_error(source + " is not a readable Rapport backup: " + backup.message());
      backup_stats = (*backup)->stats();
    }
    if (!had_lock) fs::remove(fs::path(source) / "lock.mdb", ec);
  }

  // The target: never a state dir in use, and only an empty one unless --force.
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return ctl_error(dir + " exists and is not a directory");
    if (state_dir_in_use(dir)) {
      return ctl_error(dir + " is in use by a running process (rapportd?): stop it before restoring");
    }
    auto entries = dir_entries(dir);
    if (!entries.ok()) return ctl_error(entries.message());
    if (*entries > 0 && !force) {
      return ctl_error(dir + " already holds data: restore into an empty directory, or add --force to replace it");
    }
  } else {
    fs::create_directories(dir, ec);
    if (ec) return ctl_error("cannot create " + dir + ": " + ec.message());
    ::chmod(dir.c_str(), 0750);
  }

  const std::uintmax_t bytes = fs::file_size(source_data, ec);
  std::fprintf(stderr, "restoring %.1f MB (%llu customers, %llu events) from %s into %s ...\n",
               megabytes(ec ? 0 : bytes), static_cast<unsigned long long>(backup_stats.customers),
               static_cast<unsigned long long>(backup_stats.events), source.c_str(), dir.c_str());
  const auto started = std::chrono::steady_clock::now();
  const fs::path target_data = fs::path(dir) / "data.mdb";
  const fs::path staging = fs::path(dir) / "data.mdb.restoring";
  fs::copy_file(source_data, staging, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    fs::remove(staging, ec);
    return ctl_error("cannot copy " + source_data.string() + " to " + dir + ": " + ec.message());
  }
  ::chmod(staging.c_str(), 0640);
  if (!sync_path(staging.string())) return ctl_error("cannot flush " + staging.string() + ": " + std::strerror(errno));
  fs::rename(staging, target_data, ec);
  if (ec) return ctl_error("cannot move the restored data into place: " + ec.message());
  fs::remove(fs::path(dir) / "lock.mdb", ec);  // a stale reader table belongs to the replaced data
  sync_path(dir);

  StoreOptions check = config->storage;
  check.read_only = true;
  auto restored = Store::open(check);
  if (!restored.ok()) return ctl_error("the restored state dir does not open: " + restored.message());
  const StoreStats stats = (*restored)->stats();
  restored->reset();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("restored %llu customers, %llu events from %s into %s in %.1f s\n",
              static_cast<unsigned long long>(stats.customers), static_cast<unsigned long long>(stats.events),
              source.c_str(), dir.c_str(), secs);
  return kExitOk;
}

}  // namespace rapport
