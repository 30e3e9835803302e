#include "daemon/identity.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <set>
#include <utility>

#include "common/log.h"

namespace rapport {
namespace {

// Every event of a customer, newest first.
Status read_all_events(const PartitionedStore& store, const std::string& id, std::vector<TimelineEvent>& out) {
  std::optional<TimelineKey> after;
  for (;;) {
    auto page = store.customer_events(id, after, 1000);
    if (!page.ok()) return Status::Error(page.message());
    if (page->empty()) return Status::Ok();
    after.emplace(page->back().ts_ms, page->back().event_id);
    for (TimelineEvent& e : *page) out.push_back(std::move(e));
  }
}

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// The writers' barrier: each parks in it (a job on its thread) until the operation releases them.
struct Park {
  std::mutex m;
  std::condition_variable cv;
  std::size_t parked = 0;
  bool released = false;
  void hold() {
    std::unique_lock lock(m);
    ++parked;
    cv.notify_all();
    cv.wait(lock, [&] { return released; });
  }
  void wait_parked(std::size_t n) {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return parked >= n; });
  }
  void release() {
    {
      std::lock_guard lock(m);
      released = true;
    }
    cv.notify_all();
  }
};

}  // namespace

IdentityService::IdentityService(PartitionedStore& store, Writers& writers, prometheus::Registry& registry,
                                 IdentityOptions options, ApplyConfig apply)
    : store_(store), writers_(writers), options_(std::move(options)), apply_(apply) {
  merges_ = &prometheus::BuildCounter()
                 .Name("rapport_identity_merges_total")
                 .Help("Identity merges completed (each POST :merge that merged at least one id)")
                 .Register(registry)
                 .Add({});
  unmerges_ = &prometheus::BuildCounter()
                   .Name("rapport_identity_unmerges_total")
                   .Help("Identity unmerges completed")
                   .Register(registry)
                   .Add({});
  aliases_ = &prometheus::BuildHistogram()
                  .Name("rapport_identity_aliases")
                  .Help("Aliases of the survivor after each merge or unmerge")
                  .Register(registry)
                  .Add({}, prometheus::Histogram::BucketBoundaries{0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000});
}

IdentityService::~IdentityService() { stop(); }

void IdentityService::set_options(IdentityOptions options, ApplyConfig apply) {
  std::lock_guard lock(mutex_);
  options_ = std::move(options);
  apply_ = apply;
}

Status IdentityService::recover() {
  auto state = load_identity_state(store_);
  if (!state.ok()) return Status::Error("identity: " + state.message());
  if (state->op.kind != IdentityOpKind::kNone) {
    log_warn("identity: completing an operation recorded before the last stop",
             {{"op", static_cast<std::int64_t>(state->op.kind)}});
    if (Status s = complete(*state); !s)
      return Status::Error("identity: cannot complete the recorded operation: " + s.message());
    state_ = state_after(*state);
  } else {
    state_ = std::move(*state);
  }
  table_.replace(AliasMap::from_groups(state_.groups));
  return Status::Ok();
}

void IdentityService::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void IdentityService::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void IdentityService::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, with everything queued before done
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

namespace {
IdentityAnswer failure(int status, std::string error) {
  IdentityAnswer a;
  a.status = status;
  a.error = std::move(error);
  return a;
}

void crash_if_due(std::string_view step) {
  const char* hook = std::getenv(kIdentityCrashEnv);
  if (hook != nullptr && std::string_view(hook) == step) ::kill(::getpid(), SIGKILL);
}
}  // namespace

void IdentityService::merge(std::string survivor, std::vector<std::string> from, Done done) {
  std::unique_lock lock(mutex_);
  if (stopping_ || !thread_.joinable()) {
    lock.unlock();
    done(failure(503, "not accepting: shutting down"));
    return;
  }
  queue_.push_back([this, s = std::move(survivor), ids = std::move(from), done = std::move(done)]() mutable {
    execute(IdentityOpKind::kMerge, std::move(s), std::move(ids), done);
  });
  wake_.notify_all();
}

