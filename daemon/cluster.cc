#include "daemon/cluster.h"

#include <simdjson.h>

#include <algorithm>

#include "common/json_writer.h"
#include "storage/partitioner.h"

namespace rapport {

std::string encode_member(const Member& member) {
  JsonWriter out;
  out.begin_object();
  out.key("format").value(1);
  out.key("instance").value(member.instance);
  out.key("http_address").value(member.http_address);
  out.key("partitions").begin_array();
  for (std::uint32_t p : member.partitions) out.value(p);
  out.end_array();
  out.end_object();
  return out.take();
}

Result<Member> decode_member(std::string_view key, std::string_view value) {
  const auto fail = [&](const std::string& why) {
    return Status::Error("member record \"" + std::string(key) + "\": " + why);
  };
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(value);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS || doc.get_object().get(object) != simdjson::SUCCESS) {
    return fail("not a JSON object");
  }
  std::int64_t format = 0;
  if (object["format"].get_int64().get(format) != simdjson::SUCCESS || format != 1) return fail("format is not 1");
  Member m;
  std::string_view s;
  if (object["instance"].get_string().get(s) != simdjson::SUCCESS || s.empty()) return fail("no string \"instance\"");
  if (s != key) return fail("its instance \"" + std::string(s) + "\" is not its key");
  m.instance = std::string(s);
  if (object["http_address"].get_string().get(s) != simdjson::SUCCESS || s.empty()) {
    return fail("no string \"http_address\"");
  }
  if (!s.starts_with("http://") && !s.starts_with("https://")) {
    return fail("http_address \"" + std::string(s) + "\" is not an http:// or https:// URL");
  }
  while (s.ends_with('/')) s.remove_suffix(1);
  m.http_address = std::string(s);
  simdjson::ondemand::array partitions;
  if (object["partitions"].get_array().get(partitions) != simdjson::SUCCESS) return fail("no array \"partitions\"");
  for (auto item : partitions) {
    std::uint64_t p = 0;
    if (item.get_uint64().get(p) != simdjson::SUCCESS || p > UINT32_MAX) return fail("a partition is not a number");
    m.partitions.push_back(static_cast<std::uint32_t>(p));
  }
  std::sort(m.partitions.begin(), m.partitions.end());
  m.partitions.erase(std::unique(m.partitions.begin(), m.partitions.end()), m.partitions.end());
  return m;
}

Cluster::Cluster(Member self, std::uint32_t partitions) : partitions_(partitions), self_(std::move(self)) {
  std::sort(self_.partitions.begin(), self_.partitions.end());
}

Member Cluster::self() const {
  std::lock_guard lock(mutex_);
  return self_;
}

Member Cluster::set_own(std::vector<std::uint32_t> partitions) {
  std::sort(partitions.begin(), partitions.end());
  partitions.erase(std::unique(partitions.begin(), partitions.end()), partitions.end());
  std::lock_guard lock(mutex_);
  self_.partitions = std::move(partitions);
  std::erase_if(lag_, [&](const auto& entry) {
    return !std::binary_search(self_.partitions.begin(), self_.partitions.end(), entry.first);
  });
  return self_;
}

void Cluster::update(const Member& member) {
  std::lock_guard lock(mutex_);
  if (member.instance == self_.instance) return;
  Claim& claim = others_[member.instance];
  claim.member = member;
  claim.order = next_order_++;
}

void Cluster::remove(std::string_view instance) {
  std::lock_guard lock(mutex_);
  if (auto it = others_.find(instance); it != others_.end()) others_.erase(it);
}

void Cluster::set_lag(std::uint32_t partition, std::optional<std::int64_t> lag) {
  std::lock_guard lock(mutex_);
  if (lag) {
    lag_[partition] = *lag;
  } else {
    lag_.erase(partition);
  }
}

Owner Cluster::owner_locked(std::uint32_t partition) const {
  if (std::binary_search(self_.partitions.begin(), self_.partitions.end(), partition)) {
    return Owner{Owner::Kind::kSelf, self_.instance, self_.http_address};
  }
  const Claim* best = nullptr;
  for (const auto& [name, claim] : others_) {
    const auto& ps = claim.member.partitions;
    if (std::binary_search(ps.begin(), ps.end(), partition) && (best == nullptr || claim.order > best->order)) {
      best = &claim;
    }
  }
  if (best == nullptr) return Owner{};
  return Owner{Owner::Kind::kOther, best->member.instance, best->member.http_address};
}

Owner Cluster::owner_of_partition(std::uint32_t partition) const {
  std::lock_guard lock(mutex_);
  return owner_locked(partition);
}

Owner Cluster::owner_of(std::string_view customer_id) const {
  return owner_of_partition(partition_of(customer_id, partitions_));
}

std::size_t Cluster::member_count() const {
  std::lock_guard lock(mutex_);
  return 1 + others_.size();
}

std::uint32_t Cluster::unowned_partitions() const {
  std::lock_guard lock(mutex_);
  std::uint32_t n = 0;
  for (std::uint32_t p = 0; p < partitions_; ++p) n += owner_locked(p).kind == Owner::Kind::kUnknown ? 1 : 0;
  return n;
}

std::string Cluster::to_json() const {
  std::lock_guard lock(mutex_);
  JsonWriter out;
  out.begin_object();
  out.key("instance").value(self_.instance);
  out.key("partitions").begin_array();
  for (std::uint32_t p = 0; p < partitions_; ++p) {
    const Owner owner = owner_locked(p);
    out.begin_object();
    out.key("partition").value(p);
    out.key("owner");
    if (owner.kind == Owner::Kind::kUnknown) {
      out.null();
    } else {
      out.value(owner.instance);
    }
    out.key("http_address");
    if (owner.kind == Owner::Kind::kUnknown) {
      out.null();
    } else {
      out.value(owner.http_address);
    }
    out.key("lag");
    if (auto it = lag_.find(p); owner.kind == Owner::Kind::kSelf && it != lag_.end()) {
      out.value(it->second);
    } else {
      out.null();
    }
    out.end_object();
  }
  out.end_array();
  out.key("members").begin_array();
  const auto write_member = [&](const Member& m) {
    out.begin_object();
    out.key("instance").value(m.instance);
    out.key("http_address").value(m.http_address);
    out.key("partitions").begin_array();
    for (std::uint32_t p : m.partitions) out.value(p);
    out.end_array();
    out.end_object();
  };
  write_member(self_);
  for (const auto& [name, claim] : others_) write_member(claim.member);
  out.end_array();
  out.end_object();
  return out.take();
}

}  // namespace rapport
