// Kafka mode with two instances in one group (issue 15, §5): every member knows who owns which partition
// (the members topic), answers 307 to the owner for a customer it does not own (token checked first),
// shows the map at GET /v1/cluster, and erasure reaches the owner from any instance (rapportctl follows the
// 307). Like kafka_test.cc, each scenario ends checking every customer of the stream exactly.
// Waits are for conditions with generous deadlines (a loaded 2-core machine); nothing asserts timing.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "storage/partitioner.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/kafka_harness.h"
#include "tests/support/json_schema.h"
#include "tests/support/kafka_mock.h"
#include "tests/support/webhook_receiver.h"

namespace rapport::test {
namespace {

constexpr int kPartitions = 2;
constexpr const char* kReadToken = "cluster-read-token-0123456789";
constexpr const char* kAdminToken = "cluster-admin-token-0123456789";

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token; }

Client::Response get(int port, const std::string& target, const std::string& token = kReadToken) {
  return http(port, "GET", target, "", "application/json", {bearer(token)});
}

// GET /v1/cluster, parsed.
struct ClusterView {
  std::string instance;
  struct Partition {
    std::optional<std::string> owner, http_address;
    std::optional<std::int64_t> lag;
  };
  std::map<int, Partition> partitions;
  std::map<std::string, std::string> members;  // instance -> http_address
  std::map<std::string, std::vector<int>> member_partitions;
};

std::optional<ClusterView> cluster_view(int port) {
  const auto r = get(port, "/v1/cluster");
  if (r.status != 200) return std::nullopt;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) return std::nullopt;
  ClusterView v;
  v.instance = std::string(doc["instance"].get_string().value());
  for (auto p : doc["partitions"].get_array()) {
    ClusterView::Partition part;
    if (!p["owner"].is_null()) part.owner = std::string(p["owner"].get_string().value());
    if (!p["http_address"].is_null()) part.http_address = std::string(p["http_address"].get_string().value());
    if (!p["lag"].is_null()) part.lag = p["lag"].get_int64().value();
    v.partitions[static_cast<int>(p["partition"].get_int64().value())] = part;
  }
  for (auto m : doc["members"].get_array()) {
    const std::string name(m["instance"].get_string().value());
    v.members[name] = std::string(m["http_address"].get_string().value());
    for (auto p : m["partitions"].get_array()) v.member_partitions[name].push_back(static_cast<int>(p.get_int64()));
  }
  return v;
}

// True once every instance's map names exactly `instances` as members, each owning a partition, every
// partition has one owner on which all maps agree, and every owner reports lag 0 for its partitions.
bool group_settled(const std::vector<Daemon*>& daemons, const std::set<std::string>& instances) {
  std::optional<ClusterView> first;
  for (Daemon* d : daemons) {
    auto v = cluster_view(d->http_port());
    if (!v || static_cast<int>(v->partitions.size()) != kPartitions) return false;
    std::set<std::string> members, owners;
    for (const auto& [name, address] : v->members) members.insert(name);
    if (members != instances) return false;
    for (const auto& [p, part] : v->partitions) {
      if (!part.owner) return false;
      owners.insert(*part.owner);
      if (*part.owner == v->instance && part.lag != std::optional<std::int64_t>(0)) return false;
      if (first && first->partitions[p].owner != part.owner) return false;
    }
    if (owners != instances) return false;
    if (!first) first = v;
  }
  return true;
}

// How `r` (an answer of `method` `route`) disagrees with docs/openapi.json (strict: tests/support/json_schema.h).
std::vector<std::string> undocumented(const std::string& route, const std::string& method, int status,
                                      const std::string& body) {
  static const std::string text = read_file(std::string(RAPPORT_SOURCE_DIR) + "/docs/openapi.json");
  simdjson::dom::parser doc_parser, body_parser;
  simdjson::dom::element document, response, schema, instance;
  if (doc_parser.parse(text).get(document) != simdjson::SUCCESS) return {"docs/openapi.json is not JSON"};
  const JsonSchemaChecker checker(document);
  if (document["paths"][route][method]["responses"][std::to_string(status)].get(response) != simdjson::SUCCESS) {
    return {"the document gives no " + std::to_string(status) + " for " + method + " " + route};
  }
  std::string_view ref;
  if (response["$ref"].get_string().get(ref) == simdjson::SUCCESS && checker.resolve(ref).get(response)) {
    return {"unresolved " + std::string(ref)};
  }
  if (status == 307 && response["headers"]["Location"].error()) return {"the 307 declares no Location header"};
  if (response["content"]["application/json"]["schema"].get(schema) != simdjson::SUCCESS) return {"no JSON schema"};
  if (body_parser.parse(body).get(instance) != simdjson::SUCCESS) return {"the body is not JSON: " + body};
  return checker.validate(instance, schema);
}

