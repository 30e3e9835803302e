// Shared by the changes topic's producer and reader (ingest/kafka): how to reach the cluster, and a
// librdkafka configuration built from it. Hides librdkafka's handles behind the classes that use it.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace rapport::kafka {

struct ClientOptions {
  std::string brokers;  // bootstrap.servers
  // Other librdkafka properties, passed through as given (the [kafka] table's extras).
  std::vector<std::pair<std::string, std::string>> properties;
};

}  // namespace rapport::kafka
