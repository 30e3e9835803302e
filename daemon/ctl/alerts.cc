#include "daemon/ctl/alerts.h"

#include <charconv>
#include <cstdio>
#include <map>
#include <set>

#include "common/json_writer.h"
#include "daemon/alert_delivery.h"
#include "daemon/alerts.h"
#include "daemon/customer_json.h"

namespace rapport {
namespace {

constexpr std::size_t kPage = 1000;

// Every entry of one area, partition by partition.
template <typename Visit>
Status for_each_entry(const PartitionedStore& store, OutboxArea area, Visit&& visit) {
  for (std::uint32_t p = 0; p < store.partition_count(); ++p) {
    std::uint64_t after = 0;
    for (;;) {
      auto page = store.partition(p).outbox(area, after, kPage);
      if (!page.ok()) return page.status();
      for (const OutboxEntry& e : *page) visit(p, e);
      if (page->size() < kPage) break;
      after = page->back().sequence;
    }
  }
  return Status::Ok();
}

bool looks_like_id(const std::string& id) {
  const auto dash = id.find('-');
  if (dash == std::string::npos) return false;
  std::uint32_t partition = 0;
  std::uint64_t sequence = 0;
  const char* end = id.data() + id.size();
  auto a = std::from_chars(id.data(), id.data() + dash, partition);
  auto b = std::from_chars(id.data() + dash + 1, end, sequence);
  return a.ec == std::errc() && a.ptr == id.data() + dash && b.ec == std::errc() && b.ptr == end;
}

// The delivery id: the one the record carries (kept by rapportctl migrate), else "<partition>-<sequence>".
std::string entry_id(std::uint32_t p, std::uint64_t sequence, const AlertMessage& decoded) {
  return decoded.id.empty() ? alert_delivery_id(p, sequence) : decoded.id;
}

}  // namespace

int ctl_alerts_list(const CtlTarget& target, const AlertsListOptions& options) {
  if (!target.url.empty()) return ctl_error("rapportctl alerts works on a state dir (--state-dir), not --url");
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/true);
  if (!store.ok()) return ctl_error(store.message());
  Status s = for_each_entry(**store, options.pending ? OutboxArea::kPending : OutboxArea::kDead,
                            [](std::uint32_t p, const OutboxEntry& e) {
                              JsonWriter out;
                              AlertMessage m;
                              const Status d = decode_alert_record(e.payload, m);
                              out.begin_object().field("id", entry_id(p, e.sequence, m));
                              if (!d.ok()) {
                                out.field("error", d.message());
                              } else {
                                out.field("alert", m.alert).field("customer_id", m.customer_id).key("event_id");
                                if (m.event_id) {
                                  out.value(*m.event_id);
                                } else {
                                  out.null();
                                }
                                out.field("at", format_rfc3339(m.at_ms));
                              }
                              out.end_object();
                              std::printf("%s\n", out.str().c_str());
                            });
  if (!s.ok()) return ctl_error(s.message());
  return kExitOk;
}

int ctl_alerts_replay(const CtlTarget& target, const std::vector<std::string>& ids) {
  if (!target.url.empty()) return ctl_error("rapportctl alerts works on a state dir (--state-dir), not --url");
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/false);
  if (!store.ok()) return ctl_error(store.message());
  for (const std::string& id : ids) {
    if (!looks_like_id(id)) {
      return ctl_error("'" + id + "' is not a delivery id (PARTITION-SEQUENCE, as alerts list shows)");
    }
  }
  // The dead entries to replay, by their delivery id (after a migrate an id no longer names the partition).
  std::map<std::uint32_t, std::vector<std::uint64_t>> wanted;
  const std::set<std::string> asked_ids(ids.begin(), ids.end());
  Status s = for_each_entry(**store, OutboxArea::kDead, [&](std::uint32_t p, const OutboxEntry& e) {
    AlertMessage m;
    (void)decode_alert_record(e.payload, m);
    if (asked_ids.empty() || asked_ids.count(entry_id(p, e.sequence, m)) > 0) wanted[p].push_back(e.sequence);
  });
  if (!s.ok()) return ctl_error(s.message());
  std::size_t moved = 0;
  for (const auto& [p, seqs] : wanted) {
    auto r = (*store)->partition(p).move_outbox(OutboxArea::kDead, seqs);
    if (!r.ok()) return ctl_error("replay stopped: " + r.message());
    moved += *r;
  }
  std::printf("replayed %zu dead alert deliveries\n", moved);
  const std::size_t asked = asked_ids.size();
  if (asked > 0 && moved < asked) {
    return ctl_error(std::to_string(asked - moved) + " of the ids given are not in the dead area", kExitPartial);
  }
  return kExitOk;
}

}  // namespace rapport
