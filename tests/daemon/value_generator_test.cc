// `rapportctl generate --model bgnbd` (daemon/value_generator.h): customers who
// follow the value model. The parameter-recovery test runs 20 000 generated
// customers through the real decoder and store, fits as of the end of the
// simulation (fit_population, as rapportd does) and checks every parameter
// against the truth within 3 standard errors of the fit.
#include "daemon/value_generator.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "daemon/value_service.h"
#include "ingest/decoder.h"
#include "storage/store.h"

namespace rapport {
namespace {

constexpr std::int64_t kEndMs = 1'767'268'800'000;  // 2026-01-01T12:00:00Z

std::string generate_all(const GenerateOptions& common, const ValueModelOptions& model) {
  ValueModelGenerator generator(common, model);
  std::string out;
  while (generator.next_customer(out)) {
  }
  return out;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
  }
  return lines;
}

class ValueGeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(RAPPORT_BINARY_DIR) / "test-tmp" /
           ("valuegen-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()));
    StoreOptions options;
    options.directory = dir_.string();
    options.durability = Durability::kAsync;
    auto store = Store::open(options);
    ASSERT_TRUE(store.ok()) << store.message();
    store_ = std::move(store.value());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Decodes every line with the daemon's decoder and stores the events; returns the rejections.
  std::size_t ingest(const std::string& ndjson) {
    Decoder decoder;
    std::vector<Event> batch(50'000);
    std::vector<EventOutcome> outcomes;
    std::size_t filled = 0, rejected = 0;
    auto flush = [&] {
      EXPECT_TRUE(store_->apply_batch(std::span<const Event>(batch.data(), filled), ApplyConfig{}, outcomes).ok());
      filled = 0;
    };
    for (std::string_view line : lines_of(ndjson)) {
      RejectReason reason{};
      std::string_view message;
      if (decoder.decode_line(line, kEndMs, batch[filled], reason, message)) {
        if (++filled == batch.size()) flush();
      } else {
        ADD_FAILURE() << "rejected: " << message << ": " << line;
        ++rejected;
      }
    }
    flush();
    return rejected;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

// 20 000 customers from known parameters (the CDNOW estimates in days, first purchases over
// two years), through the decoder and the store, fitted as of the end of the simulation: each
// of the seven parameters is within 3 standard errors (observed information of the fit, delta
// method) of the truth, and those standard errors are small enough for that to mean something.
TEST_F(ValueGeneratorTest, FitOnGeneratedCustomersRecoversTheParameters) {
  GenerateOptions common;
  common.customers = 20'000;
  common.seed = 19;
  common.end_ms = kEndMs;
  common.span_days = 730;
  ValueModelOptions model;
  model.model = "bgnbd";
  ASSERT_EQ(ingest(generate_all(common, model)), 0u);

  auto snap = fit_population(*store_, EvaluateConfig{}, ValueConfig{}, kEndMs);
  ASSERT_TRUE(snap.ok()) << snap.message();
  const ValueModel& m = snap->model;
  EXPECT_EQ(m.customers, 20'000u);
  EXPECT_TRUE(m.bgnbd_converged);
  EXPECT_TRUE(m.gamma_gamma_converged);

  // The standard errors at the estimate, over the same customers the fit saw.
  std::vector<PurchaseSummary> buyers;
  ASSERT_TRUE(store_
                  ->for_each_customer([&](std::string_view, const CustomerState& state) {
                    const PurchaseHistory h = purchase_history_as_of(state, kEndMs);
                    if (h.transactions > 0) buyers.push_back({h.x, h.t_x_days, h.T_days, h.mean_repeat_spend});
                    return true;
                  })
                  .ok());
  ASSERT_EQ(buyers.size(), 20'000u);
  const auto bg_se = bgnbd_standard_errors(m.bgnbd, buyers);
  const auto gg_se = gamma_gamma_standard_errors(m.gamma_gamma, buyers);
  ASSERT_TRUE(bg_se.ok()) << bg_se.message();
  ASSERT_TRUE(gg_se.ok()) << gg_se.message();

  const BgNbdParams& bt = model.bgnbd;
  const GammaGammaParams& gt = model.spend;
  struct Check {
    const char* name;
    double truth, estimate, se, max_relative_se;
  };
  const Check checks[] = {
      {"r", bt.r, m.bgnbd.r, bg_se->se.r, 0.05},
      {"alpha", bt.alpha, m.bgnbd.alpha, bg_se->se.alpha, 0.08},
      {"a", bt.a, m.bgnbd.a, bg_se->se.a, 0.15},
      {"b", bt.b, m.bgnbd.b, bg_se->se.b, 0.25},
      {"p", gt.p, m.gamma_gamma.p, gg_se->se.p, 0.1},
      {"q", gt.q, m.gamma_gamma.q, gg_se->se.q, 0.1},
      {"gamma", gt.gamma, m.gamma_gamma.gamma, gg_se->se.gamma, 0.15},
  };
  for (const Check& c : checks) {
    std::printf("%-5s truth %8.4f  estimate %8.4f  se %7.4f  (%+.2f se)\n", c.name, c.truth, c.estimate, c.se,
                (c.estimate - c.truth) / c.se);
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(std::isfinite(c.se) && c.se > 0);
    EXPECT_LT(c.se / c.truth, c.max_relative_se) << "se " << c.se;
    EXPECT_LT(std::abs(c.estimate - c.truth), 3 * c.se)
        << "estimate " << c.estimate << ", truth " << c.truth << ", se " << c.se;
  }
}

// The same seed gives the same bytes; another seed other customers. Every line is a valid
// event at or before end_ms, each customer's events in time order, at most one purchase per
// customer and day, and the interactions carry the documented types and fields.
TEST_F(ValueGeneratorTest, DeterministicValidAndInterleaved) {
  GenerateOptions common;
  common.customers = 300;
  common.seed = 7;
  common.end_ms = kEndMs;
  ValueModelOptions model;
  model.model = "bgnbd";
  const std::string a = generate_all(common, model);
  EXPECT_EQ(a, generate_all(common, model));
  common.seed = 8;
  EXPECT_NE(a, generate_all(common, model));

  Decoder decoder;
  std::map<std::string, int> types;
  std::map<std::string, std::int64_t> last_ts;
  std::set<std::pair<std::string, std::int64_t>> purchase_days;
  for (std::string_view line : lines_of(a)) {
    Event e;
    RejectReason reason{};
    std::string_view message;
    ASSERT_TRUE(decoder.decode_line(line, kEndMs, e, reason, message)) << message << ": " << line;
    EXPECT_LE(e.ts_ms, kEndMs);
    EXPECT_GE(e.ts_ms, kEndMs - 730 * 86'400'000ll);
    const std::string customer(e.customer_id.view());
    EXPECT_GE(e.ts_ms, last_ts[customer]) << line;
    last_ts[customer] = e.ts_ms;
    ++types[std::string(event_type_name(e.type))];
    if (e.type == EventType::kPurchase) {
      EXPECT_TRUE(e.amount && *e.amount > 0) << line;
      // One purchase per customer and UTC day: rapportd counts purchase days.
      EXPECT_TRUE(purchase_days.insert({customer, e.ts_ms / 86'400'000}).second)
          << "second purchase that day: " << line;
    }
    if (e.type == EventType::kSupport || e.type == EventType::kSocial || e.type == EventType::kComplaint) {
      EXPECT_TRUE(e.sentiment) << line;
    }
    if (e.type == EventType::kSurvey) {
      EXPECT_TRUE(e.nps || e.csat) << line;
    }
    if (e.type == EventType::kReview) {
      EXPECT_TRUE(e.rating) << line;
    }
    EXPECT_NE(e.type, EventType::kRenewal);
  }
  EXPECT_EQ(last_ts.size(), 300u);  // every customer bought at least once
  for (const char* type : {"purchase", "engagement", "support", "social", "survey", "complaint", "review"}) {
    EXPECT_GT(types[type], 0) << type;
  }

  // Purchases only: the same purchase process, nothing else.
  model.interactions = 0;
  common.seed = 7;
  int purchases = 0, others = 0;
  const std::string purchases_only = generate_all(common, model);  // outlives the lines viewing it
  for (std::string_view line : lines_of(purchases_only)) {
    (line.find("\"type\":\"purchase\"") != std::string_view::npos ? purchases : others)++;
  }
  EXPECT_EQ(purchases, types["purchase"]);
  EXPECT_EQ(others, 0);
}

// Satisfaction and loyalty vary across customers, and customers likely to have dropped out
// (low P(alive) at the fit) are less satisfied on average.
TEST_F(ValueGeneratorTest, SatisfactionVariesAndFollowsTheDropoutRisk) {
  GenerateOptions common;
  common.customers = 3000;
  common.seed = 3;
  common.end_ms = kEndMs;
  ValueModelOptions model;
  model.model = "bgnbd";
  ASSERT_EQ(ingest(generate_all(common, model)), 0u);
  auto snap = fit_population(*store_, EvaluateConfig{}, ValueConfig{}, kEndMs);
  ASSERT_TRUE(snap.ok()) << snap.message();
  std::vector<double> satisfaction, loyalty;
  double sat_alive = 0, n_alive = 0, sat_gone = 0, n_gone = 0;
  ASSERT_TRUE(store_
                  ->for_each_customer([&](std::string_view, const CustomerState& state) {
                    const Scores s = evaluate(state, kEndMs, EvaluateConfig{});
                    satisfaction.push_back(s.satisfaction);
                    loyalty.push_back(s.loyalty);
                    const PurchaseSummary ps = purchase_summary(s);
                    if (ps.x < 2) return true;
                    const double p_alive = probability_alive(snap->model.bgnbd, ps);
                    if (p_alive > 0.8) {
                      sat_alive += s.satisfaction;
                      ++n_alive;
                    } else if (p_alive < 0.3) {
                      sat_gone += s.satisfaction;
                      ++n_gone;
                    }
                    return true;
                  })
                  .ok());
  auto quantile = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
  };
  EXPECT_LT(quantile(satisfaction, 0.1), 40);
  EXPECT_GT(quantile(satisfaction, 0.9), 60);
  EXPECT_GT(quantile(loyalty, 0.9) - quantile(loyalty, 0.1), 20);
  ASSERT_GT(n_alive, 50);
  ASSERT_GT(n_gone, 50);
  EXPECT_GT(sat_alive / n_alive, sat_gone / n_gone + 3) << sat_alive / n_alive << " vs " << sat_gone / n_gone;
}

TEST(ValueGeneratorOptions, RejectsFlagsOfTheOtherModelAndBadParameters) {
  GenerateOptions common;
  ValueModelOptions model;
  EXPECT_TRUE(check_generate_options(common, model).ok());
  model.model = "bgnbd";
  EXPECT_TRUE(check_generate_options(common, model).ok());
  model.mix_only_flags = {"--events"};
  const Status events = check_generate_options(common, model);
  ASSERT_FALSE(events.ok());
  EXPECT_NE(events.message().find("--events is for --model mix only"), std::string::npos) << events.message();
  model.mix_only_flags.clear();
  model.bgnbd.b = 0;
  EXPECT_FALSE(check_generate_options(common, model).ok());
  model.bgnbd = kCdnowBgNbdDays;
  common.span_days = 0;
  EXPECT_FALSE(check_generate_options(common, model).ok());
  common.span_days = 730;
  model.model = "mix";
  model.bgnbd_only_flags = {"--r"};
  EXPECT_FALSE(check_generate_options(common, model).ok());
  model.bgnbd_only_flags.clear();
  model.model = "pareto";
  EXPECT_FALSE(check_generate_options(common, model).ok());

  // generate_command reports the error on stderr, exit 2, and writes no events.
  model.model = "bgnbd";
  model.mix_only_flags = {"--zipf"};
  char* out_buf = nullptr;
  char* err_buf = nullptr;
  std::size_t out_len = 0, err_len = 0;
  std::FILE* out = open_memstream(&out_buf, &out_len);
  std::FILE* err = open_memstream(&err_buf, &err_len);
  EXPECT_EQ(generate_command(common, model, out, err), 2);
  std::fclose(out);
  std::fclose(err);
  EXPECT_EQ(out_len, 0u);
  EXPECT_NE(std::string(err_buf, err_len).find("--zipf"), std::string::npos);
  std::free(out_buf);
  std::free(err_buf);
}

}  // namespace
}  // namespace rapport
