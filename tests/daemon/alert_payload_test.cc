// Alert delivery body and signature (daemon/alert_payload.h): the Stripe scheme, checked against
// HMAC-SHA256 values computed independently (RFC 4231 and Python's hmac module).
#include "daemon/alert_payload.h"

#include <gtest/gtest.h>
#include <simdjson.h>

namespace rapport {
namespace {

TEST(AlertPayloadTest, HmacMatchesKnownValues) {
  // The well-known example (Wikipedia, HMAC): key "key", the quick brown fox.
  EXPECT_EQ(hmac_sha256_hex("key", "The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
  // RFC 4231 test case 2.
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(AlertPayloadTest, SignatureIsTheStripeScheme) {
  // python3: hmac.new(b'whsec_test', b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
  EXPECT_EQ(alert_signature("whsec_test", 1700000000, R"({"a":1})"),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
  // Another secret, time or body gives another signature.
  const std::string base = alert_signature("whsec_test", 1700000000, R"({"a":1})");
  EXPECT_NE(alert_signature("whsec_other", 1700000000, R"({"a":1})"), base);
  EXPECT_NE(alert_signature("whsec_test", 1700000001, R"({"a":1})").substr(13), base.substr(13));
  EXPECT_NE(alert_signature("whsec_test", 1700000000, R"({"a":2})"), base);
}

TEST(AlertPayloadTest, BodyHasEveryFieldAndIsValidJson) {
  AlertMessage d;
  d.id = "p3-000000000000002a";
  d.alert = "vip \"complaints\"";
  d.customer_id = "c\n1";
  d.event_id = "e-9";
  d.at_ms = 1700000000123;
  d.customer_json = R"({"customer_id":"c\n1","satisfaction":{"score":31.5}})";
  const std::string body = alert_body(d);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(body).get(doc), simdjson::SUCCESS) << body;
  EXPECT_EQ(std::string_view(doc["id"]), "p3-000000000000002a");
  EXPECT_EQ(std::string_view(doc["alert"]), "vip \"complaints\"");
  EXPECT_EQ(std::string_view(doc["customer_id"]), "c\n1");
  EXPECT_EQ(std::string_view(doc["event_id"]), "e-9");
  EXPECT_EQ(std::string_view(doc["at"]), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(double(doc["customer"]["satisfaction"]["score"]), 31.5);

  d.event_id.reset();  // a tier change
  ASSERT_EQ(parser.parse(alert_body(d)).get(doc), simdjson::SUCCESS);
  EXPECT_TRUE(doc["event_id"].is_null());
}

}  // namespace
}  // namespace rapport
