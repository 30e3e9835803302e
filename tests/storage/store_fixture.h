// A test fixture for Store tests: a fresh directory per test under the build
// tree (removed afterwards), small async stores, and helpers that fail the
// test on an error status.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "storage/store.h"

namespace rapport {

class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "." + info->name();
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    root_ = std::filesystem::path(RAPPORT_BINARY_DIR) / "test-tmp" /
            (name + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  StoreOptions options(std::string_view sub = "db") const {
    StoreOptions o;
    o.directory = (root_ / sub).string();
    o.durability = Durability::kAsync;
    o.initial_map_bytes = 1 << 20;
    return o;
  }

  static std::unique_ptr<Store> open_ok(const StoreOptions& o) {
    auto r = Store::open(o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    return r.ok() ? std::move(r).value() : nullptr;
  }

  static std::vector<EventOutcome> apply_ok(Store& store, const std::vector<Event>& events,
                                            const ApplyConfig& config = ApplyConfig{},
                                            std::span<const DeadLetter> letters = {}) {
    std::vector<EventOutcome> outcomes;
    Status s = store.apply_batch(events, config, outcomes, letters);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.message());
    return outcomes;
  }

  // A customer's timeline, newest first (event ids only), skipping the first `skip` events by paging past
  // them with a keyset position (the key of the last skipped event).
  static std::vector<std::string> event_ids(const Store& store, std::string_view id, std::size_t skip = 0,
                                            std::size_t limit = 1000000) {
    std::optional<TimelineKey> after;
    if (skip > 0) {
      auto skipped = store.customer_events(id, std::nullopt, skip);
      EXPECT_TRUE(skipped.ok()) << (skipped.ok() ? "" : skipped.message());
      if (!skipped.ok() || skipped->size() < skip) return {};
      after.emplace(skipped->back().ts_ms, skipped->back().event_id);
    }
    auto r = store.customer_events(id, after, limit);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    std::vector<std::string> ids;
    if (r.ok()) {
      for (const auto& e : *r) ids.push_back(e.event_id);
    }
    return ids;
  }

  std::filesystem::path root_;
};

}  // namespace rapport
