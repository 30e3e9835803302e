// rapportctl merge, unmerge and aliases: identity merges of a running rapportd (--url; admin token for merge and
// unmerge). See docs/design.md, "Identity".
#pragma once

#include <string>
#include <vector>

#include "daemon/ctl/common.h"

namespace rapport {

// POST /v1/customers/{survivor}:merge {"from": ids}; prints the group as JSON.
int ctl_merge(const CtlTarget& target, const std::string& survivor, const std::vector<std::string>& ids);
// POST /v1/customers/{survivor}:unmerge {"ids": ids}; prints the group left as JSON.
int ctl_unmerge(const CtlTarget& target, const std::string& survivor, const std::vector<std::string>& ids);
// GET /v1/customers/{id}/aliases; prints {"customer_id": survivor, "aliases": [...]} (+ resolved_from for an alias).
int ctl_aliases(const CtlTarget& target, const std::string& id);

}  // namespace rapport
