// Dead-letter payloads: an item with an "auth" key is never stored as sent.
#include "ingest/submission.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace rapport {
namespace {

constexpr std::string_view kToken = "ADMINTOKEN0123456789abcdef";

TEST(DeadLetterPayload, ItemsWithAnAuthKeyAreRedacted) {
  const std::string t(kToken);
  const std::string hostile[] = {
      "{\"auth\":\"" + t + "\"}",
      "{\"auth\":\"" + t + "\",}",                       // malformed: trailing comma
      "{\"auth\":\"" + t + "\",\"customer_id\":\"z\"}",  // with other fields
      "\xEF\xBB\xBF{\"auth\":\"" + t + "\"}",            // BOM-prefixed
      "{\"customer_id\":\"z\",  \"auth\" \n:\"" + t + "\"}",
      "{\"AUTH\":\"" + t + "\"}",
      "{\"Authorization\":\"Bearer " + t + "\"}",
      "{\"x-auth-token\":\"" + t + "\"}",
      "{auth:\"" + t + "\"}",                               // unquoted key
      "{'auth':'" + t + "'}",                               // single quotes
      "{\"\\u0061uth\":\"" + t + "\"}",                     // escaped key spelling "auth"
      "{\"auth\":\"" + t,                                   // truncated
      "[{\"event_id\":\"e\"},{\"auth\":\"" + t + "\"}]",    // a whole body
      std::string(5000, ' ') + "{\"auth\":\"" + t + "\"}",  // the key beyond the payload cut
  };
  for (const std::string& item : hostile) {
    EXPECT_TRUE(has_auth_key(item)) << item;
    const std::string payload = dead_letter_payload(item, 4096);
    EXPECT_EQ(payload, kRedactedPayload) << item;
    EXPECT_EQ(payload.find(kToken), std::string::npos);
  }
}

TEST(DeadLetterPayload, OtherItemsAreKeptUpToTheCap) {
  const std::string kept[] = {
      R"({"event_id":"e","customer_id":"author-1","ts":1,"type":"engagement"})",  // "auth" in a value, no ':' after
      R"({"event_id":"e","channel":"oauth"})",
      R"({"event_id":"e\"x","customer_id":"c"})",  // an escape in a value, not a key
      "not json at all",
      "",
  };
  for (const std::string& item : kept) {
    EXPECT_FALSE(has_auth_key(item)) << item;
    EXPECT_EQ(dead_letter_payload(item, 4096), item);
  }
  const std::string big(10000, 'x');
  EXPECT_EQ(dead_letter_payload(big, 4096), big.substr(0, 4096));
}

}  // namespace
}  // namespace rapport
