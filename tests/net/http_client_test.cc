// rapportctl's HTTP client: URL parsing (http and https) and the checks made
// before any connection. The exchanges themselves, over TLS, are tested in
// tls_test.cc against the real fronts.
#include "ingest/net/http_client.h"

#include <gtest/gtest.h>

namespace rapport {
namespace {

TEST(HttpClient, ParsesHttpAndHttpsUrlsWithTheirDefaultPorts) {
  auto plain = parse_http_url("http://127.0.0.1:8470");
  ASSERT_TRUE(plain.ok()) << plain.message();
  EXPECT_FALSE(plain->tls);
  EXPECT_EQ(plain->host, "127.0.0.1");
  EXPECT_EQ(plain->port, "8470");
  EXPECT_EQ(plain->base_path, "");

  auto secure = parse_http_url("https://rapport.example:9443/base/");
  ASSERT_TRUE(secure.ok()) << secure.message();
  EXPECT_TRUE(secure->tls);
  EXPECT_EQ(secure->host, "rapport.example");
  EXPECT_EQ(secure->port, "9443");
  EXPECT_EQ(secure->base_path, "/base");

  auto defaults = parse_http_url("https://rapport.example");
  ASSERT_TRUE(defaults.ok()) << defaults.message();
  EXPECT_EQ(defaults->port, "443");
  auto v6 = parse_http_url("https://[::1]:8470");
  ASSERT_TRUE(v6.ok()) << v6.message();
  EXPECT_TRUE(v6->tls);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(parse_http_url("http://rapport.example")->port, "80");
}

TEST(HttpClient, RefusesOtherSchemesAndBadUrls) {
  for (const char* url : {"ftp://example", "https://", "http://", "HTTPS//x", "example:8470"}) {
    auto r = parse_http_url(url);
    ASSERT_FALSE(r.ok()) << url;
    EXPECT_NE(r.message().find("http://HOST:PORT or https://HOST:PORT"), std::string::npos) << r.message();
  }
  EXPECT_FALSE(parse_http_url("https://host:99999").ok());
  EXPECT_FALSE(parse_http_url("https://user:pw@host:1").ok());
}

// rapportctl follows a Kafka group member's 307 to the customer's owner: the Location is split into the
// owner's endpoint and the same path and query.
TEST(HttpClient, ParsesARedirectLocationIntoEndpointAndTarget) {
  auto r = parse_redirect("http://10.0.0.5:8470/v1/customers/alice%2Fb?fields=x");
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->first.host, "10.0.0.5");
  EXPECT_EQ(r->first.port, "8470");
  EXPECT_FALSE(r->first.tls);
  EXPECT_EQ(r->first.base_path, "");
  EXPECT_EQ(r->second, "/v1/customers/alice%2Fb?fields=x");
  auto secure = parse_redirect("https://[::1]:9443/v1/customers/bob");
  ASSERT_TRUE(secure.ok()) << secure.message();
  EXPECT_TRUE(secure->first.tls);
  EXPECT_EQ(secure->first.host, "::1");
  EXPECT_EQ(secure->second, "/v1/customers/bob");
}

TEST(HttpClient, RefusesARedirectThatIsNotAnAbsoluteHttpUrl) {
  for (const char* location : {"", "/v1/customers/a", "ftp://host:21/v1/customers/a", "file:///etc/passwd",
                               "http://host:8470", "http://user:pw@host:1/v1/customers/a", "http://host:99999/x"}) {
    auto r = parse_redirect(location);
    EXPECT_FALSE(r.ok()) << location;
  }
  auto relative = parse_redirect("/v1/customers/a");
  ASSERT_FALSE(relative.ok());
  EXPECT_NE(relative.message().find("absolute http:// or https:// Location"), std::string::npos) << relative.message();
  auto ftp = parse_redirect("ftp://host:21/x");
  ASSERT_FALSE(ftp.ok());
  EXPECT_NE(ftp.message().find("cannot follow the redirect"), std::string::npos) << ftp.message();
}

TEST(HttpClient, ACaFileIsOnlyForHttps) {
  auto endpoint = parse_http_url("http://127.0.0.1:1");
  ASSERT_TRUE(endpoint.ok());
  HttpClientRequest request;
  request.ca_file = "/etc/ssl/certs/ca-certificates.crt";
  auto r = http_request(*endpoint, request);  // refused before connecting (nothing listens on port 1 anyway)
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("applies to https:// URLs only"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace rapport