void IdentityService::unmerge(std::string survivor, std::vector<std::string> ids, Done done) {
  std::unique_lock lock(mutex_);
  if (stopping_ || !thread_.joinable()) {
    lock.unlock();
    done(failure(503, "not accepting: shutting down"));
    return;
  }
  queue_.push_back([this, s = std::move(survivor), ids = std::move(ids), done = std::move(done)]() mutable {
    execute(IdentityOpKind::kUnmerge, std::move(s), std::move(ids), done);
  });
  wake_.notify_all();
}

void IdentityService::erase_group(std::string id, Done done) {
  std::unique_lock lock(mutex_);
  if (stopping_ || !thread_.joinable()) {
    lock.unlock();
    done(failure(503, "not accepting: shutting down"));
    return;
  }
  queue_.push_back([this, id = std::move(id), done = std::move(done)]() mutable {
    execute(IdentityOpKind::kErase, std::move(id), {}, done);
  });
  wake_.notify_all();
}

IdentityAnswer IdentityService::check(IdentityOpKind kind, const std::string& survivor,
                                      std::vector<std::string>& ids) const {
  IdentityOptions options;
  {
    std::lock_guard lock(mutex_);
    options = options_;
  }
  const auto alias_of = [&](const std::string& id) -> const std::string* {
    for (const auto& [s, aliases] : state_.groups) {
      if (std::binary_search(aliases.begin(), aliases.end(), id)) return &s;
    }
    return nullptr;
  };
  const auto aliases_of = [&](const std::string& id) -> std::size_t {
    auto it = state_.groups.find(id);
    return it == state_.groups.end() ? 0 : it->second.size();
  };
  const auto blocked = [&](const std::string& id) {
    return id.empty() ||
           std::find(options.blocked_ids.begin(), options.blocked_ids.end(), id) != options.blocked_ids.end();
  };
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  if (kind == IdentityOpKind::kMerge) {
    for (const std::string* id : {&survivor}) {
      if (blocked(*id))
        return failure(422, "customer id " + quoted(*id) + " is blocked from merging ([identity] blocked_ids)");
    }
    for (const std::string& id : ids) {
      if (blocked(id))
        return failure(422, "customer id " + quoted(id) + " is blocked from merging ([identity] blocked_ids)");
    }
    if (const std::string* s = alias_of(survivor)) {
      if (std::binary_search(ids.begin(), ids.end(), *s)) {
        return failure(409, "merging " + quoted(*s) + " into " + quoted(survivor) +
                                " would make a cycle: " + quoted(survivor) + " is already an alias of " + quoted(*s));
      }
      return failure(409,
                     quoted(survivor) + " is an alias of " + quoted(*s) + ": merge into " + quoted(*s) + " instead");
    }
    std::size_t total = aliases_of(survivor);
    std::vector<std::string> fresh;
    for (const std::string& id : ids) {
      if (id == survivor) return failure(409, "cannot merge " + quoted(id) + " into itself (a cycle)");
      if (const std::string* s = alias_of(id)) {
        if (*s == survivor) continue;  // already merged: nothing to do
        return failure(409, quoted(id) + " is already merged into " + quoted(*s) + ": unmerge it first, or merge " +
                                quoted(*s) + " itself");
      }
      total += 1 + aliases_of(id);
      fresh.push_back(id);
    }
    if (total > options.max_aliases) {
      return failure(422, "the merge would give " + quoted(survivor) + " " + std::to_string(total) +
                              " aliases, more than [identity] max_aliases = " + std::to_string(options.max_aliases));
    }
    ids = std::move(fresh);
  } else if (kind == IdentityOpKind::kUnmerge) {
    auto it = state_.groups.find(survivor);
    if (it == state_.groups.end()) {
      if (const std::string* s = alias_of(survivor)) {
        return failure(409, quoted(survivor) + " is an alias of " + quoted(*s) + ", not a survivor: unmerge it from " +
                                quoted(*s));
      }
      return failure(404, quoted(survivor) + " has no aliases");
    }
    for (const std::string& id : ids) {
      if (!std::binary_search(it->second.begin(), it->second.end(), id)) {
        return failure(409, quoted(id) + " is not an alias of " + quoted(survivor));
      }
    }
  }
  return IdentityAnswer{};
}

