// Kafka mode's map of owners (daemon/cluster.h) and what the HTTP API does with it: 307 to the owner for
// a customer another instance owns (reads and erasure), 503 while nobody owns it, GET /v1/cluster.
#include "daemon/cluster.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <future>
#include <random>

#include "daemon/api.h"
#include "daemon/routes.h"
#include "storage/partitioner.h"
#include "tests/support/json_schema.h"

namespace rapport {
namespace {

// --- the member record and the map -----------------------------------------------------------------

TEST(Cluster, MemberRecordRoundTripsAndBadOnesSayWhy) {
  const Member m{"node-a", "http://10.0.0.5:8080", {0, 3}};
  Result<Member> back = decode_member("node-a", encode_member(m));
  ASSERT_TRUE(back) << back.message();
  EXPECT_EQ(*back, m);
  const std::pair<std::string, std::string> bad[] = {
      {"x", "nope"},
      {"x", R"({"format":2,"instance":"x","http_address":"http://h:1","partitions":[]})"},
      {"y", R"({"format":1,"instance":"x","http_address":"http://h:1","partitions":[]})"},
      {"x", R"({"format":1,"instance":"x","partitions":[]})"},
      {"x", R"({"format":1,"instance":"x","http_address":"h:1","partitions":[]})"},
      {"x", R"({"format":1,"instance":"x","http_address":"http://h:1","partitions":[-1]})"},
      {"x", R"({"format":1,"instance":"x","http_address":"http://h:1"})"},
  };
  for (const auto& [key, value] : bad) {
    Result<Member> r = decode_member(key, value);
    ASSERT_FALSE(r) << value;
    EXPECT_NE(r.message().find("member record \"" + key + "\""), std::string::npos) << r.message();
  }
}

TEST(Cluster, OwnAssignmentWinsAndTheLaterRecordWinsADisputedPartition) {
  Cluster cluster(Member{"a", "http://a:1", {}}, 4);
  EXPECT_EQ(cluster.owner_of_partition(0).kind, Owner::Kind::kUnknown);
  const Member published = cluster.set_own({2, 0, 2});
  EXPECT_EQ(published.partitions, (std::vector<std::uint32_t>{0, 2}));
  cluster.update(Member{"b", "http://b:1", {1, 2, 3}});    // b's record is stale about 2
  cluster.update(Member{"a", "http://elsewhere:1", {1}});  // our own record read back: ignored
  EXPECT_EQ(cluster.owner_of_partition(0).kind, Owner::Kind::kSelf);
  EXPECT_EQ(cluster.owner_of_partition(2).kind, Owner::Kind::kSelf);
  Owner one = cluster.owner_of_partition(1);
  EXPECT_EQ(one.kind, Owner::Kind::kOther);
  EXPECT_EQ(one.instance, "b");
  EXPECT_EQ(one.http_address, "http://b:1");
  cluster.update(Member{"c", "http://c:1", {3}});  // c took 3 after b's record
  EXPECT_EQ(cluster.owner_of_partition(3).instance, "c");
  cluster.update(Member{"b", "http://b:1", {1, 3}});  // b took it back later
  EXPECT_EQ(cluster.owner_of_partition(3).instance, "b");
  cluster.remove("b");
  EXPECT_EQ(cluster.owner_of_partition(3).instance, "c");
  EXPECT_EQ(cluster.owner_of_partition(1).kind, Owner::Kind::kUnknown);
  // By customer: the Kafka default partitioner.
  EXPECT_EQ(cluster.owner_of("zed").kind, cluster.owner_of_partition(partition_of("zed", 4)).kind);
}

// The metrics' view: members known (itself included) and partitions nobody claims.
TEST(Cluster, CountsMembersAndUnownedPartitions) {
  Cluster cluster(Member{"a", "http://a:1", {}}, 4);
  EXPECT_EQ(cluster.member_count(), 1u);
  EXPECT_EQ(cluster.unowned_partitions(), 4u);
  cluster.set_own({0});
  cluster.update(Member{"b", "http://b:1", {1, 2}});
  EXPECT_EQ(cluster.member_count(), 2u);
  EXPECT_EQ(cluster.unowned_partitions(), 1u);
  cluster.update(Member{"a", "http://a:1", {3}});  // its own record read back: not another member
  EXPECT_EQ(cluster.member_count(), 2u);
  EXPECT_EQ(cluster.unowned_partitions(), 1u);
  cluster.remove("b");
  EXPECT_EQ(cluster.member_count(), 1u);
  EXPECT_EQ(cluster.unowned_partitions(), 3u);
}

// --- the HTTP API ----------------------------------------------------------------------------------

class ApiClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(RAPPORT_BINARY_DIR) / "test-tmp" /
           ("api-cluster-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()));
    PartitionedStoreOptions options;
    options.directory = dir_.string();
    options.partitions = 2;
    auto store = PartitionedStore::open(options);
    ASSERT_TRUE(store.ok()) << store.message();
    store_ = std::move(store.value());
    writer_ = std::make_unique<Writers>(*store_, metrics_, WriterOptions{}, ApplyConfig{});
    writer_->start();
    config_ = default_config();
    config_.value.fit_interval = std::chrono::seconds(0);
    service_ = std::make_unique<ValueService>(*store_, *writer_, metrics_, config_);
    ASSERT_TRUE(service_->load().ok());
    service_->start();
    api_ = std::make_unique<Api>(*store_, *writer_, *service_, metrics_, std::make_shared<const Config>(config_));
    // One customer in each partition, both stored here.
    for (int i = 0; mine_.empty() || theirs_.empty(); ++i) {
      const std::string id = "cust/" + std::to_string(i);
      (partition_of(id, 2) == 0 ? mine_ : theirs_) = id;
    }
    std::vector<Event> events(2);
    for (int i = 0; i < 2; ++i) {
      events[i].customer_id.assign(i == 0 ? mine_ : theirs_);
      events[i].event_id.assign("e1");
      events[i].ts_ms = 1'700'000'000'000;
      events[i].amount = 10.0;
    }
    std::vector<EventOutcome> outcomes;
    ASSERT_TRUE(store_->apply_batch(events, ApplyConfig{}, outcomes).ok());
  }
  void TearDown() override {
    api_.reset();
    service_.reset();
    writer_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  HttpResponse call(const std::string& method, const std::string& path, const std::string& query = "",
                    const std::string& token = "") {
    HttpRequest request;
    request.method = method;
    request.path = path;
    request.query = query;
    request.bearer_token = token;
    std::promise<HttpResponse> promise;
    auto answer = promise.get_future();
    api_->handle(std::move(request), [&promise](HttpResponse&& r) { promise.set_value(std::move(r)); });
    return answer.get();
  }
  static std::string header(const HttpResponse& r, std::string_view name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return {};
  }
  std::shared_ptr<Cluster> join() {
    auto cluster = std::make_shared<Cluster>(Member{"a", "http://127.0.0.1:8080", {}}, 2);
    cluster->set_own({0});
    cluster->update(Member{"b", "http://10.0.0.2:9090", {1}});
    cluster->set_lag(0, 7);
    api_->set_cluster(cluster);
    return cluster;
  }

  // The answer's violations of docs/openapi.json's schema for (route, method, its status).
  static std::vector<std::string> violations(const std::string& route, const std::string& method,
                                             const HttpResponse& r) {
    static const simdjson::padded_string text =
        simdjson::padded_string::load(std::string(RAPPORT_SOURCE_DIR) + "/docs/openapi.json").value();
    static simdjson::dom::parser doc_parser;
    static const simdjson::dom::element doc = doc_parser.parse(text).value();
    const test::JsonSchemaChecker checker(doc);
    simdjson::dom::element response, schema, body;
    if (doc["paths"][route][method]["responses"][std::to_string(r.status)].get(response) != simdjson::SUCCESS) {
      return {"the document gives no " + std::to_string(r.status) + " for " + method + " " + route};
    }
    std::string_view ref;
    if (response["$ref"].get_string().get(ref) == simdjson::SUCCESS && checker.resolve(ref).get(response)) {
      return {"bad $ref " + std::string(ref)};
    }
    if (response["content"]["application/json"]["schema"].get(schema) != simdjson::SUCCESS) return {"no schema"};
    simdjson::dom::parser parser;
    if (parser.parse(r.body).get(body) != simdjson::SUCCESS) return {"not JSON: " + r.body};
    return checker.validate(body, schema);
  }

  std::filesystem::path dir_;
  Metrics metrics_{"test"};
  std::unique_ptr<PartitionedStore> store_;
  std::unique_ptr<Writers> writer_;
  Config config_;
  std::unique_ptr<ValueService> service_;
  std::unique_ptr<Api> api_;
  std::string mine_, theirs_;
};

TEST_F(ApiClusterTest, WithoutAClusterEveryCustomerIsAnsweredHere) {
  EXPECT_EQ(call("GET", customer_target(theirs_)).status, 200);
  const HttpResponse cluster = call("GET", "/v1/cluster");
  EXPECT_EQ(cluster.status, 404);
  EXPECT_EQ(violations("/v1/cluster", "get", cluster), std::vector<std::string>{});
}

TEST_F(ApiClusterTest, ANonOwnerRedirectsReadsAndErasureToTheOwner) {
  join();
  EXPECT_EQ(call("GET", customer_target(mine_)).status, 200);
  const HttpResponse get = call("GET", customer_target(theirs_), "explain=true");
  EXPECT_EQ(get.status, 307) << get.body;
  EXPECT_EQ(header(get, "Location"), "http://10.0.0.2:9090" + customer_target(theirs_) + "?explain=true");
  EXPECT_NE(get.body.find("owned by instance b"), std::string::npos) << get.body;
  EXPECT_EQ(violations("/v1/customers/{id}", "get", get), std::vector<std::string>{});
  const HttpResponse events = call("GET", customer_target(theirs_, true), "limit=5");
  EXPECT_EQ(events.status, 307);
  EXPECT_EQ(header(events, "Location"), "http://10.0.0.2:9090" + customer_target(theirs_, true) + "?limit=5");
  const HttpResponse erase = call("DELETE", customer_target(theirs_));
  EXPECT_EQ(erase.status, 307);
  EXPECT_EQ(violations("/v1/customers/{id}", "delete", erase), std::vector<std::string>{});
  EXPECT_EQ(violations("/v1/customers/{id}/events", "get", events), std::vector<std::string>{});
  EXPECT_EQ(header(erase, "Location"), "http://10.0.0.2:9090" + customer_target(theirs_));
  auto still = store_->get_customer(theirs_);  // not erased here: the owner erases
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(still->has_value());
  // An unknown customer of the other partition redirects too (the owner answers 404).
  std::string unknown;
  for (int i = 0; unknown.empty(); ++i) {
    if (partition_of("nobody" + std::to_string(i), 2) == 1) unknown = "nobody" + std::to_string(i);
  }
  EXPECT_EQ(call("GET", customer_target(unknown)).status, 307);
}

TEST_F(ApiClusterTest, NobodyOwningThePartitionIsAnsweredWithRetry) {
  auto cluster = join();
  cluster->remove("b");
  const HttpResponse r = call("GET", customer_target(theirs_));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(header(r, "Retry-After"), "1");
  EXPECT_NE(r.body.find("rebalancing"), std::string::npos) << r.body;
  EXPECT_EQ(violations("/v1/customers/{id}", "get", r), std::vector<std::string>{});
}

TEST_F(ApiClusterTest, ATokenIsCheckedBeforeRedirecting) {
  config_.tokens.push_back(TokenGrant{"0123456789abcdef0123", static_cast<std::uint8_t>(Scope::kRead)});
  api_->set_config(std::make_shared<const Config>(config_));
  join();
  EXPECT_EQ(call("GET", customer_target(theirs_)).status, 401);  // no 307 (no owner's address) without a token
  EXPECT_EQ(call("GET", customer_target(theirs_), "", "0123456789abcdef0123").status, 307);
  EXPECT_EQ(call("DELETE", customer_target(theirs_), "", "0123456789abcdef0123").status, 403);
  EXPECT_EQ(call("GET", "/v1/cluster").status, 401);
}

TEST_F(ApiClusterTest, ClusterShowsOwnerAndLagPerPartition) {
  join();
  const HttpResponse r = call("GET", "/v1/cluster");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"instance":"a","partitions":[)"
                    R"({"partition":0,"owner":"a","http_address":"http://127.0.0.1:8080","lag":7},)"
                    R"({"partition":1,"owner":"b","http_address":"http://10.0.0.2:9090","lag":null}],)"
                    R"("members":[{"instance":"a","http_address":"http://127.0.0.1:8080","partitions":[0]},)"
                    R"({"instance":"b","http_address":"http://10.0.0.2:9090","partitions":[1]}]})");
  EXPECT_EQ(violations("/v1/cluster", "get", r), std::vector<std::string>{});
  EXPECT_EQ(call("POST", "/v1/cluster").status, 405);
}

}  // namespace
}  // namespace rapport
