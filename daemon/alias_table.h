// AliasTable: the alias groups in memory (docs/design.md, "Identity"): which
// survivor an id sent as an alias resolves to, for the fronts' routing and the
// API's reads. Immutable snapshots replaced by the identity service.
//
// Two locks order merges against the rest:
//  - route_mutex: the sink relabels a submission's events and queues them under
//    it (shared); a merge swaps the snapshot and queues its writer barrier under
//    it (exclusive), so each event is routed either before the barrier with the
//    old groups or after it with the new ones.
//  - read_mutex: API reads of customers hold it (shared) across resolving and
//    reading; an identity operation holds it (exclusive) while it moves events,
//    so no reader sees a half-moved group.
// Thread safety: as described; snapshot() from any thread.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "scoring/event.h"

namespace rapport {

struct AliasMap {
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::string, Hash, std::equal_to<>> survivor_of;  // alias -> survivor
  std::map<std::string, std::vector<std::string>, std::less<>> groups;              // survivor -> aliases (sorted)

  // The survivor an alias resolves to; nullptr when `id` is no alias.
  const std::string* survivor(std::string_view id) const {
    if (survivor_of.empty()) return nullptr;
    auto it = survivor_of.find(id);
    return it == survivor_of.end() ? nullptr : &it->second;
  }
  // The aliases of a survivor (empty when none).
  const std::vector<std::string>& aliases(std::string_view survivor) const {
    static const std::vector<std::string> kNone;
    auto it = groups.find(survivor);
    return it == groups.end() ? kNone : it->second;
  }
  static std::shared_ptr<const AliasMap> from_groups(const std::map<std::string, std::vector<std::string>>& groups) {
    auto m = std::make_shared<AliasMap>();
    for (const auto& [survivor, aliases] : groups) {
      m->groups.emplace(survivor, aliases);
      for (const std::string& a : aliases) m->survivor_of.emplace(a, survivor);
    }
    return m;
  }
};

class AliasTable {
 public:
  AliasTable() : map_(std::make_shared<const AliasMap>()) {}

  std::shared_ptr<const AliasMap> snapshot() const {
    std::lock_guard lock(snapshot_mutex_);
    return map_;
  }
  void replace(std::shared_ptr<const AliasMap> map) {
    std::lock_guard lock(snapshot_mutex_);
    map_ = std::move(map);
  }

  // Relabels the events sent to an alias: customer_id becomes the survivor, sent_as keeps the id sent
  // (unless an earlier relabel set it). The caller holds route_mutex (shared).
  void relabel(std::vector<Event>& events) const {
    const std::shared_ptr<const AliasMap> map = snapshot();
    if (map->survivor_of.empty()) return;
    for (Event& e : events) {
      if (const std::string* s = map->survivor(e.customer_id.view())) {
        if (e.sent_as.empty()) e.sent_as = e.customer_id;
        e.customer_id.assign(*s);
      }
    }
  }

  mutable std::shared_mutex route_mutex;
  mutable std::shared_mutex read_mutex;

 private:
  mutable std::mutex snapshot_mutex_;
  std::shared_ptr<const AliasMap> map_;
};

}  // namespace rapport
