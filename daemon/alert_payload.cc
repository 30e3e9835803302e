#include "daemon/alert_payload.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/json_writer.h"
#include "daemon/customer_json.h"

namespace rapport {

std::string alert_body(const AlertMessage& d) {
  JsonWriter out;
  out.begin_object().field("id", d.id).field("alert", d.alert).field("customer_id", d.customer_id).key("event_id");
  if (d.event_id) {
    out.value(*d.event_id);
  } else {
    out.null();
  }
  out.field("at", format_rfc3339(d.at_ms)).key("customer").raw(d.customer_json.empty() ? "null" : d.customer_json);
  out.end_object();
  return out.take();
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  // An empty key is valid HMAC input; OpenSSL wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const void* key_data = key.empty() ? static_cast<const void*>(&kEmpty) : static_cast<const void*>(key.data());
  HMAC(EVP_sha256(), key_data, static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac, &mac_len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * mac_len);
  for (unsigned int i = 0; i < mac_len; ++i) {
    hex.push_back(kHex[mac[i] >> 4]);
    hex.push_back(kHex[mac[i] & 0xf]);
  }
  return hex;
}

std::string alert_signature(std::string_view secret, std::int64_t unix_seconds, std::string_view body) {
  const std::string t = std::to_string(unix_seconds);
  std::string signed_payload = t;
  signed_payload.push_back('.');
  signed_payload.append(body);
  std::string header = "t=";
  header += t;
  header += ",v1=";
  header += hmac_sha256_hex(secret, signed_payload);
  return header;
}

}  // namespace rapport
