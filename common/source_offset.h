// SourceOffset: a position in an external log (a Kafka topic partition) that a batch of events covers.
//
// Kafka mode stores "offsets outside Kafka": the writer commits each batch together with the next offset
// to read from its topic partition, in the same LMDB transaction (Store::apply_batch), so that on restart
// or reassignment the consumer seeks to exactly where the stored state ends. Plain value.
#pragma once

#include <cstdint>
#include <string>

namespace rapport {

struct SourceOffset {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t next_offset = 0;  // the offset of the first record not covered
  friend bool operator==(const SourceOffset&, const SourceOffset&) = default;
};

// The meta key under which a Store keeps a source offset: "source.offset/<topic>/<partition>".
inline std::string source_offset_key(const std::string& topic, std::int32_t partition) {
  return "source.offset/" + topic + "/" + std::to_string(partition);
}

}  // namespace rapport
