// The body and headers of one alert delivery (docs/design.md, "Alerts").
//
// Body: {"id","alert","customer_id","event_id" (null for a tier change),"at","customer":{…}} where
// `customer` is the object of GET /v1/customers/{id} (write_customer_json without explain) at delivery time.
// Headers: Rapport-Delivery: <id>, Rapport-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
// keyed with the alert's secret (the Stripe scheme). Pure: no I/O, no clock.
// Thread safety: plain functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rapport {

struct AlertMessage {
  std::string id;  // unique per fired alert; repeats of one delivery carry the same id
  std::string alert;
  std::string customer_id;
  std::optional<std::string> event_id;  // nullopt for a tier change
  std::int64_t at_ms = 0;               // when the alert fired (the event's commit, or the fit)
  std::string customer_json;            // the customer object, already serialised ("" = null: erased)
};

// The JSON body (customer_json inserted as it is).
std::string alert_body(const AlertMessage& message);

// Lower-case hex of HMAC-SHA256(key, message).
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// The Rapport-Signature header value: "t=<unix_seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
std::string alert_signature(std::string_view secret, std::int64_t unix_seconds, std::string_view body);

}  // namespace rapport
