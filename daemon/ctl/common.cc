// rapportctl: the helpers every subcommand group shares (errors, config, store, HTTP).
#include "daemon/ctl/common.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace rapport {

std::string json_error_field(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view message;
  if (parser.parse(body.data(), body.size()).get(doc) == simdjson::SUCCESS &&
      doc["error"].get_string().get(message) == simdjson::SUCCESS) {
    return std::string(message);
  }
  std::string text(body.substr(0, 200));
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

int ctl_error(const std::string& message, int code) {
  std::fprintf(stderr, "rapportctl: %s\n", message.c_str());
  return code;
}

Result<Config> ctl_config(const CtlTarget& target) {
  auto config = load_config(target.config_path);
  if (!config.ok()) return Status::Error("configuration: " + config.message());
  if (!target.state_dir.empty()) config->storage.directory = target.state_dir;
  return config;
}

Result<std::unique_ptr<PartitionedStore>> ctl_open_store(const Config& config, bool read_only) {
  PartitionedStoreOptions options = config.storage;
  options.read_only = read_only;
  return PartitionedStore::open(options);
}

Result<HttpClientResponse> ctl_http(const CtlTarget& target, HttpClientRequest request, double default_timeout_s) {
  auto endpoint = parse_http_url(target.url);
  if (!endpoint.ok()) return endpoint.status();
  const double timeout_s = target.timeout_s > 0 ? target.timeout_s : default_timeout_s;
  request.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
  request.bearer_token = target.token;
  request.ca_file = target.ca_file;
  auto response = http_request(*endpoint, request);
  // A Kafka group member answers 307 (or 308) for a customer another instance owns: the same request,
  // token included, goes to the owner (README, "Kafka mode"), at most kCtlMaxRedirects times.
  for (int hops = 0; response.ok() && (response->status == 307 || response->status == 308); ++hops) {
    const std::string from = endpoint->url;
    if (hops == kCtlMaxRedirects) {
      return Status::Error("more than " + std::to_string(kCtlMaxRedirects) + " redirects, the last from " + from +
                           " to '" + response->location + "'");
    }
    auto next = parse_redirect(response->location);
    if (!next.ok())
      return Status::Error(from + " answered HTTP " + std::to_string(response->status) + ": " + next.message());
    endpoint = std::move(next->first);
    request.target = std::move(next->second);
    response = http_request(*endpoint, request);
  }
  return response;
}

int ctl_http_failure(const HttpClientResponse& response, const std::string& what) {
  std::string message = what + ": HTTP " + std::to_string(response.status) + ": " + json_error_field(response.body);
  if (response.status == 401) message += " (pass --token or set RAPPORT_TOKEN)";
  if (response.status == 403) message += " (this needs a token with the admin scope)";
  return ctl_error(message, response.status == 404 ? kExitPartial : kExitFatal);
}

}  // namespace rapport
