// rapportctl alerts list|replay: the alert deliveries a state dir's outboxes hold (storage/outbox.h).
// State-dir mode (LMDB is multi-process: works beside a running rapportd, whose dispatcher picks replayed
// deliveries up at its next scan).
#pragma once

#include <string>
#include <vector>

#include "daemon/ctl/common.h"

namespace rapport {

struct AlertsListOptions {
  bool pending = false;  // list undelivered deliveries instead of dead ones
};
// One JSON object per line, oldest first per partition: id, alert, customer_id, event_id, at.
int ctl_alerts_list(const CtlTarget& target, const AlertsListOptions& options);
// Moves dead deliveries back to the outbox (the given ids, "<partition>-<sequence>", or all when none),
// keeping their id. Exit 1 if an id is not in the dead area.
int ctl_alerts_replay(const CtlTarget& target, const std::vector<std::string>& ids);

}  // namespace rapport
