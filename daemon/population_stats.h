// PopulationStats: what a value-model fit needs from the customers, reduced. Per buyer the tuple
// (x, t_x, T, mean spend, 12-month profit), equal tuples grouped with a count (days are whole, so many
// repeat), plus two counts: customers, and non-buying leads. Computed for any set of customers as of
// a given as_of; stats of disjoint sets merge by adding counts, so the stats of every partition merged
// are the stats of the whole population, and fit_population_stats() over them is the model
// fit_population() fits over the whole store, bit for bit (it is the same function: the buyers are
// fitted in the tuples' order, never the store's).
//
// The stats record (docs/design.md, "Kafka group"): one partition's stats as of one as_of travel as
// one or more JSON records of at most kStatsBuyersPerRecord tuples each, so that no record outgrows a
// broker's message limit:
//   {"format":1,"as_of":<ms>,"partition":p,"partitions":P,"publication":"<id>","chunk":i,"chunks":n,
//    "customers":c,"non_buyer_leads":l,"buyers":[[x,t_x,T,mean_spend,profit_12m,count],...]}
// Numbers are written in their shortest round-trip form, so a decoded record is exactly the encoded one.
// Thread safety: plain values and pure functions.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scoring/customer_state.h"
#include "scoring/value_model.h"

namespace rapport {

// A fitted model with the population's tier counts at fit time.
struct ValueSnapshot {
  ValueModel model;
  std::array<std::uint64_t, kTierCount> tier_counts{};
};

struct BuyerTuple {
  double x = 0, t_x = 0, T = 0, mean_spend = 0;  // days, as PurchaseSummary
  float profit_12m = 0;                          // the last 12 months' profit (a lead when negative)
  // A total order on the bit patterns (NaN included): the order the fit sees the buyers in.
  friend bool operator<(const BuyerTuple& l, const BuyerTuple& r) { return l.bits() < r.bits(); }
  friend bool operator==(const BuyerTuple& l, const BuyerTuple& r) { return l.bits() == r.bits(); }
  std::array<std::uint64_t, 5> bits() const {
    return {std::bit_cast<std::uint64_t>(x), std::bit_cast<std::uint64_t>(t_x), std::bit_cast<std::uint64_t>(T),
            std::bit_cast<std::uint64_t>(mean_spend), std::bit_cast<std::uint32_t>(profit_12m)};
  }
};

struct PopulationStats {
  std::uint64_t customers = 0;        // customers first seen on or before as_of's UTC day
  std::uint64_t non_buyer_leads = 0;  // of them, without a purchase and with a negative 12-month profit
  std::map<BuyerTuple, std::uint64_t> buyers;

  // Counts one customer as of `as_of_ms` (nothing when it was first seen after as_of's UTC day).
  void add(const CustomerState& state, std::int64_t as_of_ms, const EvaluateConfig& scoring);
  // Adds another (disjoint) population's stats.
  void merge(const PopulationStats& other);
  std::uint64_t buyer_count() const;
  friend bool operator==(const PopulationStats&, const PopulationStats&) = default;
};

// The model over `stats` (BG/NBD, Gamma-Gamma, tier thresholds and counts), as of `as_of_ms`; fitted_at is
// the wall clock. NotReady (with what is missing) while the population cannot identify the model.
Result<ValueSnapshot> fit_population_stats(const PopulationStats& stats, const ValueConfig& value,
                                           std::int64_t as_of_ms);

// ---- The stats record ----
inline constexpr std::size_t kStatsBuyersPerRecord = 5'000;

struct StatsRecord {
  std::int64_t as_of_ms = 0;
  std::uint32_t partition = 0, partitions = 0;
  std::string publication;  // one id per publication of a partition: its chunks share it
  std::uint32_t chunk = 0, chunks = 1;
  PopulationStats stats;  // this chunk's buyers; customers and non_buyer_leads (the partition's) in every chunk
};

// The record key: "<as_of ms>/<partition>/<chunk>".
std::string stats_record_key(std::int64_t as_of_ms, std::uint32_t partition, std::uint32_t chunk);
// One partition's stats as records (at least one; `buyers_per_record` tuples each, the last fewer).
std::vector<std::pair<std::string, std::string>> encode_stats_records(
    std::int64_t as_of_ms, std::uint32_t partition, std::uint32_t partitions, std::string_view publication,
    const PopulationStats& stats, std::size_t buyers_per_record = kStatsBuyersPerRecord);
// A record's value; an error naming what is wrong (not JSON, a missing or invalid field, a bad tuple).
Result<StatsRecord> decode_stats_record(std::string_view value);

}  // namespace rapport
