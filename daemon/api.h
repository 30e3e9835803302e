// Api: the HTTP query and admin API of rapportd (everything but ingest,
// which the HTTP front serves itself). Reads go straight to the
// PartitionedStore from the io thread (LMDB read transactions); writes run on
// a writer thread so they are ordered with ingest: erasure on the customer's
// partition's, dead-letter removal on partition 0's.
// Thread safety: handle() runs concurrently on io threads; set_* swap
// immutable snapshots under a mutex.
#pragma once

#include <functional>
#include <memory>
#include <mutex>

#include "daemon/cluster.h"
#include "daemon/config.h"
#include "daemon/feed.h"
#include "daemon/identity.h"
#include "daemon/metrics.h"
#include "daemon/partitioned_sink.h"
#include "daemon/value_service.h"
#include "daemon/writer.h"
#include "ingest/auth.h"
#include "ingest/net/server.h"
#include "storage/partitioned_store.h"

namespace rapport {

class Api final : public HttpHandler {
 public:
  Api(PartitionedStore& store, Writers& writer, ValueService& value, Metrics& metrics,
      std::shared_ptr<const Config> config);

  // The route and scope of a request from its method and raw target (daemon/routes.h), before its body.
  RouteAccess access(std::string_view method, std::string_view raw_target) const override;
  HttpRoute handle(HttpRequest&& request, HttpRespond respond) override {
    return http_route(dispatch(std::move(request), std::move(respond)));
  }

  void set_config(std::shared_ptr<const Config> config);
  // Kafka mode (daemon/cluster.h): a customer route for a customer another instance owns is answered
  // 307 to that owner (503 while nobody owns its partition), and GET /v1/cluster answers the map.
  // Without a cluster (the default) this instance answers for every customer and /v1/cluster is 404.
  void set_cluster(std::shared_ptr<const Cluster> cluster);
  // Identity merges (daemon/identity.h): alias resolution on reads, the :merge/:unmerge routes, group erasure.
  // Set before the server starts; without it those routes answer 503.
  void set_identity(IdentityService* identity) { identity_ = identity; }
  // Called on the customer's partition writer after an erasure committed (Kafka mode: the changes topic's
  // tombstone). Set before the server starts.
  void set_on_erased(std::function<void(std::string_view customer_id)> on_erased) { on_erased_ = std::move(on_erased); }

  // GET /v1/changes long-polls: a writer committed (they try again); the daemon stops (they answer now).
  void notify_changes() { feed_waiters_.notify(); }
  void stop_changes() { feed_waiters_.stop(); }

  static constexpr std::size_t kMaxParkedFeedRequests = 1000;

 private:
  std::shared_ptr<const Config> config() const;
  std::shared_ptr<const TokenSet> tokens() const;
  std::shared_ptr<const Cluster> cluster() const;
  // Kafka mode: answers a customer route for a customer this instance does not own; false if it owns it.
  bool redirect_to_owner(std::string_view id, const HttpRequest& request, HttpRespond& respond) const;

  Route dispatch(HttpRequest&& request, HttpRespond respond);

  Route get_customer(const HttpRequest& request, std::string_view id, HttpRespond& respond);
  Route customer_events(const HttpRequest& request, std::string_view id, HttpRespond& respond);
  Route delete_customer(std::string_view id, const HttpRequest& request, HttpRespond& respond);
  Route batch_get(const HttpRequest& request, HttpRespond& respond);
  Route dead_letters(const HttpRequest& request, HttpRespond& respond);
  Route remove_dead_letters(const HttpRequest& request, HttpRespond& respond);
  Route model(HttpRespond& respond);
  Route fit_model(const HttpRequest& request, HttpRespond& respond);
  Route backtest_model(const HttpRequest& request, HttpRespond& respond);
  Route tiers(HttpRespond& respond);
  Route list_customers(const HttpRequest& request, HttpRespond& respond);
  Route changes(const HttpRequest& request, HttpRespond& respond);  // daemon/feed_api.cc
  Route merge_customer(const HttpRequest& request, std::string_view id, bool unmerge, HttpRespond& respond);
  Route customer_aliases(std::string_view id, HttpRespond& respond);
  Route list_customers_by_id(Tier wanted, std::size_t limit, const std::string& cursor, HttpRespond& respond);

  PartitionedStore& store_;
  Writers& writer_;
  ValueService& value_;
  Metrics& metrics_;
  IdentityService* identity_ = nullptr;
  std::function<void(std::string_view)> on_erased_;  // set_on_erased
  mutable std::mutex mutex_;
  std::shared_ptr<const Config> config_;    // guarded by mutex_
  std::shared_ptr<const TokenSet> tokens_;  // guarded by mutex_
  std::shared_ptr<const Cluster> cluster_;  // guarded by mutex_

  // Last: destroyed first, answering the requests it holds while the rest still exists.
  FeedWaiters feed_waiters_{kMaxParkedFeedRequests};
};

// Helpers shared with the tests.
HttpResponse json_error(int status, std::string_view message);
// Value of `name` in a raw query string ("a=1&b=x%20y"), percent-decoded; empty if absent.
std::string query_param(std::string_view query, std::string_view name);

}  // namespace rapport
