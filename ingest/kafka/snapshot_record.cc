#include "ingest/kafka/snapshot_record.h"

#include <simdjson.h>

#include "common/hex.h"
#include "common/json_writer.h"

namespace rapport::kafka {
namespace {

constexpr std::int64_t kFormat = 1;

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

bool from_hex(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0) return false;
  out.clear();
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

Status check_format(simdjson::ondemand::object& object) {
  std::int64_t format = 0;
  if (object["format"].get_int64().get(format) != simdjson::SUCCESS) return Status::Error("no integer \"format\"");
  if (format != kFormat) {
    return Status::Error("format " + std::to_string(format) + " is not " + std::to_string(kFormat) +
                         " (written by a newer rapportd?)");
  }
  return Status::Ok();
}

}  // namespace

std::string encode_snapshot(std::string_view customer_id, const CustomerState& state, std::uint64_t input_offset) {
  JsonWriter out;
  out.begin_object();
  out.key("format").value(kFormat);
  out.key("customer_id").value(customer_id);
  out.key("version").value(input_offset);
  out.key("input_offset").value(input_offset);
  out.key("event_count").value(static_cast<std::uint64_t>(state.event_count));
  out.key("state").value(to_hex(serialize(state)));
  out.end_object();
  return out.take();
}

std::string encode_position(std::uint64_t input_offset) {
  JsonWriter out;
  out.begin_object();
  out.key("format").value(kFormat);
  out.key("input_offset").value(input_offset);
  out.end_object();
  return out.take();
}

Result<Snapshot> decode_snapshot(std::string_view key, std::string_view value) {
  const auto fail = [&](const std::string& why) {
    return Status::Error("changes record of customer \"" + std::string(key) + "\": " + why);
  };
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(value);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS || doc.get_object().get(object) != simdjson::SUCCESS) {
    return fail("not a JSON object");
  }
  if (Status s = check_format(object); !s) return fail(s.message());
  Snapshot snapshot;
  std::string_view id, hex;
  if (object["customer_id"].get_string().get(id) != simdjson::SUCCESS) return fail("no string \"customer_id\"");
  if (id != key) return fail("its customer_id \"" + std::string(id) + "\" is not its key");
  snapshot.customer_id = std::string(id);
  if (object["version"].get_uint64().get(snapshot.version) != simdjson::SUCCESS) return fail("no integer \"version\"");
  if (object["input_offset"].get_uint64().get(snapshot.input_offset) != simdjson::SUCCESS) {
    return fail("no integer \"input_offset\"");
  }
  if (object["state"].get_string().get(hex) != simdjson::SUCCESS) return fail("no string \"state\"");
  std::string bytes;
  if (!from_hex(hex, bytes)) return fail("\"state\" is not hex");
  if (Status s = deserialize(bytes, snapshot.state); !s) return fail("state: " + s.message());
  return snapshot;
}

Result<std::uint64_t> decode_position(std::string_view value) {
  simdjson::ondemand::parser parser;
  simdjson::padded_string padded(value);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS || doc.get_object().get(object) != simdjson::SUCCESS) {
    return Status::Error("position record: not a JSON object");
  }
  if (Status s = check_format(object); !s) return Status::Error("position record: " + s.message());
  std::uint64_t offset = 0;
  if (object["input_offset"].get_uint64().get(offset) != simdjson::SUCCESS) {
    return Status::Error("position record: no integer \"input_offset\"");
  }
  return offset;
}

}  // namespace rapport::kafka
