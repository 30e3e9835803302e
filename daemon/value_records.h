// Value records: how the fitted value model and the tier counts are kept in
// the store's `meta` database (shared by rapportd's ValueService and
// rapportctl), the JSON rendering of a model that both print, and the as-of
// dates both accept.
// Pure functions; no I/O. Thread safety: plain values.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/json_writer.h"
#include "common/status.h"
#include "scoring/value_model.h"

namespace rapport {

// Meta keys: the serialized ValueModel (scoring/value_model.h) and the tier counts at fit time.
inline constexpr std::string_view kValueModelMetaKey = "value_model";
inline constexpr std::string_view kValueTierCountsMetaKey = "value_tier_counts";

using TierCounts = std::array<std::uint64_t, kTierCount>;

// Version byte 1 then kTierCount native-endian uint64 counts, in Tier order.
std::string encode_tier_counts(const TierCounts& counts);
// Returns false (leaving `counts` unchanged) for anything but that encoding.
bool decode_tier_counts(std::string_view bytes, TierCounts& counts);

// {"platinum_min_clv":…,"gold_min_clv":…} under the key "thresholds"; infinite thresholds (an empty tier) as null.
void write_tier_thresholds(JsonWriter& w, const ValueModel& model);

// The model object of GET /v1/model (and POST /v1/model:fit, rapportctl fit):
//   {"as_of", "bgnbd": {"r", "alpha", "a", "b", "time_unit": "day", "log_likelihood", "customers",
//    "iterations", "converged"}, "gamma_gamma": {"p", "q", "gamma", "log_likelihood", "customers",
//    "iterations", "converged"}, "tiers": {"platinum_min_clv", "gold_min_clv", "platinum_fraction",
//    "gold_fraction"}, "fitted_at", "fit_seconds", "customers", "repeat_customers"}
// Fields a version-1 record does not hold (customers per model, iterations, convergence, fractions) are null.
void write_value_model_json(JsonWriter& w, const ValueModel& model);

// The as-of time of a fit or ranking: "2024-05-01" (midnight UTC) or RFC 3339
// ("2024-05-01T12:00:00Z", offsets, fractions) -> epoch ms; an error naming both forms otherwise.
Result<std::int64_t> parse_as_of(std::string_view text);

}  // namespace rapport