// The port of a Location "http://127.0.0.1:PORT/...".
int port_of(const std::string& location) {
  const auto colon = location.find(':', location.find("//") + 2);
  return colon == std::string::npos ? -1 : std::stoi(location.substr(colon + 1));
}

// Every customer of the stream asked at `port`: 200 there, or a 307 whose Location answers 200; revenue and
// event count exactly the stream's. Customers in `erased` answer 404 (at the owner).
void expect_exact_via(int port, const Stream& stream, const std::set<std::string>& erased = {}) {
  expect_exact_answers(
      [&](const std::string& id) {
        auto r = get(port, "/v1/customers/" + id);
        if (r.status == 307) r = get(port_of(r.headers["location"]), "/v1/customers/" + id);
        return r;
      },
      stream, erased, " (asked at port " + std::to_string(port) + ")");
}

// The input and changes topics (kafka_harness.h), and the members topic.
std::vector<std::string> group_topics() {
  auto topics = kafka_topics(kPartitions);
  topics.push_back(std::string(kTopic) + ".members:1");
  return topics;
}

class KafkaOwners : public ::testing::Test {
 protected:
  // rapportd's config for one member `instance` of the group on `mock`, with a read and an admin token
  // (`tokens`) or none.
  std::string config(const KafkaMock& mock, const std::string& instance, bool tokens = true) {
    const std::string path = dir_.file("rapport-" + instance + (tokens ? "" : "-open") + ".toml");
    std::string text = "[storage]\npartitions = " + std::to_string(kPartitions) + "\n[kafka]\nbrokers = \"" +
                       mock.bootstrap() + "\"\ntopic = \"" + kTopic + "\"\ngroup_id = \"rapport-test\"\ninstance = \"" +
                       instance +
                       "\"\n[kafka.properties]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n";
    if (tokens) {
      text += std::string("[[auth.tokens]]\ntoken = \"") + kReadToken + "\"\nscopes = [\"read\"]\n" +
              "[[auth.tokens]]\ntoken = \"" + kAdminToken + "\"\nscopes = [\"admin\"]\n";
    }
    write_file(path, text);
    return path;
  }
  std::string state(const std::string& instance) { return dir_.file("state-" + instance); }
  TempDir dir_;
};