Status IdentityService::stage(IdentityState& recorded) const {
  IdentityOp& op = recorded.op;
  const auto shadows_of = [&](const std::string& id) -> const std::vector<Event>& {
    static const std::vector<Event> kNone;
    auto it = state_.shadowed.find(id);
    return it == state_.shadowed.end() ? kNone : it->second;
  };
  std::vector<TimelineEvent> events;
  std::set<std::string, std::less<>> have;  // event ids the survivor holds (its dedup keys)
  if (op.kind == IdentityOpKind::kMerge) {
    if (Status s = read_all_events(store_, op.survivor, events); !s) return s;
    for (const TimelineEvent& t : events) have.insert(t.event_id);
    op.shadowed = shadows_of(op.survivor);
    for (const std::string& id : op.ids) {
      events.clear();
      if (Status s = read_all_events(store_, id, events); !s) return s;
      for (const TimelineEvent& t : events) {
        Event e = event_from_timeline(t, op.survivor, t.sent_as.empty() ? std::string_view(id) : t.sent_as);
        (have.insert(t.event_id).second ? op.staged : op.shadowed).push_back(e);
      }
      for (Event e : shadows_of(id)) {  // a merged survivor's shadows come along
        e.customer_id.assign(op.survivor);
        op.shadowed.push_back(e);
      }
    }
  } else if (op.kind == IdentityOpKind::kUnmerge) {
    if (Status s = read_all_events(store_, op.survivor, events); !s) return s;
    std::vector<Event> all;
    for (const TimelineEvent& t : events) all.push_back(event_from_timeline(t, op.survivor, t.sent_as));
    const auto& shadows = shadows_of(op.survivor);
    all.insert(all.end(), shadows.begin(), shadows.end());
    std::set<std::pair<std::string, std::string>> given;  // (id given back, event id)
    for (const Event& e : all) {
      const std::string_view sent = e.sent_as.view();
      if (!sent.empty() && std::binary_search(op.ids.begin(), op.ids.end(), sent)) {
        if (given.emplace(std::string(sent), std::string(e.event_id.view())).second) {
          Event back = e;
          back.customer_id = e.sent_as;
          back.sent_as.clear();
          op.staged.push_back(back);
        }
      } else {
        (have.insert(std::string(e.event_id.view())).second ? op.staged : op.shadowed).push_back(e);
      }
    }
  }
  return Status::Ok();
}

Status IdentityService::apply_staged(const std::vector<Event>& events) {
  ApplyConfig apply;
  {
    std::lock_guard lock(mutex_);
    apply = apply_;
  }
  constexpr std::size_t kChunk = 4096;
  std::vector<EventOutcome> outcomes;
  for (std::size_t i = 0; i < events.size(); i += kChunk) {
    const std::size_t n = std::min(kChunk, events.size() - i);
    if (Status s = store_.apply_batch(std::span(events).subspan(i, n), apply, outcomes); !s) return s;
  }
  return Status::Ok();
}

Status IdentityService::complete(const IdentityState& recorded) {
  const IdentityOp& op = recorded.op;
  const auto erase = [&](const std::string& id) -> Status {
    auto erased = store_.erase_customer(id);
    return erased.ok() ? Status::Ok() : Status::Error(erased.message());
  };
  switch (op.kind) {
    case IdentityOpKind::kNone:
      break;
    case IdentityOpKind::kMerge:
      if (Status s = apply_staged(op.staged); !s) return s;
      crash_if_due("applied");
      for (const std::string& id : op.ids) {
        if (Status s = erase(id); !s) return s;
      }
      crash_if_due("erased");
      break;
    case IdentityOpKind::kUnmerge:
      if (Status s = erase(op.survivor); !s) return s;
      crash_if_due("erased");
      if (Status s = apply_staged(op.staged); !s) return s;
      crash_if_due("applied");
      break;
    case IdentityOpKind::kErase:
      if (Status s = erase(op.survivor); !s) return s;
      for (const std::string& id : op.ids) {
        if (Status s = erase(id); !s) return s;
      }
      crash_if_due("erased");
      break;
  }
  if (Status s = save_identity_state(store_, state_after(recorded)); !s) return s;
  crash_if_due("committed");
  return Status::Ok();
}

