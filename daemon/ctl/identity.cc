#include "daemon/ctl/identity.h"

#include <cstdio>

#include "common/json_writer.h"
#include "ingest/net/http_client.h"
#include "scoring/event.h"

namespace rapport {
namespace {

int identity_call(const CtlTarget& target, const std::string& method, const std::string& path, std::string body,
                  const std::string& what) {
  if (target.url.empty()) {
    return ctl_error(what + " needs --url: identity merges run in the daemon, which routes events by them");
  }
  HttpClientRequest request;
  request.method = method;
  request.target = path;
  request.body = std::move(body);
  auto response = ctl_http(target, std::move(request));
  if (!response.ok()) return ctl_error(response.message());
  if (response->status != 200) return ctl_http_failure(*response, what);
  std::printf("%s\n", response->body.c_str());
  return kExitOk;
}

int change(const CtlTarget& target, const std::string& survivor, const std::vector<std::string>& ids, const char* verb,
           const char* field) {
  if (survivor.empty() || survivor.size() > kMaxIdBytes) return ctl_error("customer id must be 1 to 128 bytes");
  if (ids.empty()) return ctl_error(std::string(verb) + " needs at least one id besides " + survivor);
  JsonWriter w;
  w.begin_object().key(field).begin_array();
  for (const std::string& id : ids) w.value(id);
  w.end_array().end_object();
  return identity_call(target, "POST", "/v1/customers/" + percent_encode(survivor) + ":" + verb, w.take(),
                       std::string(verb) + " " + survivor);
}

}  // namespace

int ctl_merge(const CtlTarget& target, const std::string& survivor, const std::vector<std::string>& ids) {
  return change(target, survivor, ids, "merge", "from");
}

int ctl_unmerge(const CtlTarget& target, const std::string& survivor, const std::vector<std::string>& ids) {
  return change(target, survivor, ids, "unmerge", "ids");
}

int ctl_aliases(const CtlTarget& target, const std::string& id) {
  if (id.empty() || id.size() > kMaxIdBytes) return ctl_error("customer id must be 1 to 128 bytes");
  return identity_call(target, "GET", "/v1/customers/" + percent_encode(id) + "/aliases", "", "aliases " + id);
}

}  // namespace rapport
