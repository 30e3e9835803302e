#include "daemon/value_service.h"

#include <gtest/gtest.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>

#include "daemon/backtest.h"
#include "daemon/population_stats.h"

namespace rapport {
namespace {

constexpr std::int64_t kCalibrationEndMs = 875'577'600'000;  // 1997-09-30T00:00:00Z

class ValueServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(RAPPORT_BINARY_DIR) / "test-tmp" /
           ("value-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()));
    options_.directory = dir_.string();
    options_.partitions = 1;
    auto store = PartitionedStore::open(options_);
    ASSERT_TRUE(store.ok()) << store.message();
    store_ = std::move(store.value());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // The CDNOW calibration purchases (every purchase with `all_dates`), plus `leads` customers who only cost money.
  void load_cdnow(int leads, bool all_dates = false) {
    std::ifstream in(std::string(RAPPORT_CDNOW_DIR) + "/CDNOW_sample.txt");
    ASSERT_TRUE(in) << "CDNOW data missing";
    std::vector<Event> events;
    std::string master, sample, date, cds, dollars;
    while (in >> master >> sample >> date >> cds >> dollars) {
      std::tm tm{};
      tm.tm_year = std::stoi(date.substr(0, 4)) - 1900;
      tm.tm_mon = std::stoi(date.substr(4, 2)) - 1;
      tm.tm_mday = std::stoi(date.substr(6, 2));
      const std::int64_t ts = static_cast<std::int64_t>(timegm(&tm)) * 1000;
      if (ts > kCalibrationEndMs && !all_dates) continue;
      Event& e = events.emplace_back();
      e.event_id.assign(std::to_string(events.size()));
      e.customer_id.assign("cdnow-" + sample);
      e.type = EventType::kPurchase;
      e.ts_ms = ts;
      e.amount = std::stod(dollars);
    }
    for (int i = 0; i < leads; ++i) {
      Event& e = events.emplace_back();
      e.event_id.assign("lead");
      e.customer_id.assign("lead-" + std::to_string(i));
      e.type = EventType::kSupport;
      e.ts_ms = kCalibrationEndMs - 86'400'000;
      e.cost = 25;
    }
    std::vector<EventOutcome> outcomes;
    ASSERT_TRUE(store_->apply_batch(events, ApplyConfig{}, outcomes).ok());
  }

  std::filesystem::path dir_;
  PartitionedStoreOptions options_;
  std::unique_ptr<PartitionedStore> store_;
  Metrics metrics_{"test"};
};

TEST_F(ValueServiceTest, FitPopulationReproducesCdnowInDaysAndCountsTiers) {
  load_cdnow(3);
  ValueConfig value;
  auto snap = fit_population(*store_, EvaluateConfig{}, value, kCalibrationEndMs);
  ASSERT_TRUE(snap.ok()) << snap.message();
  const ValueModel& m = snap->model;
  EXPECT_NEAR(m.bgnbd.r, 0.243, 0.003);
  EXPECT_NEAR(m.bgnbd.alpha / 7, 4.414, 0.05);
  EXPECT_NEAR(m.bgnbd.a, 0.793, 0.01);
  EXPECT_NEAR(m.bgnbd.b, 2.426, 0.03);
  EXPECT_EQ(m.customers, 2360u);
  EXPECT_EQ(m.repeat_customers, 946u);
  EXPECT_EQ(m.as_of_ms, kCalibrationEndMs);
  EXPECT_GT(m.fitted_at_ms, kCalibrationEndMs);  // the wall clock of the fit
  EXPECT_EQ(m.bgnbd_customers, 2357u);
  EXPECT_EQ(m.gamma_gamma_customers, 946u);
  EXPECT_TRUE(m.bgnbd_converged);
  EXPECT_TRUE(m.gamma_gamma_converged);
  EXPECT_EQ(m.platinum_fraction, value.platinum_fraction);
  const auto& counts = snap->tier_counts;
  EXPECT_EQ(counts[static_cast<int>(Tier::kLead)], 3u);
  EXPECT_EQ(counts[static_cast<int>(Tier::kUnranked)], 0u);
  std::uint64_t total = 0;
  for (auto c : counts) total += c;
  EXPECT_EQ(total, 2360u);
  // 5 % and 15 % of the 2357 non-lead customers (ties may add a few).
  EXPECT_NEAR(static_cast<double>(counts[static_cast<int>(Tier::kPlatinum)]), 117, 3);
  EXPECT_NEAR(static_cast<double>(counts[static_cast<int>(Tier::kGold)]), 353, 3);
  EXPECT_GT(m.platinum_min_clv, m.gold_min_clv);
  EXPECT_GT(m.gold_min_clv, 0);
}

// With the forecast period's purchases in the store too, a fit as of the end of the calibration
// period sees exactly the calibration data: later purchases and later customers are ignored.
TEST_F(ValueServiceTest, FitPopulationAsOfIgnoresLaterEvents) {
  load_cdnow(0);
  auto calibration_only = fit_population(*store_, EvaluateConfig{}, ValueConfig{}, kCalibrationEndMs);
  ASSERT_TRUE(calibration_only.ok()) << calibration_only.message();
  store_.reset();
  std::filesystem::remove_all(dir_);
  auto reopened = PartitionedStore::open(options_);
  ASSERT_TRUE(reopened.ok()) << reopened.message();
  store_ = std::move(reopened.value());
  load_cdnow(0, /*all_dates=*/true);
  Event late;  // first seen after as_of
  late.event_id.assign("late");
  late.customer_id.assign("zz-late");
  late.type = EventType::kSupport;
  late.ts_ms = kCalibrationEndMs + 40 * 86'400'000LL;
  late.cost = 5;
  std::vector<EventOutcome> outcomes;
  const std::vector<Event> batch = {late};
  ASSERT_TRUE(store_->apply_batch(batch, ApplyConfig{}, outcomes).ok());
  auto everything = fit_population(*store_, EvaluateConfig{}, ValueConfig{}, kCalibrationEndMs);
  ASSERT_TRUE(everything.ok()) << everything.message();
  const ValueModel& a = calibration_only->model;
  const ValueModel& b = everything->model;
  EXPECT_EQ(b.customers, 2357u);
  EXPECT_EQ(b.repeat_customers, a.repeat_customers);
  EXPECT_EQ(b.bgnbd.r, a.bgnbd.r);
  EXPECT_EQ(b.bgnbd.alpha, a.bgnbd.alpha);
  EXPECT_EQ(b.bgnbd.b, a.bgnbd.b);
  EXPECT_EQ(b.gamma_gamma.gamma, a.gamma_gamma.gamma);
  EXPECT_EQ(b.bgnbd_log_likelihood, a.bgnbd_log_likelihood);
  EXPECT_EQ(b.platinum_min_clv, a.platinum_min_clv);
  EXPECT_EQ(everything->tier_counts, calibration_only->tier_counts);
  // As of the end of the data, the later purchases (and the late customer) count.
  auto at_end = fit_population(*store_, EvaluateConfig{}, ValueConfig{}, kCalibrationEndMs + 273 * 86'400'000LL);
  ASSERT_TRUE(at_end.ok());
  EXPECT_EQ(at_end->model.customers, 2358u);
  EXPECT_GT(at_end->model.repeat_customers, a.repeat_customers);
}

TEST_F(ValueServiceTest, FitOnDemandIsStoredAndReloaded) {
  load_cdnow(0);
  Writers writer(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  writer.start();
  Config config = default_config();
  config.value.fit_interval = std::chrono::seconds(0);  // on demand only
  double fitted_r = 0;
  {
    ValueService service(*store_, writer, metrics_, config);
    ASSERT_TRUE(service.load().ok());
    EXPECT_EQ(service.current(), nullptr);
    service.start();
    std::promise<bool> done;
    ASSERT_TRUE(
        service.request_fit([&](const Result<std::shared_ptr<const ValueSnapshot>>& r) { done.set_value(r.ok()); }));
    ASSERT_TRUE(done.get_future().get());
    ASSERT_NE(service.current(), nullptr);
    fitted_r = service.current()->model.bgnbd.r;
    service.stop();
    EXPECT_FALSE(service.request_fit([](const auto&) {}));
  }
  writer.stop();  // the model is written through the writer thread
  ValueService reloaded(*store_, writer, metrics_, config);
  ASSERT_TRUE(reloaded.load().ok());
  ASSERT_NE(reloaded.current(), nullptr);
  EXPECT_EQ(reloaded.current()->model.customers, 2357u);
  EXPECT_GT(fitted_r, 0.0);
  EXPECT_EQ(reloaded.current()->model.bgnbd.r, fitted_r);
  EXPECT_EQ(reloaded.current()->tier_counts[static_cast<int>(Tier::kLead)], 0u);
}

TEST_F(ValueServiceTest, FitOnAnEmptyStoreIsNotReadyWithAReason) {
  auto snap = fit_population(*store_, EvaluateConfig{}, ValueConfig{}, kCalibrationEndMs);
  ASSERT_FALSE(snap.ok());
  EXPECT_TRUE(snap.status().not_ready()) << "too little data is not a failure: " << snap.message();
  EXPECT_NE(snap.message().find("no value model yet: waiting for 10 customers who bought, 2 of them with repeat "
                                "purchases (have 0 and 0)"),
            std::string::npos)
      << snap.message();
}

TEST_F(ValueServiceTest, CorruptStoredModelIsReportedNotFatal) {
  ASSERT_TRUE(store_->put_meta("value_model", "\x09garbage").ok());
  Writers writer(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  ValueService service(*store_, writer, metrics_, default_config());
  const Status s = service.load();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("stored value model ignored"), std::string::npos);
  EXPECT_EQ(service.current(), nullptr);
}

}  // namespace
}  // namespace rapport

namespace rapport {
namespace {

// rapport_customers{tier}: the tiers add up to the customer count before a fit, after it, and with customers
// that arrived since (they are unranked until the next fit).
TEST(CustomersByTierTest, TiersAddUpToTheCustomerCount) {
  const auto sum = [](const std::array<std::uint64_t, kTierCount>& a) {
    std::uint64_t n = 0;
    for (std::uint64_t v : a) n += v;
    return n;
  };
  const int unranked = static_cast<int>(Tier::kUnranked);
  const auto before = customers_by_tier(nullptr, 7);
  EXPECT_EQ(before[unranked], 7u);
  EXPECT_EQ(sum(before), 7u);

  ValueSnapshot fit;
  fit.tier_counts[static_cast<int>(Tier::kPlatinum)] = 1;
  fit.tier_counts[static_cast<int>(Tier::kGold)] = 2;
  fit.tier_counts[static_cast<int>(Tier::kIron)] = 3;
  fit.tier_counts[static_cast<int>(Tier::kLead)] = 1;
  const auto after = customers_by_tier(&fit, 7);
  EXPECT_EQ(after[unranked], 0u);
  EXPECT_EQ(after[static_cast<int>(Tier::kIron)], 3u);
  EXPECT_EQ(sum(after), 7u);

  const auto grown = customers_by_tier(&fit, 10);  // three new customers since the fit
  EXPECT_EQ(grown[unranked], 3u);
  EXPECT_EQ(sum(grown), 10u);
}

}  // namespace
}  // namespace rapport

namespace rapport {
namespace {

// Other whole-population work (the backtest) runs on the fitter thread, one job at a time, at most
// kMaxQueuedJobs in flight; jobs still waiting when the service stops are told so.
TEST_F(ValueServiceTest, JobsRunOnTheFitterThreadBoundedAndAreCancelledOnStop) {
  Writers writer(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  Config config = default_config();
  config.value.fit_interval = std::chrono::seconds(0);  // on demand only
  ValueService service(*store_, writer, metrics_, config);
  service.start();
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  std::promise<std::thread::id> first_thread;
  std::promise<bool> second_cancelled;
  ASSERT_EQ(service.request_job([&](bool cancelled) {
    first_thread.set_value(std::this_thread::get_id());
    if (!cancelled) open.wait();
  }),
            ValueService::JobQueued::kQueued);
  ASSERT_EQ(service.request_job([&](bool cancelled) { second_cancelled.set_value(cancelled); }),
            ValueService::JobQueued::kQueued);
  // Two in flight (running or waiting): a third is refused and never run.
  bool third_ran = false;
  EXPECT_EQ(service.request_job([&](bool) { third_ran = true; }), ValueService::JobQueued::kBusy);
  EXPECT_NE(first_thread.get_future().get(), std::this_thread::get_id());
  gate.set_value();
  EXPECT_FALSE(second_cancelled.get_future().get());
  // Both done: room again.
  std::promise<bool> fourth;
  for (;;) {  // the second job's slot is freed right after it returns
    const auto queued = service.request_job([&](bool cancelled) { fourth.set_value(cancelled); });
    if (queued == ValueService::JobQueued::kQueued) break;
    ASSERT_EQ(queued, ValueService::JobQueued::kBusy);
    std::this_thread::yield();
  }
  EXPECT_FALSE(fourth.get_future().get());
  service.stop();
  EXPECT_FALSE(third_ran);
  EXPECT_EQ(service.request_job([](bool) {}), ValueService::JobQueued::kStopping);

  // A job that never got to run (the service not started) is cancelled by stop().
  ValueService idle(*store_, writer, metrics_, config);
  std::promise<bool> cancelled;
  ASSERT_EQ(idle.request_job([&](bool c) { cancelled.set_value(c); }), ValueService::JobQueued::kQueued);
  idle.stop();
  EXPECT_TRUE(cancelled.get_future().get());
}

// The backtest over a store: the fit is fit_population's as of the calibration end, the population
// the customers with a purchase by then (leads without purchases are not in it), the holdout what
// the store holds after it.
TEST_F(ValueServiceTest, BacktestPopulationFitsAsOfTheCalibrationEndAndReadsTheHoldout) {
  load_cdnow(3, /*all_dates=*/true);
  const auto dates = parse_backtest_dates("1997-09-30", "1998-06-30", kCalibrationEndMs * 2, "D1", "D2");
  ASSERT_TRUE(dates.ok()) << dates.message();
  const BacktestOutcome outcome = backtest_population(*store_, EvaluateConfig{}, ValueConfig{}, *dates);
  ASSERT_TRUE(outcome.report.has_value()) << outcome.error;
  const auto fitted = fit_population(*store_, EvaluateConfig{}, ValueConfig{}, kCalibrationEndMs);
  ASSERT_TRUE(fitted.ok());
  EXPECT_EQ(outcome.report->model.bgnbd.r, fitted->model.bgnbd.r);
  EXPECT_EQ(outcome.report->model.bgnbd.alpha, fitted->model.bgnbd.alpha);
  EXPECT_EQ(outcome.report->model.gamma_gamma.p, fitted->model.gamma_gamma.p);
  EXPECT_EQ(outcome.report->model.as_of_ms, kCalibrationEndMs);
  const BacktestResult& r = outcome.report->result;
  EXPECT_EQ(r.customers, 2357u);
  EXPECT_EQ(r.holdout_days, 273);
  EXPECT_GT(r.actual_transactions, 0);
  std::uint64_t grouped = 0;
  for (const BacktestGroup& g : r.groups) grouped += g.customers;
  EXPECT_EQ(grouped, 2357u);
  EXPECT_EQ(r.groups[0].customers, 2357u - 946u);  // the fit's repeat customers are the rest
  // The tracking curve's holdout part is the holdout's transactions.
  ASSERT_EQ(r.tracking.size(), 78u);
  EXPECT_EQ(r.tracking.back().actual - r.tracking[r.calibration_weeks - 1].actual, r.actual_transactions);

  // Without the holdout's purchases (the calibration part only): an error that says why.
  TearDown();
  SetUp();
  load_cdnow(0, /*all_dates=*/false);
  const BacktestOutcome quiet = backtest_population(*store_, EvaluateConfig{}, ValueConfig{}, *dates);
  EXPECT_FALSE(quiet.report.has_value());
  EXPECT_EQ(quiet.failure, BacktestFailure::kInput);
  EXPECT_NE(quiet.error.find("no purchase in the holdout"), std::string::npos) << quiet.error;
  // An empty store: the fit is not ready.
  TearDown();
  SetUp();
  const BacktestOutcome empty = backtest_population(*store_, EvaluateConfig{}, ValueConfig{}, *dates);
  EXPECT_EQ(empty.failure, BacktestFailure::kNotReady);
  EXPECT_NE(empty.error.find("no value model yet"), std::string::npos) << empty.error;
}

TEST(BacktestDatesTest, BothDatesAHoldoutOnALaterDayAndNotInTheFuture) {
  const std::int64_t now = 1'900'000'000'000;
  const auto ok = parse_backtest_dates("1997-09-30", "1998-06-30T12:00:00Z", now, "--calibration-end", "--holdout-end");
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(ok->calibration_end_ms, kCalibrationEndMs);
  EXPECT_EQ(ok->holdout_end_ms, 899'208'000'000);
  const auto bad = parse_backtest_dates("1997-09-30", "1998-02-29", now, "--calibration-end", "--holdout-end");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("--holdout-end: '1998-02-29' is not a date"), std::string::npos) << bad.message();
  const auto same_day = parse_backtest_dates("1997-09-30T01:00:00Z", "1997-09-30T23:00:00Z", now, "a", "b");
  ASSERT_FALSE(same_day.ok());
  EXPECT_NE(same_day.message().find("b 1997-09-30 must be a later day than a 1997-09-30"), std::string::npos)
      << same_day.message();
  const auto future = parse_backtest_dates("1997-09-30", "2031-01-01", now, "a", "b");
  ASSERT_FALSE(future.ok());
  EXPECT_NE(future.message().find("is in the future"), std::string::npos) << future.message();
}

}  // namespace
}  // namespace rapport

namespace rapport {
namespace {

// The CDNOW population spread over 4 partitions: the stats of each partition, published as records,
// decoded and merged in partition order, fit exactly the model fit_population fits over the whole store
// (docs/design.md, "Kafka group": every instance fits identical input).
class PopulationStatsFitTest : public ValueServiceTest {
 protected:
  void SetUp() override {
    ValueServiceTest::SetUp();
    store_.reset();
    std::filesystem::remove_all(dir_);
    options_.partitions = 4;
    auto store = PartitionedStore::open(options_);
    ASSERT_TRUE(store.ok()) << store.message();
    store_ = std::move(store.value());
  }

