// Rendering of a customer's scores as the JSON that the HTTP API and
// rapportctl return. Pure formatting; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/json_writer.h"
#include "scoring/customer_state.h"
#include "scoring/value_model.h"

namespace rapport {

// RFC 3339 UTC with milliseconds, e.g. "2024-05-01T12:00:00.000Z".
std::string format_rfc3339(std::int64_t epoch_ms);

// Writes the customer object: {"customer_id":…,"satisfaction":{…},"loyalty":{…},"value":{…},…}.
// `explain` adds the components and inputs behind every score.
// `model` is the current value model (null before the first fit: CLV fields are then null and the tier
// "unranked" unless the customer is a lead).
void write_customer_json(JsonWriter& out, std::string_view customer_id, const CustomerState& state,
                         std::int64_t now_ms, const EvaluateConfig& config, const ValueModel* model,
                         const ValueConfig& value, bool explain);

}  // namespace rapport
