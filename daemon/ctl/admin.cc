// rapportctl erase and deadletter list/replay.
#include "daemon/ctl/admin.h"

#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/json_writer.h"
#include "daemon/customer_json.h"
#include "ingest/decoder.h"
#include "storage/identity.h"

namespace rapport {
namespace {

constexpr std::size_t kDeadLetterPage = 1000;  // the API's maximum page
// POST /v1/events lists at most the first 100 rejections: a replay request holds no more items.
constexpr std::size_t kReplayItemsPerRequest = 100;
constexpr std::size_t kReplayBodyBytes = 8u << 20;

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
Result<std::vector<Letter>> fetch_letters(const CtlTarget& target, const PartitionedStore* store, std::uint64_t after,
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
Status replay_locally(PartitionedStore& store, const Config& config, const std::vector<Letter>& letters,
                      ReplayTally& tally) {
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

// POSTs the letters as NDJSON to the daemon's /v1/events?deadletter=false (admin scope when tokens are configured):
// it answers the items it still rejects without storing them as new dead letters, so a still-invalid letter stays
// the one letter it was. Collects the sequences it accepted (or found duplicate).
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
    request.target = "/v1/events?deadletter=false";
    request.content_type = "application/x-ndjson";
    request.body = std::move(body);
    auto response = ctl_http(target, std::move(request), /*default_timeout_s=*/120);
    if (!response.ok()) return response.status();
    if (response->status != 200) {
      return Status::Error("POST /v1/events?deadletter=false: HTTP " + std::to_string(response->status) + ": " +
                           response->body);
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
      report_invalid(tally, *sent[index], std::string(reason) + ": " + std::string(error));
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
  std::unique_ptr<PartitionedStore> store;  // state-dir mode: the source of the letters and where they are removed
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

// --- erase -------------------------------------------------------------------

int ctl_erase(const CtlTarget& target, const std::string& id) {
  if (id.empty() || id.size() > kMaxIdBytes) return ctl_error("customer id must be 1 to 128 bytes");
  if (!target.url.empty()) {
    HttpClientRequest request;
    request.method = "DELETE";
    request.target = "/v1/customers/" + percent_encode(id);
    auto response = ctl_http(target, std::move(request));
    if (!response.ok()) return ctl_error(response.message());
    if (response->status == 404) return ctl_error("unknown customer: " + id, kExitPartial);
    if (response->status != 200) return ctl_http_failure(*response, "erase " + id);
  } else {
    auto config = ctl_config(target);
    if (!config.ok()) return ctl_error(config.message());
    if (config->kafka.enabled()) {
      // The erasure must reach the changes topic as a tombstone, or the partition's next owner restores
      // the customer.
      return ctl_error(
          "Kafka mode ([kafka] brokers is set): erase through rapportd with --url, which publishes the customer's "
          "tombstone to the changes topic; erased offline, the customer would come back with the next restore");
    }
    auto store = ctl_open_store(*config, /*read_only=*/false);
    if (!store.ok()) return ctl_error(store.message());
    auto identity = load_identity_state(**store);
    if (!identity.ok()) return ctl_error(identity.message());
    for (const auto& [survivor, aliases] : identity->groups) {
      if (survivor == id || std::find(aliases.begin(), aliases.end(), id) != aliases.end()) {
        return ctl_error(id + " is merged (with " + survivor + "): erase it with --url, which erases its whole group");
      }
    }
    auto erased = (*store)->erase_customer(id);
    if (!erased.ok()) return ctl_error(erased.message());
    if (!*erased) return ctl_error("unknown customer: " + id, kExitPartial);
  }
  std::printf("erased customer %s (state, events and dedup keys)\n", id.c_str());
  return kExitOk;
}

}  // namespace rapport