  // Partition p's stats as of `as_of`, through the stats records (chunks of `per_record` tuples).
  PopulationStats partition_stats(std::uint32_t p, std::int64_t as_of, std::size_t per_record) {
    PopulationStats stats;
    EXPECT_TRUE(store_->partition(p)
                    .for_each_customer([&](std::string_view, const CustomerState& s) {
                      stats.add(s, as_of, EvaluateConfig{});
                      return true;
                    })
                    .ok());
    const auto records = encode_stats_records(as_of, p, 4, "test-1", stats, per_record);
    PopulationStats decoded;
    for (const auto& [key, value] : records) {
      auto r = decode_stats_record(value);
      EXPECT_TRUE(r.ok()) << r.message();
      if (!r.ok()) continue;
      EXPECT_EQ(key, stats_record_key(as_of, p, r->chunk));
      EXPECT_EQ(r->chunks, records.size());
      for (const auto& [tuple, count] : r->stats.buyers) decoded.buyers[tuple] += count;
      decoded.customers = r->stats.customers;
      decoded.non_buyer_leads = r->stats.non_buyer_leads;
    }
    EXPECT_EQ(decoded, stats) << "partition " << p;
    return decoded;
  }
};

void expect_same_model(const ValueSnapshot& a, const ValueSnapshot& b) {
  EXPECT_EQ(a.model.bgnbd.r, b.model.bgnbd.r);
  EXPECT_EQ(a.model.bgnbd.alpha, b.model.bgnbd.alpha);
  EXPECT_EQ(a.model.bgnbd.a, b.model.bgnbd.a);
  EXPECT_EQ(a.model.bgnbd.b, b.model.bgnbd.b);
  EXPECT_EQ(a.model.gamma_gamma.p, b.model.gamma_gamma.p);
  EXPECT_EQ(a.model.gamma_gamma.q, b.model.gamma_gamma.q);
  EXPECT_EQ(a.model.gamma_gamma.gamma, b.model.gamma_gamma.gamma);
  EXPECT_EQ(a.model.bgnbd_log_likelihood, b.model.bgnbd_log_likelihood);
  EXPECT_EQ(a.model.gamma_gamma_log_likelihood, b.model.gamma_gamma_log_likelihood);
  EXPECT_EQ(a.model.customers, b.model.customers);
  EXPECT_EQ(a.model.repeat_customers, b.model.repeat_customers);
  EXPECT_EQ(a.model.bgnbd_customers, b.model.bgnbd_customers);
  EXPECT_EQ(a.model.gamma_gamma_customers, b.model.gamma_gamma_customers);
  EXPECT_EQ(a.model.platinum_min_clv, b.model.platinum_min_clv);
  EXPECT_EQ(a.model.gold_min_clv, b.model.gold_min_clv);
  EXPECT_EQ(a.model.as_of_ms, b.model.as_of_ms);
  EXPECT_EQ(a.tier_counts, b.tier_counts);
}

TEST_F(PopulationStatsFitTest, MergedPartitionStatsFitTheWholeStoresModelExactly) {
  load_cdnow(40, /*all_dates=*/true);
  for (const std::int64_t as_of : {kCalibrationEndMs, std::int64_t{kCalibrationEndMs + 200 * 86'400'000LL}}) {
    auto whole = fit_population(*store_, EvaluateConfig{}, ValueConfig{}, as_of);
    ASSERT_TRUE(whole.ok()) << whole.message();
    PopulationStats merged, reversed;
    std::vector<PopulationStats> parts;
    for (std::uint32_t p = 0; p < 4; ++p) parts.push_back(partition_stats(p, as_of, 97));
    for (const auto& part : parts) merged.merge(part);
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) reversed.merge(*it);
    EXPECT_EQ(merged, reversed);
    EXPECT_EQ(merged.customers, whole->model.customers);
    EXPECT_LT(merged.buyers.size(), merged.buyer_count()) << "equal tuples are grouped";
    auto from_stats = fit_population_stats(merged, ValueConfig{}, as_of);
    ASSERT_TRUE(from_stats.ok()) << from_stats.message();
    expect_same_model(*whole, *from_stats);
  }
}

// Kafka mode's schedule: every instance computes the same slot start from the wall clock.
TEST(ValueServiceSlotTest, SlotStartIsTheUtcMultipleOfTheIntervalAtOrBeforeNow) {
  using std::chrono::seconds;
  EXPECT_EQ(ValueService::slot_start(1'700'000'123'456, seconds(3600)), 1'699'999'200'000);
  EXPECT_EQ(ValueService::slot_start(1'699'999'200'000, seconds(3600)), 1'699'999'200'000);
  EXPECT_EQ(ValueService::slot_start(1'699'999'199'999, seconds(3600)), 1'699'995'600'000);
  EXPECT_EQ(ValueService::slot_start(-1, seconds(60)), -60'000);
  EXPECT_EQ(ValueService::slot_start(12'345, seconds(0)), 12'345);  // no schedule: now
}

// Counting the same customers in another order (the store's partitions one by one, or all at once) gives
// equal stats, so the fit cannot depend on how an instance happened to visit its store.
TEST_F(PopulationStatsFitTest, StatsDoNotDependOnTheVisitOrder) {
  load_cdnow(5);
  std::vector<CustomerState> states;
  ASSERT_TRUE(store_
                  ->for_each_customer_unordered([&](std::string_view, const CustomerState& s) {
                    states.push_back(s);
                    return true;
                  })
                  .ok());
  PopulationStats forward, backward;
  for (const auto& s : states) forward.add(s, kCalibrationEndMs, EvaluateConfig{});
  for (auto it = states.rbegin(); it != states.rend(); ++it) backward.add(*it, kCalibrationEndMs, EvaluateConfig{});
  EXPECT_EQ(forward, backward);
  EXPECT_EQ(forward.non_buyer_leads, 5u);
}

}  // namespace
}  // namespace rapport
