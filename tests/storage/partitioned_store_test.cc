// PartitionedStore and the partitioner: Kafka's murmur2, routing, merged listings, layout, backups.
#include "storage/partitioned_store.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "storage/partitioner.h"
#include "store_fixture.h"

namespace rapport {
namespace {

namespace fs = std::filesystem;

Event purchase(std::string_view customer, std::string_view id, std::int64_t ts_ms = 1000) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = ts_ms;
  e.type = EventType::kPurchase;
  e.amount = 10.0;
  return e;
}

// Kafka's own test values (UtilsTest.testMurmur2 and librdkafka's rdmurmur2.c unit test).
TEST(Partitioner, Murmur2MatchesKafka) {
  EXPECT_EQ(kafka_murmur2("21"), -973932308);
  EXPECT_EQ(kafka_murmur2("foobar"), -790332482);
  EXPECT_EQ(kafka_murmur2("a-little-bit-long-string"), -985981536);
  EXPECT_EQ(kafka_murmur2("a-little-bit-longer-string"), -1486304829);
  EXPECT_EQ(kafka_murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
  EXPECT_EQ(kafka_murmur2("abc"), 479470107);
  EXPECT_EQ(kafka_murmur2("kafka"), static_cast<std::int32_t>(0xd067cf64U));
  // Java Kafka's murmur2 of "1".."12345" (as cross-checked by other clients).
  EXPECT_EQ(kafka_murmur2("1"), -1993445489);
  EXPECT_EQ(kafka_murmur2("12"), 126087238);
  EXPECT_EQ(kafka_murmur2("123"), -267702483);
  EXPECT_EQ(kafka_murmur2("1234"), -1614185708);
  EXPECT_EQ(kafka_murmur2("12345"), -1188365604);
}

TEST(Partitioner, PartitionIsPositiveHashModuloP) {
  // Utils.toPositive(murmur2(key)) % P, as Kafka's default partitioner.
  const std::uint32_t foobar = static_cast<std::uint32_t>(-790332482) & 0x7fffffffU;
  for (std::uint32_t p : {1u, 2u, 3u, 4u, 7u, 64u}) EXPECT_EQ(partition_of("foobar", p), foobar % p) << p;
  EXPECT_EQ(partition_of("foobar", 4), 2u);
  EXPECT_EQ(partition_of("anything", 1), 0u);
  // Spread: 4000 customers over 4 partitions, none empty or holding more than half.
  std::vector<int> counts(4);
  for (int i = 0; i < 4000; ++i) ++counts[partition_of("c" + std::to_string(i), 4)];
  for (int c : counts) {
    EXPECT_GT(c, 500);
    EXPECT_LT(c, 2000);
  }
}

class PartitionedStoreTest : public StoreFixture, public ::testing::WithParamInterface<std::uint32_t> {
 protected:
  PartitionedStoreOptions popts(std::optional<std::uint32_t> partitions, std::string_view sub = "db") const {
    PartitionedStoreOptions o;
    static_cast<StoreOptions&>(o) = options(sub);
    o.partitions = partitions;
    return o;
  }
  static std::unique_ptr<PartitionedStore> popen(const PartitionedStoreOptions& o) {
    auto r = PartitionedStore::open(o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    return r.ok() ? std::move(r).value() : nullptr;
  }
  static std::vector<std::string> ids(const PartitionedStore& store, std::string_view after = {},
                                      std::size_t stop_after = SIZE_MAX) {
    std::vector<std::string> out;
    Status s = store.for_each_customer(
        [&](std::string_view id, const CustomerState&) {
          out.emplace_back(id);
          return out.size() < stop_after;
        },
        after);
    EXPECT_TRUE(s.ok()) << s.message();
    return out;
  }
};

TEST_P(PartitionedStoreTest, RoutesEachCustomerToItsHashPartition) {
  const std::uint32_t p = GetParam();
  auto store = popen(popts(p));
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(store->partition_count(), p);
  std::vector<Event> batch;
  for (int i = 0; i < 50; ++i) batch.push_back(purchase("cust-" + std::to_string(i), "e1"));
  std::vector<EventOutcome> outcomes;
  ASSERT_TRUE(store->apply_batch(batch, ApplyConfig{}, outcomes).ok());
  for (int i = 0; i < 50; ++i) {
    const std::string id = "cust-" + std::to_string(i);
    for (std::uint32_t k = 0; k < p; ++k) {
      auto got = store->partition(k).get_customer(id);
      ASSERT_TRUE(got.ok());
      EXPECT_EQ(got->has_value(), k == partition_of(id, p)) << id << " in partition " << k;
    }
    auto routed = store->get_customer(id);
    ASSERT_TRUE(routed.ok() && routed->has_value());
    auto events = store->customer_events(id, std::nullopt, 10);
    ASSERT_TRUE(events.ok());
    EXPECT_EQ(events->size(), 1u);
  }
  EXPECT_EQ(store->stats().customers, 50u);
  EXPECT_EQ(store->stats().events, 50u);
}

TEST_P(PartitionedStoreTest, OutcomesKeepTheBatchOrderAcrossPartitions) {
  auto store = popen(popts(GetParam()));
  ASSERT_NE(store, nullptr);
  std::vector<EventOutcome> outcomes;
  ASSERT_TRUE(
      store->apply_batch(std::vector<Event>{purchase("a", "1"), purchase("b", "1")}, ApplyConfig{}, outcomes).ok());
  const std::vector<Event> batch = {purchase("c", "1"), purchase("a", "1"), purchase("d", "1"),
                                    purchase("b", "1"), purchase("c", "1"), purchase("e", "1")};
  ASSERT_TRUE(store->apply_batch(batch, ApplyConfig{}, outcomes).ok());
  using O = EventOutcome;
  EXPECT_EQ(outcomes,
            (std::vector<O>{O::kAccepted, O::kDuplicate, O::kAccepted, O::kDuplicate, O::kDuplicate, O::kAccepted}));
}

TEST_P(PartitionedStoreTest, ListsEveryCustomerInKeyOrderAcrossPartitions) {
  auto store = popen(popts(GetParam()));
  ASSERT_NE(store, nullptr);
  std::vector<std::string> expected;
  std::vector<Event> batch;
  for (int i = 0; i < 700; ++i) {  // more than a merge page per partition
    expected.push_back("k" + std::to_string(i * 7919 % 1000));
    batch.push_back(purchase(expected.back(), "e"));
  }
  std::vector<EventOutcome> outcomes;
  ASSERT_TRUE(store->apply_batch(batch, ApplyConfig{}, outcomes).ok());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ids(*store), expected);
  // Strictly after a key (present or not), and an early stop.
  const auto from = std::upper_bound(expected.begin(), expected.end(), std::string("k5"));
  EXPECT_EQ(ids(*store, "k5"), std::vector<std::string>(from, expected.end()));
  EXPECT_EQ(ids(*store, expected[100], 3), std::vector<std::string>(expected.begin() + 101, expected.begin() + 104));
  EXPECT_TRUE(ids(*store, expected.back()).empty());
  // Unordered: the same customers.
  std::vector<std::string> any;
  ASSERT_TRUE(store
                  ->for_each_customer_unordered([&](std::string_view id, const CustomerState&) {
                    any.emplace_back(id);
                    return true;
                  })
                  .ok());
  std::sort(any.begin(), any.end());
  EXPECT_EQ(any, expected);
}

TEST_P(PartitionedStoreTest, ErasureRoutesMetaAndDeadLettersLiveInPartitionZero) {
  const std::uint32_t p = GetParam();
  auto store = popen(popts(p));
  ASSERT_NE(store, nullptr);
  std::vector<EventOutcome> outcomes;
  const std::vector<DeadLetter> letters = {DeadLetter{1, "tcp", "malformed_json", "bad", "x"}};
  ASSERT_TRUE(store
                  ->apply_batch(std::vector<Event>{purchase("x1", "1"), purchase("x2", "1"), purchase("x3", "1")},
                                ApplyConfig{}, outcomes, letters)
                  .ok());
  auto erased = store->erase_customer("x2");
  ASSERT_TRUE(erased.ok());
  EXPECT_TRUE(*erased);
  auto gone = store->partition(partition_of("x2", p)).get_customer("x2");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  ASSERT_TRUE(store->put_meta("k", "v").ok());
  auto meta = store->partition(0).get_meta("k");
  ASSERT_TRUE(meta.ok() && meta->has_value());
  EXPECT_EQ(**meta, "v");
  EXPECT_EQ(store->partition(0).stats().dead_letters, 1u);
  auto stored = store->dead_letters(0, 10);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ(stored->front().letter.message, "bad");
}

TEST_P(PartitionedStoreTest, RecordedLayoutIsUsedWhenUnsetAndAMismatchNamesMigrate) {
  const std::uint32_t p = GetParam();
  {
    auto store = popen(popts(p));
    ASSERT_NE(store, nullptr);
    std::vector<EventOutcome> outcomes;
    ASSERT_TRUE(store->apply_batch(std::vector<Event>{purchase("a", "1")}, ApplyConfig{}, outcomes).ok());
  }
  {
    auto reopened = popen(popts(std::nullopt));
    ASSERT_NE(reopened, nullptr);
    EXPECT_EQ(reopened->partition_count(), p);
    auto a = reopened->get_customer("a");
    ASSERT_TRUE(a.ok() && a->has_value());
  }
  auto other = PartitionedStore::open(popts(p == 4 ? 2 : 4));
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.message().find("rapportctl migrate --partitions " + std::to_string(p == 4 ? 2 : 4)),
            std::string::npos)
      << other.message();
  EXPECT_NE(other.message().find("has " + std::to_string(p) + " partition(s)"), std::string::npos) << other.message();
}

TEST_P(PartitionedStoreTest, BackupCoversEveryPartitionAndAPartialOneIsRefused) {
  const std::uint32_t p = GetParam();
  auto store = popen(popts(p));
  ASSERT_NE(store, nullptr);
  std::vector<Event> batch;
  for (int i = 0; i < 40; ++i) batch.push_back(purchase("b" + std::to_string(i), "e"));
  std::vector<EventOutcome> outcomes;
  ASSERT_TRUE(store->apply_batch(batch, ApplyConfig{}, outcomes).ok());
  const std::string dest = (root_ / "backup").string();
  ASSERT_TRUE(store->backup(dest).ok());
  auto manifest = read_backup_manifest(dest);
  ASSERT_TRUE(manifest.ok()) << manifest.message();
  ASSERT_TRUE(manifest->has_value());
  EXPECT_EQ((*manifest)->partitions, p);
  std::uint64_t events = 0;
  for (const BackupPartition& c : (*manifest)->copies) events += c.events;
  EXPECT_EQ(events, 40u);
  auto complete = check_backup_complete(dest);
  ASSERT_TRUE(complete.ok()) << complete.message();
  EXPECT_EQ(*complete, p);
  {
    PartitionedStoreOptions o;
    o.directory = dest;
    o.read_only = true;
    auto copy = popen(o);
    ASSERT_NE(copy, nullptr);
    EXPECT_EQ(copy->stats().events, 40u);
  }
  fs::remove(fs::path(partition_directory(dest, p - 1)) / "data.mdb");
  auto partial = check_backup_complete(dest);
  ASSERT_FALSE(partial.ok());
  EXPECT_NE(partial.message().find("incomplete backup"), std::string::npos) << partial.message();
}

// Two processes on one partitioned dir (rapportctl beside rapportd): the other process's events, in every
// partition, are read here and are duplicates for this process's next write.
TEST_P(PartitionedStoreTest, AnotherProcessWritesEveryPartition) {
  const PartitionedStoreOptions o = popts(GetParam());
  auto store = popen(o);
  ASSERT_NE(store, nullptr);
  std::vector<Event> batch;
  for (int i = 0; i < 40; ++i) batch.push_back(purchase("mp-" + std::to_string(i), "e1"));
  const pid_t child = fork();
  if (child == 0) {
    int code = 1;
    {
      PartitionedStoreOptions mine = o;
      mine.partitions.reset();  // the recorded layout
      auto other = PartitionedStore::open(mine);
      std::vector<EventOutcome> outcomes;
      if (other.ok() && (*other)->partition_count() == GetParam() &&
          (*other)->apply_batch(batch, ApplyConfig{}, outcomes).ok()) {
        code = 0;
      }
    }
    _exit(code);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  for (int i = 0; i < 40; ++i) {
    auto got = store->get_customer("mp-" + std::to_string(i));
    ASSERT_TRUE(got.ok());
    EXPECT_TRUE(got->has_value()) << i;
  }
  std::vector<EventOutcome> outcomes;
  batch.push_back(purchase("mp-new", "e1"));
  ASSERT_TRUE(store->apply_batch(batch, ApplyConfig{}, outcomes).ok());
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), EventOutcome::kDuplicate), 40);
  EXPECT_EQ(outcomes.back(), EventOutcome::kAccepted);
  EXPECT_EQ(store->stats().events, 41u);
}

