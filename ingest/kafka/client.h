// Shared by the changes topic's producer and reader, the members topic and the stats topic (ingest/kafka):
// how to reach the cluster, and a librdkafka client built from it. Hides librdkafka's handles behind the
// classes that use it (the declarations below are for ingest/kafka's own sources).
#pragma once

#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

// librdkafka's handle types (declared as in rdkafka.h), so that this header does not include it.
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;

namespace rapport::kafka {

struct ClientOptions {
  std::string brokers;  // bootstrap.servers
  // Other librdkafka properties, passed through as given (the [kafka] table's extras).
  std::vector<std::pair<std::string, std::string>> properties;
};

// A producer (`producer` true) or a consumer: bootstrap.servers, then the pass-through properties, then
// `fixed` (the settings the caller relies on, so they win); `customize` may set callbacks on the
// configuration before the client is made. The message names a property librdkafka refuses.
Result<rd_kafka_t*> make_client(bool producer, const ClientOptions& client,
                                std::initializer_list<std::pair<const char*, const char*>> fixed,
                                const std::function<void(rd_kafka_conf_t*)>& customize = {});

}  // namespace rapport::kafka
