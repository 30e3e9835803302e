#include "ingest/kafka/client.h"

#include <librdkafka/rdkafka.h>

namespace rapport::kafka {

Result<rd_kafka_t*> make_client(bool producer, const ClientOptions& client,
                                std::initializer_list<std::pair<const char*, const char*>> fixed,
                                const std::function<void(rd_kafka_conf_t*)>& customize) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const std::string& name, const std::string& value) -> Status {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      return Status::Error("kafka property \"" + name + "\" = \"" + value + "\": " + err);
    }
    return Status::Ok();
  };
  Status s = set("bootstrap.servers", client.brokers);
  for (const auto& [name, value] : client.properties) {
    if (s) s = set(name, value);
  }
  for (const auto& [name, value] : fixed) {
    if (s) s = set(name, value);
  }
  if (!s) {
    rd_kafka_conf_destroy(conf);
    return s;
  }
  if (customize) customize(conf);
  rd_kafka_t* rk = rd_kafka_new(producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {  // rd_kafka_new takes conf only on success
    rd_kafka_conf_destroy(conf);
    return Status::Error(std::string("kafka: cannot create a client: ") + err);
  }
  return rk;
}

}  // namespace rapport::kafka
