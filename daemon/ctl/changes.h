// rapportctl changes: the change feed of a running rapportd (GET /v1/changes) as NDJSON.
#pragma once

#include <string>

#include "daemon/ctl/common.h"

namespace rapport {

struct ChangesOptions {
  std::string after;  // a next_cursor; empty = from the start
  bool follow = false;
};

// Prints each item ({"seq","customer_id","customer"} or {"seq","customer_id","deleted":true}) as one line
// of stdout, and after each answer "next_cursor <cursor>" on stderr (to resume with --after). Without
// --follow, pages until the feed is exhausted; with it, long-polls (wait_ms=30000) until interrupted.
// --url only. A 410 (cursor too old, or another partition count) names the oldest cursor.
int ctl_changes(const CtlTarget& target, const ChangesOptions& options);

}  // namespace rapport