INSTANTIATE_TEST_SUITE_P(Partitions, PartitionedStoreTest, ::testing::Values(1u, 2u, 4u),
                         [](const auto& param_info) { return "P" + std::to_string(param_info.param); });

class PartitionedLayoutTest : public PartitionedStoreTest {};

TEST_F(PartitionedLayoutTest, AnOldSingleEnvironmentDirOpensAsOnePartition) {
  {
    auto old = open_ok(options());  // a state dir written before partitions existed: one Store
    ASSERT_NE(old, nullptr);
    apply_ok(*old, {purchase("alice", "1"), purchase("bob", "1")});
  }
  auto store = popen(popts(std::nullopt));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->partition_count(), 1u);
  EXPECT_EQ(store->stats().customers, 2u);
  EXPECT_FALSE(fs::exists(root_ / "db" / "partitions"));
  auto mismatch = PartitionedStore::open(popts(2));
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.message().find("rapportctl migrate --partitions 2"), std::string::npos);
}

TEST_F(PartitionedLayoutTest, ANewDirWithoutASettingGetsOnePartitionPerCore) {
  auto store = popen(popts(std::nullopt));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->partition_count(), default_partitions());
}

TEST_F(PartitionedLayoutTest, AMissingPartitionIsAnErrorNotAnEmptyNewOne) {
  {
    auto store = popen(popts(4));
    ASSERT_NE(store, nullptr);
  }
  fs::remove_all(fs::path(partition_directory((root_ / "db").string(), 2)));
  auto opened = PartitionedStore::open(popts(std::nullopt));
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.message().find("has 4 partitions but"), std::string::npos) << opened.message();
  EXPECT_FALSE(fs::exists(fs::path(partition_directory((root_ / "db").string(), 2)) / "data.mdb"));
}