TEST_F(KafkaOwners, TwoInstancesRedirectToTheOwnerShowTheMapAndEraseFromEither) {
  KafkaMock mock(mock_program(), group_topics());
  Daemon a(state("a"), {"--config", config(mock, "a")});
  Daemon b(state("b"), {"--config", config(mock, "b")});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(60);
  stream.produce(producer, 600);
  ASSERT_TRUE(eventually([&] {
    return group_settled({&a, &b}, {"a", "b"});
  })) << "a: "
      << get(a.http_port(), "/v1/cluster").body << "\nb: " << get(b.http_port(), "/v1/cluster").body << "\n"
      << a.log() << b.log();

  // The map: both members with their addresses, every partition's owner, lag for the own partitions only.
  const auto va = *cluster_view(a.http_port());
  const auto vb = *cluster_view(b.http_port());
  EXPECT_EQ(va.instance, "a");
  EXPECT_EQ(vb.instance, "b");
  const std::string address_a = "http://127.0.0.1:" + std::to_string(a.http_port());
  const std::string address_b = "http://127.0.0.1:" + std::to_string(b.http_port());
  for (const auto* v : {&va, &vb}) {
    EXPECT_EQ(v->members.at("a"), address_a);
    EXPECT_EQ(v->members.at("b"), address_b);
    for (const auto& [p, part] : v->partitions) {
      EXPECT_EQ(*part.http_address, *part.owner == "a" ? address_a : address_b) << "partition " << p;
      if (*part.owner == v->instance) {
        EXPECT_EQ(part.lag, std::optional<std::int64_t>(0)) << v->instance << " partition " << p;
      } else {
        EXPECT_FALSE(part.lag.has_value()) << v->instance << " partition " << p;
      }
    }
    const auto& pa = v->member_partitions.at("a");
    const auto& pb = v->member_partitions.at("b");
    EXPECT_EQ(pa.size() + pb.size(), static_cast<std::size_t>(kPartitions));
  }

  const auto cluster_answer = get(a.http_port(), "/v1/cluster");
  EXPECT_EQ(undocumented("/v1/cluster", "get", 200, cluster_answer.body), std::vector<std::string>{})
      << cluster_answer.body;

  // A customer of a partition b owns, asked at a: 307 to b with the same path and query.
  std::string customer;
  for (const auto& [id, e] : stream.expected()) {
    if (va.partitions.at(static_cast<int>(partition_of(id, kPartitions))).owner == "b") {
      customer = id;
      break;
    }
  }
  ASSERT_FALSE(customer.empty());
  const auto redirect = get(a.http_port(), "/v1/customers/" + customer);
  ASSERT_EQ(redirect.status, 307) << redirect.body;
  EXPECT_EQ(redirect.headers.at("location"), address_b + "/v1/customers/" + customer);
  EXPECT_EQ(undocumented("/v1/customers/{id}", "get", 307, redirect.body), std::vector<std::string>{}) << redirect.body;
  const auto at_owner = get(port_of(redirect.headers.at("location")), "/v1/customers/" + customer);
  ASSERT_EQ(at_owner.status, 200) << at_owner.body;
  EXPECT_EQ(json_number(at_owner.body, "revenue"), stream.expected().at(customer).revenue);
  EXPECT_EQ(json_number(at_owner.body, "events"), stream.expected().at(customer).events);
  const auto events = get(a.http_port(), "/v1/customers/" + customer + "/events?limit=5");
  ASSERT_EQ(events.status, 307) << events.body;
  EXPECT_EQ(events.headers.at("location"), address_b + "/v1/customers/" + customer + "/events?limit=5");
  EXPECT_EQ(undocumented("/v1/customers/{id}/events", "get", 307, events.body), std::vector<std::string>{});
  const auto delete_redirect =
      http(a.http_port(), "DELETE", "/v1/customers/" + customer, "", "application/json", {bearer(kAdminToken)});
  ASSERT_EQ(delete_redirect.status, 307) << delete_redirect.body;  // 307 keeps the method
  EXPECT_EQ(delete_redirect.headers.at("location"), address_b + "/v1/customers/" + customer);
  EXPECT_EQ(undocumented("/v1/customers/{id}", "delete", 307, delete_redirect.body), std::vector<std::string>{});
  EXPECT_EQ(get(b.http_port(), "/v1/customers/" + customer).status, 200);  // a redirect erases nothing

  // The token is checked before any redirect: without one (or with a wrong one) 401, never a Location.
  const auto anonymous = http(a.http_port(), "GET", "/v1/customers/" + customer);
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  EXPECT_EQ(anonymous.headers.count("location"), 0u);
  const auto wrong = get(a.http_port(), "/v1/customers/" + customer, "not-a-token-0123456789");
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  EXPECT_EQ(wrong.headers.count("location"), 0u);
  // Erasure needs the admin scope, checked at a before it redirects: 403 with the read token.
  const auto forbidden =
      http(a.http_port(), "DELETE", "/v1/customers/" + customer, "", "application/json", {bearer(kReadToken)});
  EXPECT_EQ(forbidden.status, 403) << forbidden.body;
  EXPECT_EQ(forbidden.headers.count("location"), 0u);
  EXPECT_EQ(http(a.http_port(), "GET", "/v1/cluster").status, 401);

  // Erasure from the instance that does not own the customer: rapportctl follows the 307 to b.
  const auto erased =
      run_command({binary("rapportctl"), "erase", customer, "--url", address_a, "--token", kAdminToken});
  ASSERT_EQ(erased.exit_code, 0) << erased.err;
  EXPECT_NE(erased.out.find("erased customer " + customer), std::string::npos) << erased.out;
  EXPECT_EQ(get(b.http_port(), "/v1/customers/" + customer).status, 404);

  // Every customer, asked at either instance, is exactly the stream's (the erased one gone).
  expect_exact_via(a.http_port(), stream, {customer});
  expect_exact_via(b.http_port(), stream, {customer});

  // a leaves: its tombstone removes it from b's map, and b takes over every partition.
  ASSERT_EQ(a.stop(), 0);
  ASSERT_TRUE(eventually([&] { return group_settled({&b}, {"b"}); })) << get(b.http_port(), "/v1/cluster").body;
  EXPECT_EQ(cluster_view(b.http_port())->members.size(), 1u);
  expect_exact_via(b.http_port(), stream, {customer});
}