void IdentityService::execute(IdentityOpKind kind, std::string survivor, std::vector<std::string> ids,
                              const Done& done) {
  if (kind == IdentityOpKind::kErase) {  // the whole group of a survivor or an alias
    std::string found;
    for (const auto& [s, aliases] : state_.groups) {
      if (s == survivor || std::binary_search(aliases.begin(), aliases.end(), survivor)) found = s;
    }
    if (found.empty()) {
      done(failure(404, quoted(survivor) + " is in no alias group"));
      return;
    }
    survivor = found;
    ids = state_.groups.at(found);
  } else {
    IdentityAnswer checked = check(kind, survivor, ids);
    if (checked.status != 200) {
      done(std::move(checked));
      return;
    }
  }
  const auto answer_group = [&](const std::map<std::string, std::vector<std::string>>& groups) {
    IdentityAnswer a;
    a.survivor = survivor;
    if (auto it = groups.find(survivor); it != groups.end()) a.aliases = it->second;
    return a;
  };
  if (ids.empty() && kind != IdentityOpKind::kErase) {  // nothing to do (every id already merged)
    done(answer_group(state_.groups));
    return;
  }

  IdentityState recorded = state_;
  recorded.op.kind = kind;
  recorded.op.survivor = survivor;
  recorded.op.ids = ids;
  const auto after = state_after(recorded).groups;  // (the groups do not depend on the staged events)
  const auto before_map = table_.snapshot();

  // Readers wait; every writer parks after what it has queued; events routed from now on use the new groups.
  std::unique_lock read_lock(table_.read_mutex);
  auto park = std::make_shared<Park>();
  std::size_t posted = 0;
  {
    std::unique_lock route_lock(table_.route_mutex);
    table_.replace(AliasMap::from_groups(after));
    for (std::uint32_t p = 0; p < writers_.count(); ++p) {
      if (writers_.partition(p).post([park](Store&) { park->hold(); })) ++posted;
    }
  }
  park->wait_parked(posted);
  struct Release {
    Park& park;
    ~Release() { park.release(); }
  } release{*park};
  if (posted != writers_.count()) {
    table_.replace(before_map);
    done(failure(503, "not accepting: shutting down"));
    return;
  }
  crash_if_due("parked");
  Status s = stage(recorded);
  if (s) s = save_identity_state(store_, recorded);
  if (!s) {
    table_.replace(before_map);
    done(failure(503, "storage error: " + s.message()));
    return;
  }
  crash_if_due("recorded");
  s = complete(recorded);
  state_ = state_after(recorded);  // recorded: done now, or at the next start
  if (!s) {
    done(
        failure(503, "storage error: " + s.message() + " (the operation is recorded and completes at the next start)"));
    return;
  }
  IdentityAnswer answer = answer_group(after);
  if (kind == IdentityOpKind::kErase) answer.aliases = ids;  // the ids erased with the survivor
  if (kind == IdentityOpKind::kMerge) merges_->Increment();
  if (kind == IdentityOpKind::kUnmerge) unmerges_->Increment();
  if (kind != IdentityOpKind::kErase) aliases_->Observe(static_cast<double>(answer.aliases.size()));
  log_info(std::string("identity: ") + (kind == IdentityOpKind::kMerge     ? "merged"
                                        : kind == IdentityOpKind::kUnmerge ? "unmerged"
                                                                           : "erased a group of"),
           {{"ids", static_cast<std::uint64_t>(ids.size())},
            {"events", static_cast<std::uint64_t>(recorded.op.staged.size())}});
  read_lock.unlock();
  done(IdentityAnswer(answer));
}

}  // namespace rapport