TEST_F(PartitionedLayoutTest, ABackupWithPartitionsButNoManifestIsIncomplete) {
  auto store = popen(popts(2));
  ASSERT_NE(store, nullptr);
  const std::string dest = (root_ / "backup").string();
  ASSERT_TRUE(store->backup(dest).ok());
  fs::remove(fs::path(dest) / kBackupManifest);
  auto partial = check_backup_complete(dest);
  ASSERT_FALSE(partial.ok());
  EXPECT_NE(partial.message().find("no " + std::string(kBackupManifest)), std::string::npos) << partial.message();
}

TEST_F(PartitionedLayoutTest, AnUnfinishedMigrationKeepsTheDirClosed) {
  { ASSERT_NE(popen(popts(2)), nullptr); }
  fs::create_directories(root_ / "db" / kMigrateDirName);
  auto refused = PartitionedStore::open(popts(std::nullopt));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("run the same rapportctl migrate again"), std::string::npos) << refused.message();
}

TEST_F(PartitionedLayoutTest, OutOfRangePartitionCountsAreRefused) {
  EXPECT_FALSE(PartitionedStore::open(popts(0)).ok());
  EXPECT_FALSE(PartitionedStore::open(popts(kMaxPartitions + 1)).ok());
}

}  // namespace
}  // namespace rapport
