// GET /v1/changes: the change feed over HTTP (docs/design.md, "Change feed").
#include <charconv>
#include <chrono>
#include <memory>

#include "daemon/api.h"
#include "daemon/customer_json.h"

namespace rapport {
namespace {

constexpr std::size_t kMaxFeedLimit = 1000;
constexpr std::size_t kMaxFeedWaitMs = 30000;

// A non-negative integer query parameter within [min, max]; `fallback` when absent; nullopt when malformed.
std::optional<std::size_t> bounded_param(std::string_view query, std::string_view name, std::size_t fallback,
                                         std::size_t min, std::size_t max) {
  const std::string v = query_param(query, name);
  if (v.empty()) return fallback;
  std::size_t out = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < min || out > max) return std::nullopt;
  return out;
}

HttpResponse gone(std::string_view message, std::uint32_t partitions) {
  JsonWriter w;
  const std::vector<std::uint64_t> start(partitions, 0);
  w.begin_object().field("error", message).field("oldest_cursor", encode_feed_cursor(start)).end_object();
  HttpResponse r;
  r.status = 410;
  r.body = w.take();
  return r;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Route Api::changes(const HttpRequest& request, HttpRespond& respond) {
  const std::uint32_t partitions = store_.partition_count();
  const auto limit = bounded_param(request.query, "limit", 100, 1, kMaxFeedLimit);
  const auto wait_ms = bounded_param(request.query, "wait_ms", 0, 0, kMaxFeedWaitMs);
  FeedCursor cursor = decode_feed_cursor(query_param(request.query, "after"), partitions);
  if (!limit || !wait_ms || cursor.malformed) {
    respond(json_error(400,
                       "'limit' must be an integer 1..1000, 'wait_ms' an integer 0..30000 (milliseconds) and "
                       "'after' a next_cursor of this route, passed unchanged"));
    return Route::kChanges;
  }
  if (cursor.positions.size() != partitions) {
    respond(gone("the cursor was made for " + std::to_string(cursor.positions.size()) +
                     " partitions; the state dir now has " + std::to_string(partitions) +
                     ": follow the feed again from oldest_cursor, replacing your copy",
                 partitions));
    return Route::kChanges;
  }
  auto shared = std::make_shared<HttpRespond>(std::move(respond));
  // Answers and returns true, or returns false when nothing is new and it may wait.
  auto attempt = [this, shared, positions = std::move(cursor.positions), n = *limit](bool final) -> bool {
    auto page = store_.changes(positions, n);
    if (!page.ok()) {
      (*shared)(json_error(503, "storage error: " + page.message()));
      return true;
    }
    for (std::size_t p = 0; p < positions.size(); ++p) {
      if (positions[p] > 0 && positions[p] < page->floors[p]) {
        (*shared)(
            gone("the cursor is older than the retained window (erasures after it were compacted): follow "
                 "the feed again from oldest_cursor, replacing your copy",
                 static_cast<std::uint32_t>(positions.size())));
        return true;
      }
    }
    if (page->items.empty() && !final) return false;
    std::vector<std::uint64_t> next = positions;
    const auto cfg = config();
    const auto snap = value_.current();
    const std::int64_t now = wall_ms();
    JsonWriter w;
    w.begin_object().key("items").begin_array();
    for (const auto& item : page->items) {
      next[item.partition] = item.change.seq;
      w.begin_object().field("seq", item.change.seq).field("customer_id", item.change.customer_id);
      if (item.change.state) {
        w.key("customer");
        write_customer_json(w, item.change.customer_id, *item.change.state, now, cfg->evaluate,
                            snap ? &snap->model : nullptr, cfg->value, false);
      } else {
        w.field("deleted", true);
      }
      w.end_object();
    }
    w.end_array().field("next_cursor", encode_feed_cursor(next)).end_object();
    HttpResponse r;
    r.body = w.take();
    (*shared)(std::move(r));
    return true;
  };
  if (attempt(*wait_ms == 0)) return Route::kChanges;
  // Parked from here until answered: the gauge counts it down before the answer leaves, so a client that
  // got its answer never sees itself still counted.
  metrics_.feed_parked().Increment();
  *shared = [this, answer = std::move(*shared)](HttpResponse response) {
    metrics_.feed_parked().Decrement();
    answer(std::move(response));
  };
  auto& parked = attempt;
  switch (feed_waiters_.park(std::chrono::steady_clock::now() + std::chrono::milliseconds(*wait_ms), parked)) {
    case FeedWaiters::Park::kParked:
      break;
    case FeedWaiters::Park::kFull: {
      HttpResponse r =
          json_error(503, "too many long-polls of /v1/changes are waiting (at most " +
                              std::to_string(kMaxParkedFeedRequests) + "); retry later, or with a smaller wait_ms");
      r.headers.emplace_back("Retry-After", "1");
      (*shared)(std::move(r));
      break;
    }
    case FeedWaiters::Park::kStopped:
      parked(true);  // shutting down: the answer as it is now
      break;
  }
  return Route::kChanges;
}

}  // namespace rapport
