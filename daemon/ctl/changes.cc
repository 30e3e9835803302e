#include "daemon/ctl/changes.h"

#include <simdjson.h>

#include <cstdio>

#include "ingest/net/http_client.h"

namespace rapport {
namespace {

constexpr int kPageItems = 1000;
constexpr int kFollowWaitMs = 30000;

}  // namespace

int ctl_changes(const CtlTarget& target, const ChangesOptions& options) {
  if (target.url.empty()) return ctl_error("changes needs --url: the feed is served by a running rapportd");
  std::string cursor = options.after;
  simdjson::dom::parser parser;
  for (;;) {
    HttpClientRequest request;
    request.target = "/v1/changes?limit=" + std::to_string(kPageItems);
    if (options.follow) request.target += "&wait_ms=" + std::to_string(kFollowWaitMs);
    if (!cursor.empty()) request.target += "&after=" + percent_encode(cursor);
    // A long-poll may take wait_ms before the answer starts.
    auto response = ctl_http(target, std::move(request), options.follow ? 30 + kFollowWaitMs / 1000 : 30);
    if (!response.ok()) return ctl_error(response.message());
    if (response->status == 410) {
      std::string_view oldest;
      if (parser.parse(response->body)["oldest_cursor"].get_string().get(oldest) != simdjson::SUCCESS) oldest = "?";
      return ctl_error("changes: " + json_error_field(response->body) + " (--after " + std::string(oldest) + ")");
    }
    if (response->status != 200) return ctl_http_failure(*response, "changes");
    simdjson::dom::element doc;
    simdjson::dom::array items;
    std::string_view next;
    if (parser.parse(response->body).get(doc) != simdjson::SUCCESS ||
        doc["items"].get_array().get(items) != simdjson::SUCCESS ||
        doc["next_cursor"].get_string().get(next) != simdjson::SUCCESS) {
      return ctl_error("the daemon's changes answer is not {\"items\":[...],\"next_cursor\":\"...\"}");
    }
    std::size_t n = 0;
    for (simdjson::dom::element item : items) {
      const std::string line = simdjson::minify(item);
      std::printf("%s\n", line.c_str());
      ++n;
    }
    std::fflush(stdout);
    cursor = std::string(next);
    std::fprintf(stderr, "next_cursor %s\n", cursor.c_str());
    if (!options.follow && n < static_cast<std::size_t>(kPageItems)) return kExitOk;
  }
}

}  // namespace rapport