// A single instance owns every partition: it answers for every customer itself and shows itself as the
// only member.
TEST_F(KafkaOwners, OneInstanceOwnsEveryPartitionAndAnswersItself) {
  KafkaMock mock(mock_program(), group_topics());
  Daemon a(state("solo"), {"--config", config(mock, "solo")});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(30);
  stream.produce(producer, 300);
  ASSERT_TRUE(eventually([&] { return group_settled({&a}, {"solo"}); })) << a.log();
  const auto v = *cluster_view(a.http_port());
  EXPECT_EQ(v.members.at("solo"), "http://127.0.0.1:" + std::to_string(a.http_port()));
  EXPECT_EQ(v.member_partitions.at("solo"), (std::vector<int>{0, 1}));
  int redirected = 0;
  for (const auto& [id, e] : stream.expected()) redirected += get(a.http_port(), "/v1/customers/" + id).status == 307;
  EXPECT_EQ(redirected, 0);
  expect_exact_via(a.http_port(), stream);
  EXPECT_EQ(metric(a.http_port(), "rapport_kafka_members"), 1);
  EXPECT_EQ(metric(a.http_port(), "rapport_kafka_unowned_partitions"), 0);
  EXPECT_GE(metric(a.http_port(), "rapport_kafka_member_records_total{outcome=\"published\"}"), 1);
}

// Two instances configured with one name each ignore the other's record as their own: at least one of them
// reports it (log and rapport_kafka_member_records_total{outcome="conflict"}); the state is still exact.
TEST_F(KafkaOwners, TwoInstancesOfOneNameAreReported) {
  KafkaMock mock(mock_program(), group_topics());
  const std::string cfg = config(mock, "same", /*tokens=*/false);
  Daemon a(state("a"), {"--config", cfg});
  Daemon b(state("b"), {"--config", cfg});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(30);
  stream.produce(producer, 300);
  const std::string warning = "another member of the group publishes under this instance's name \"same\"";
  ASSERT_TRUE(eventually([&] {
    return a.log().find(warning) != std::string::npos || b.log().find(warning) != std::string::npos;
  })) << a.log()
      << b.log();
  Daemon& reporter = a.log().find(warning) != std::string::npos ? a : b;
  EXPECT_GE(metric(reporter.http_port(), "rapport_kafka_member_records_total{outcome=\"conflict\"}"), 1);
  ASSERT_TRUE(eventually([&] { return group_caught_up({&a, &b}, kPartitions); })) << a.log() << b.log();
  expect_exact({&a, &b}, kPartitions, stream);
}

// rapportctl follows a redirect with the same method and token, but only to an http(s) URL, a few hops.
TEST(KafkaClusterCtl, FollowsRedirectsOnlyToHttpUrlsAndAtMostThreeHops) {
  WebhookReceiver receiver;
  receiver.answer(307, "ftp://127.0.0.1:21/v1/customers/alice");
  const std::string url = "http://127.0.0.1:" + std::to_string(receiver.port());
  const auto ftp = run_command({binary("rapportctl"), "erase", "alice", "--url", url, "--token", kAdminToken});
  EXPECT_EQ(ftp.exit_code, 2);
  EXPECT_NE(ftp.err.find("cannot follow the redirect"), std::string::npos) << ftp.err;
  EXPECT_EQ(receiver.requests().size(), 1u);

  receiver.answer(307, url + "/v1/customers/alice");  // to itself, for ever
  const auto loop = run_command({binary("rapportctl"), "erase", "alice", "--url", url, "--token", kAdminToken});
  EXPECT_EQ(loop.exit_code, 2);
  EXPECT_NE(loop.err.find("more than 3 redirects"), std::string::npos) << loop.err;
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 5u);  // the ftp one, then the first request and three redirects followed
  for (std::size_t i = 1; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].method, "DELETE");
    EXPECT_EQ(requests[i].target, "/v1/customers/alice");
    EXPECT_EQ(requests[i].headers.at("authorization"), std::string("Bearer ") + kAdminToken);
  }
}

// Bad [kafka] membership settings: rapportd refuses to start, naming the key.
TEST(KafkaClusterConfig, RapportdRefusesBadMembershipSettings) {
  TempDir dir;
  const std::string base = "[kafka]\nbrokers = \"127.0.0.1:9\"\ntopic = \"events\"\ngroup_id = \"g\"\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"advertised_url = \"http://h:1/base\"\n", "must be http[s]://HOST:PORT without a path"},
      {"advertised_url = \"gopher://h:1\"\n", "'kafka.advertised_url': URL must look like"},
      {"instance = \"two words\"\n", "'kafka.instance' \"two words\""},
      {"members_topic = \"events\"\n", "must not be the input topic"},
      {"members_topic = \"a/b\"\n", "is not a Kafka topic name"},
  };
  int n = 0;
  for (const auto& [extra, message] : cases) {
    const std::string path = dir.file("bad-" + std::to_string(n++) + ".toml");
    write_file(path, base + extra);
    const auto r = run_command({binary("rapportd"), "--config", path, "--check-config"});
    EXPECT_EQ(r.exit_code, 2) << extra;
    EXPECT_NE(r.err.find(message), std::string::npos) << extra << r.err;
  }
}

}  // namespace
}  // namespace rapport::test
