#include "daemon/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "ingest/net/http_client.h"

namespace rapport {
namespace {

constexpr std::size_t kMinTokenChars = 16;

// While config_keys() runs: every key a Section looks up, qualified ("server.http").
thread_local std::vector<std::string>* g_known_keys = nullptr;

// Reads one TOML table, remembering which keys were understood so that the
// rest can be reported as unknown.
class Section {
 public:
  // `secret`: the section holds tokens; an unknown key as long as a token is
  // reported without its name (it may be a token pasted in the wrong place).
  Section(const toml::table* table, std::string name, bool secret = false)
      : table_(table), name_(std::move(name)), secret_(secret) {}

  template <typename T>
  void number(std::string_view key, T& out, double min, double max) {
    const toml::node* node = find(key);
    if (node == nullptr || !error_.empty()) return;
    double value = 0;
    if (auto i = node->value<std::int64_t>(); i && node->is_integer()) {
      value = static_cast<double>(*i);
    } else if (auto d = node->value<double>(); d && node->is_floating_point()) {
      value = *d;
    } else {
      fail(key, "must be a number");
      return;
    }
    if (!(value >= min && value <= max)) {
      fail(key, "must be between " + trim(min) + " and " + trim(max));
      return;
    }
    out = static_cast<T>(value);
  }

  void millis(std::string_view key, std::chrono::milliseconds& out, double max_ms) {
    double v = static_cast<double>(out.count());
    number(key, v, 0, max_ms);
    out = std::chrono::milliseconds(static_cast<std::int64_t>(v));
  }

  void string(std::string_view key, std::string& out) {
    const toml::node* node = find(key);
    if (node == nullptr || !error_.empty()) return;
    if (auto s = node->value<std::string>(); s && node->is_string()) {
      out = *s;
    } else {
      fail(key, "must be a string");
    }
  }

  void boolean(std::string_view key, bool& out) {
    const toml::node* node = find(key);
    if (node == nullptr || !error_.empty()) return;
    if (auto b = node->value<bool>(); b && node->is_boolean()) {
      out = *b;
    } else {
      fail(key, "must be true or false");
    }
  }

  void choice(std::string_view key, std::string& out, std::initializer_list<std::string_view> allowed) {
    std::string v = out;
    string(key, v);
    if (!error_.empty()) return;
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      fail(key, "must be one of: " + list);
      return;
    }
    out = v;
  }

  const toml::table* table(std::string_view key) {
    const toml::node* node = find(key);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) {
      fail(key, "must be a table");
      return nullptr;
    }
    return node->as_table();
  }

  const toml::array* array(std::string_view key) {
    const toml::node* node = find(key);
    if (node == nullptr) return nullptr;
    if (!node->is_array()) {
      fail(key, "must be an array");
      return nullptr;
    }
    return node->as_array();
  }

  // Reports the first key nobody asked for.
  void finish() {
    if (table_ == nullptr || !error_.empty()) return;
    for (const auto& [k, v] : *table_) {
      if (std::find(seen_.begin(), seen_.end(), k.str()) == seen_.end()) {
        error_ = secret_ && k.str().size() >= kMinTokenChars
                     ? "unknown key in '" + name_ + "' (name not shown: it is as long as a token)"
                     : "unknown key '" + qualified(k.str()) + "'";
        return;
      }
    }
  }

  void fail(std::string_view key, const std::string& what) {
    if (!error_.empty()) return;
    // Appended piece by piece: GCC 12 at -O3 misreads a chain of operator+ here (-Wrestrict).
    error_.push_back('\'');
    error_ += qualified(key);
    error_ += "' ";
    error_ += what;
  }
  const std::string& error() const { return error_; }
  std::string qualified(std::string_view key) const {
    std::string out = name_;  // appended piece by piece: GCC 12 at -O3 misreads operator+ chains (-Wrestrict)
    if (!out.empty()) out += '.';
    out += key;
    return out;
  }

 private:
  const toml::node* find(std::string_view key) {
    if (g_known_keys != nullptr) g_known_keys->push_back(qualified(key));
    if (table_ == nullptr) return nullptr;
    seen_.emplace_back(key);
    return table_->get(key);
  }
  static std::string trim(double v) {
    std::string s = std::to_string(v);
    if (s.find('.') != std::string::npos) {
      while (!s.empty() && s.back() == '0') s.pop_back();
      if (!s.empty() && s.back() == '.') s.pop_back();
    }
    return s;
  }

  const toml::table* table_;
  std::string name_;
  bool secret_ = false;
  std::vector<std::string> seen_;
  std::string error_;
};

constexpr double kMaxBytes = 1e12;
constexpr double kMaxMillis = 7 * 24 * 3600 * 1000.0;
constexpr double kMaxCheckpointEvents = 1e8;
constexpr double kMinCheckpointIntervalMs = 100;

// A list of strings, each turned into a T by `parse` (false: not a valid name, listed as `expected`).
template <typename T, typename Parse>
Status string_list(const toml::array* array, const std::string& key, std::vector<T>& out, Parse parse,
                   std::string_view expected) {
  if (array == nullptr) return Status::Ok();
  out.clear();
  for (const toml::node& node : *array) {
    const auto s = node.value<std::string>();
    T value{};
    if (!node.is_string() || !parse(*s, value)) {
      std::string message = "'";
      message += key;
      message += "' must list ";
      message += expected;
      return Status::Error(message);
    }
    out.push_back(std::move(value));
  }
  if (out.empty()) {
    std::string message = "'";
    message += key;
    message += "' must not be empty (leave it out to match any)";
    return Status::Error(message);
  }
  return Status::Ok();
}

// [[alerts]]: each table one AlertRule; validated as a whole (validate_alert_rules).
Status read_alerts(Section& top, std::vector<AlertRule>& out) {
  const toml::array* alerts = top.array("alerts");
  if (!top.error().empty()) return Status::Error(top.error());
  if (alerts == nullptr) return Status::Ok();
  std::vector<AlertRule> rules;
  std::size_t i = 0;
  for (const toml::node& node : *alerts) {
    const std::string name = "alerts[" + std::to_string(i++) + "]";
    if (!node.is_table()) return Status::Error("'" + name + "' must be a table {name = ..., url = ..., secret = ...}");
    // secret: an unknown key as long as a token is not named (it may be the secret pasted in the wrong place).
    Section a(node.as_table(), name, /*secret=*/true);
    AlertRule rule;
    a.string("name", rule.name);
    a.string("url", rule.url);
    a.string("secret", rule.secret);
    double below = -1, above = -1;
    a.number("satisfaction_below", below, 0, 100);
    a.number("churn_risk_above", above, 0, 1);
    if (below >= 0) rule.satisfaction_below = below;
    if (above >= 0) rule.churn_risk_above = above;
    a.boolean("tier_changed", rule.tier_changed);
    const toml::array* types = a.array("event_types");
    const toml::array* channels = a.array("channels");
    const toml::array* tiers = a.array("tiers");
    a.finish();
    if (!a.error().empty()) return Status::Error(a.error());
    const auto parse_type = [](const std::string& s, EventType& t) {
      const auto parsed = parse_event_type(s);
      if (parsed) t = *parsed;
      return parsed.has_value();
    };
    const auto parse_channel = [](const std::string& s, std::string& c) {
      c = s;
      return true;
    };
    const auto parse_tier_name = [](const std::string& s, Tier& t) { return parse_tier(s, t); };
    if (Status s = string_list(types, name + ".event_types", rule.event_types, parse_type,
                               "event types (purchase, refund, support, complaint, survey, review, social, referral, "
                               "engagement, renewal, cancellation)");
        !s.ok()) {
      return s;
    }
    if (Status s = string_list(channels, name + ".channels", rule.channels, parse_channel, "strings"); !s.ok())
      return s;
    if (Status s = string_list(tiers, name + ".tiers", rule.tiers, parse_tier_name,
                               "tiers (platinum, gold, iron, lead, unranked)");
        !s.ok()) {
      return s;
    }
    rules.push_back(std::move(rule));
  }
  if (Status s = validate_alert_rules(rules); !s.ok()) return s;
  for (const AlertRule& rule : rules) {
    if (auto endpoint = parse_http_url(rule.url); !endpoint.ok()) {
      return Status::Error("alert \"" + rule.name + "\": 'alerts.url' " + endpoint.status().message());
    }
  }
  out = std::move(rules);
  return Status::Ok();
}

Status apply_toml(const toml::table& root, Config& c) {
  Section top(&root, "");

  Section server(top.table("server"), "server");
  server.string("http", c.server.http_address);
  server.string("tcp", c.server.tcp_address);
  server.number("io_threads", c.server.io_threads, 0, 256);
  server.finish();

  Section storage(top.table("storage"), "storage");
  storage.string("state_dir", c.storage.directory);
  std::string durability = c.storage.durability == Durability::kFsync ? "fsync" : "async";
  storage.choice("durability", durability, {"fsync", "async"});
  c.storage.durability = durability == "fsync" ? Durability::kFsync : Durability::kAsync;
  storage.number("initial_map_bytes", c.storage.initial_map_bytes, 1 << 20, kMaxBytes * 1024);
  storage.number("max_map_bytes", c.storage.max_map_bytes, 1 << 20, kMaxBytes * 1024);
  storage.number("dead_letter_capacity", c.storage.dead_letter_capacity, 0, 1e9);
  storage.number("outbox_capacity", c.storage.outbox_capacity, 1, 1e9);
  storage.number("feed_tombstones", c.storage.feed_tombstones, 0, 1e9);
  double partitions = 0;  // absent: the state dir's recorded layout, or the number of cores for a new one
  storage.number("partitions", partitions, 1, kMaxPartitions);
  if (partitions != 0) {
    if (partitions != static_cast<double>(static_cast<std::uint32_t>(partitions))) {
      return Status::Error("'storage.partitions' must be a whole number");
    }
    c.storage.partitions = static_cast<std::uint32_t>(partitions);
  }
  // Up to twice checkpoint_events are held in memory; below 100 ms the interval is most likely meant in seconds.
  storage.number("checkpoint_events", c.storage.checkpoint_events, 1, kMaxCheckpointEvents);
  double checkpoint_ms = static_cast<double>(c.storage.checkpoint_interval.count());
  storage.number("checkpoint_interval_ms", checkpoint_ms, kMinCheckpointIntervalMs, kMaxMillis);
  c.storage.checkpoint_interval = std::chrono::milliseconds(static_cast<std::int64_t>(checkpoint_ms));
  storage.finish();

  Section ingest(top.table("ingest"), "ingest");
  FrontLimits& l = c.server.limits;
  ingest.number("max_line_bytes", l.max_line_bytes, 256, 1 << 30);
  ingest.number("max_body_bytes", l.max_body_bytes, 256, kMaxBytes);
  ingest.number("max_header_bytes", l.max_header_bytes, 512, 1 << 20);
  ingest.millis("read_timeout_ms", l.read_timeout, kMaxMillis);
  ingest.millis("idle_timeout_ms", l.idle_timeout, kMaxMillis);
  ingest.number("max_connections", l.max_connections, 1, 1e7);
  ingest.number("max_inflight_submissions", l.max_inflight_submissions, 1, 1e4);
  ingest.number("max_future_skew_ms", c.server.decode.max_future_skew_ms, 0, 1e13);
  ingest.number("batch_max_events", c.writer.batch_max_events, 1, 1e8);
  ingest.number("queue_capacity_events", c.writer.queue_capacity_events, 1, 1e9);
  ingest.finish();
  c.server.decode.max_line_bytes = l.max_line_bytes;

  Section tls(top.table("tls"), "tls");
  tls.string("cert_file", c.server.tls.cert_file);
  tls.string("key_file", c.server.tls.key_file);
  tls.boolean("http", c.server.tls.http);
  tls.boolean("tcp", c.server.tls.tcp);
  tls.choice("min_version", c.server.tls.min_version, {"1.2", "1.3"});
  tls.finish();

  Section metrics(top.table("metrics"), "metrics");
  metrics.string("address", c.server.metrics_address);
  metrics.finish();

  Section auth(top.table("auth"), "auth", /*secret=*/true);
  if (const toml::array* tokens = auth.array("tokens")) {
    c.tokens.clear();
    std::size_t i = 0;
    for (const toml::node& node : *tokens) {
      const std::string name = "auth.tokens[" + std::to_string(i++) + "]";
      if (!node.is_table()) return Status::Error("'" + name + "' must be a table {token = ..., scopes = [...]}");
      Section t(node.as_table(), name, /*secret=*/true);
      TokenGrant grant;
      t.string("token", grant.token);
      std::string scopes_joined;
      if (const toml::array* scopes = t.array("scopes")) {
        for (const toml::node& s : *scopes) {
          if (!s.is_string()) return Status::Error("'" + name + ".scopes' must list strings");
          if (!scopes_joined.empty()) scopes_joined.push_back(',');
          scopes_joined += *s.value<std::string>();
        }
      }
      t.finish();
      if (!t.error().empty()) return Status::Error(t.error());
      if (grant.token.size() < kMinTokenChars) {
        return Status::Error("'" + name + ".token' must be at least " + std::to_string(kMinTokenChars) + " characters");
      }
      grant.scopes = TokenSet::parse_scopes(scopes_joined);
      if (grant.scopes == 0) {
        return Status::Error("'" + name + ".scopes' must list one or more of \"ingest\", \"read\", \"admin\"");
      }
      c.tokens.push_back(std::move(grant));
    }
  }
  auth.finish();

  if (Status s = read_alerts(top, c.alerts); !s.ok()) return s;

  Section delivery(top.table("alert_delivery"), "alert_delivery");
  AlertDeliveryOptions& ad = c.alert_delivery;
  delivery.millis("timeout_ms", ad.timeout, kMaxMillis);
  delivery.millis("retry_initial_ms", ad.retry_initial, kMaxMillis);
  delivery.millis("retry_max_ms", ad.retry_max, kMaxMillis);
  double retry_for_s = static_cast<double>(ad.retry_for.count()) / 1000.0;
  delivery.number("retry_for_s", retry_for_s, 0, 365.0 * 86400);
  ad.retry_for = std::chrono::milliseconds(static_cast<std::int64_t>(retry_for_s * 1000));
  delivery.number("max_concurrency_per_url", ad.max_per_url, 1, 1000);
  delivery.number("threads", ad.threads, 1, 256);
  delivery.string("ca_file", ad.ca_file);
  delivery.finish();
  if (!delivery.error().empty()) return Status::Error(delivery.error());
  if (ad.timeout.count() == 0 || ad.retry_initial.count() == 0 || ad.retry_max < ad.retry_initial) {
    return Status::Error(
        "'alert_delivery.timeout_ms' and 'alert_delivery.retry_initial_ms' must be positive, and "
        "'alert_delivery.retry_max_ms' at least 'alert_delivery.retry_initial_ms'");
  }

  Section kafka(top.table("kafka"), "kafka");
  kafka.string("brokers", c.kafka.brokers);
  kafka.string("topic", c.kafka.topic);
  kafka.string("group_id", c.kafka.group_id);
  // The changes topic ("" = "<topic>.changes") and where a new owner of a partition restores it from.
  kafka.string("changes_topic", c.kafka.changes_topic);
  if (c.kafka.changes_topic.empty() && !c.kafka.topic.empty()) c.kafka.changes_topic = c.kafka.topic + ".changes";
  std::string restore = "changes";
  kafka.choice("restore", restore, {"changes", "input"});
  c.kafka.restore = restore == "input" ? RestoreMode::kInput : RestoreMode::kChanges;
  kafka.number("max_chunk_records", c.kafka.max_chunk_records, 1, 1e6);
  kafka.string("stats_topic", c.kafka_fit.stats_topic);
  double stats_timeout = static_cast<double>(c.kafka_fit.stats_timeout.count());
  kafka.number("stats_timeout_s", stats_timeout, 1, 86400);
  c.kafka_fit.stats_timeout = std::chrono::seconds(static_cast<std::int64_t>(stats_timeout));
  // [kafka.properties]: librdkafka properties passed through (strings, numbers or booleans), checked by
  // validate_config against librdkafka itself.
  if (const toml::table* props = kafka.table("properties"); props != nullptr) {
    for (const auto& [k, v] : *props) {
      std::string text;
      if (auto str = v.value<std::string>(); str && v.is_string()) {
        text = *str;
      } else if (auto i = v.value<std::int64_t>(); i && v.is_integer()) {
        text = std::to_string(*i);
      } else if (auto b = v.value<bool>(); b && v.is_boolean()) {
        text = *b ? "true" : "false";
      } else {
        return Status::Error("'kafka.properties." + std::string(k.str()) +
                             "' must be a string, an integer or a boolean");
      }
      c.kafka.properties.emplace_back(std::string(k.str()), std::move(text));
    }
  }
  kafka.finish();
  if (!kafka.error().empty()) return Status::Error(kafka.error());
  if (c.kafka_fit.stats_topic.empty() && !c.kafka.topic.empty()) c.kafka_fit.stats_topic = c.kafka.topic + ".stats";

  Section scoring(top.table("scoring"), "scoring");
  scoring.number("half_life_days", c.apply.half_life_days, 1, 36500);
  c.evaluate.half_life_days = c.apply.half_life_days;
  scoring.number("prior_weight", c.evaluate.prior_weight, 0, 1e6);
  scoring.number("stage_threshold", c.evaluate.stage_threshold, 0, 1);
  Section sat(scoring.table("satisfaction_weights"), "scoring.satisfaction_weights");
  sat.number("csat", c.evaluate.weight_csat, 0, 1e3);
  sat.number("nps", c.evaluate.weight_nps, 0, 1e3);
  sat.number("rating", c.evaluate.weight_rating, 0, 1e3);
  sat.number("sentiment", c.evaluate.weight_sentiment, 0, 1e3);
  sat.number("complaint", c.evaluate.weight_complaint, 0, 1e3);
  sat.number("refund", c.evaluate.weight_refund, 0, 1e3);
  sat.finish();
  Section loy(scoring.table("loyalty_weights"), "scoring.loyalty_weights");
  loy.number("cognitive", c.evaluate.loyalty_weights[0], 0, 1e3);
  loy.number("affective", c.evaluate.loyalty_weights[1], 0, 1e3);
  loy.number("conative", c.evaluate.loyalty_weights[2], 0, 1e3);
  loy.number("action", c.evaluate.loyalty_weights[3], 0, 1e3);
  loy.finish();
  Section cost(scoring.table("default_cost"), "scoring.default_cost");
  for (int ch = 0; ch < kChannelCount; ++ch) {
    cost.number(channel_name(static_cast<Channel>(ch)), c.apply.default_cost[ch], 0, 1e9);
  }
  cost.finish();
  scoring.finish();

  Section value(top.table("value"), "value");
  value.number("horizon_days", c.value.horizon_days, 1, 36500);
  value.number("margin", c.value.margin, 0, 1);
  value.number("annual_discount_rate", c.value.annual_discount_rate, 0, 10);
  value.number("platinum_fraction", c.value.platinum_fraction, 0, 1);
  value.number("gold_fraction", c.value.gold_fraction, 0, 1);
  double fit_interval = static_cast<double>(c.value.fit_interval.count());
  value.number("fit_interval_s", fit_interval, 0, 1e8);
  c.value.fit_interval = std::chrono::seconds(static_cast<std::int64_t>(fit_interval));
  value.finish();

  Section identity(top.table("identity"), "identity");
  identity.number("max_aliases", c.identity.max_aliases, 1, 100000);
  identity.boolean("identify_events", c.identity.identify_events);
  if (const toml::array* blocked = identity.array("blocked_ids")) {
    c.identity.blocked_ids.clear();
    for (const toml::node& b : *blocked) {
      if (!b.is_string()) return Status::Error("'identity.blocked_ids' must list strings");
      c.identity.blocked_ids.push_back(*b.value<std::string>());
    }
  }
  identity.finish();

  Section log(top.table("log"), "log");
  log.choice("level", c.log_level, {"error", "warn", "info", "debug"});
  log.choice("format", c.log_format, {"text", "json"});
  log.choice("timestamps", c.log_timestamps, {"auto", "on", "off"});
  log.finish();

  Section daemon(top.table("daemon"), "daemon");
  daemon.millis("shutdown_timeout_ms", c.shutdown_timeout, kMaxMillis);
  daemon.finish();

  top.finish();
  for (const Section* s : {&server, &storage, &ingest, &tls, &metrics, &auth, &sat, &loy, &cost, &scoring, &value,
                           &identity, &log, &daemon, &top}) {
    if (!s->error().empty()) return Status::Error(s->error());
  }
  if (c.value.platinum_fraction + c.value.gold_fraction > 1) {
    return Status::Error("'value.platinum_fraction' + 'value.gold_fraction' must not exceed 1");
  }
  return Status::Ok();
}

}  // namespace

Config default_config() {
  Config c;
  c.storage.directory = "./var/rapport";
  // Cost to serve one interaction by channel (account currency): people cost more than self-service.
  c.apply.default_cost[static_cast<int>(Channel::kPhone)] = 4.0;
  c.apply.default_cost[static_cast<int>(Channel::kChat)] = 1.5;
  c.apply.default_cost[static_cast<int>(Channel::kEmail)] = 2.0;
  c.apply.default_cost[static_cast<int>(Channel::kStore)] = 5.0;
  c.apply.default_cost[static_cast<int>(Channel::kTwitter)] = 1.0;
  c.apply.default_cost[static_cast<int>(Channel::kFacebook)] = 1.0;
  c.apply.default_cost[static_cast<int>(Channel::kInstagram)] = 1.0;
  c.apply.default_cost[static_cast<int>(Channel::kWeb)] = 0.2;
  c.apply.default_cost[static_cast<int>(Channel::kApp)] = 0.2;
  c.apply.default_cost[static_cast<int>(Channel::kSurvey)] = 0.1;
  c.apply.default_cost[static_cast<int>(Channel::kOther)] = 1.0;
  return c;
}

Result<Config> load_config(const std::string& path) {
  Config c = default_config();
  if (path.empty()) return c;
  c.config_path = path;
  try {
    const toml::table root = toml::parse_file(path);
    if (Status s = apply_toml(root, c); !s.ok()) return Status::Error(path + ": " + s.message());
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status::Error(path + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": " +
                         std::string(e.description()));
  }
  return c;
}

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  g_known_keys = &keys;
  Config scratch = default_config();
  (void)apply_toml(toml::table{}, scratch);  // every section and key, with no [[auth.tokens]] entry
  toml::table one_token;
  one_token.insert("tokens", toml::array{toml::table{}});
  toml::table with_token;
  with_token.insert("auth", std::move(one_token));
  (void)apply_toml(with_token, scratch);  // the keys of an [[auth.tokens]] entry (it fails: no token)
  toml::table with_alert;
  with_alert.insert("alerts", toml::array{toml::table{}});
  (void)apply_toml(with_alert, scratch);  // the keys of an [[alerts]] entry (it fails: no name)
  g_known_keys = nullptr;
  for (std::string& key : keys) {  // "auth.tokens[0].token" -> "auth.tokens.token"
    const auto open = key.find('[');
    if (open != std::string::npos) key.erase(open, key.find(']', open) + 1 - open);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

bool is_loopback_address(const std::string& address) {
  std::string host = address;
  if (const auto colon = address.rfind(':'); colon != std::string::npos) host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

Status validate_config(const Config& c) {
  if (c.storage.directory.empty()) return Status::Error("'storage.state_dir' must not be empty");
  if (c.server.http_address.empty() && c.server.tcp_address.empty() && c.server.http_fd < 0 && c.server.tcp_fd < 0) {
    return Status::Error("no listener: set 'server.http' or 'server.tcp'");
  }
  if (c.tokens.empty()) {
    for (const std::string* a : {&c.server.http_address, &c.server.tcp_address}) {
      if (!a->empty() && !is_loopback_address(*a)) {
        return Status::Error("refusing to listen on non-loopback address " + *a +
                             " without authentication: add [[auth.tokens]] to the config or bind 127.0.0.1");
      }
    }
  }
  if (c.storage.initial_map_bytes > c.storage.max_map_bytes) {
    return Status::Error("'storage.initial_map_bytes' must not exceed 'storage.max_map_bytes'");
  }
  const TlsOptions& tls = c.server.tls;
  if (tls.enabled()) {
    if (tls.cert_file.empty() || tls.key_file.empty()) {
      return Status::Error("'tls.cert_file' and 'tls.key_file' are required when 'tls.http' or 'tls.tcp' is true");
    }
    if (Status s = check_tls(tls); !s.ok()) return s;
  } else if (!tls.cert_file.empty() || !tls.key_file.empty()) {
    return Status::Error(
        "'tls.cert_file'/'tls.key_file' are set but neither 'tls.http' nor 'tls.tcp' is true: "
        "set the listener(s) that should speak TLS, or remove the files");
  }
  if (Status s = validate_kafka_options(c.kafka); !s.ok()) return s;
  if (c.kafka.enabled() && c.kafka_fit.stats_topic == c.kafka.topic) {
    return Status::Error("[kafka] stats_topic must not be the input topic \"" + c.kafka.topic +
                         "\" (leave it out for \"" + c.kafka.topic + ".stats\")");
  }
  if (!c.server.metrics_address.empty()) {
    for (const std::string* a : {&c.server.http_address, &c.server.tcp_address}) {
      if (*a == c.server.metrics_address && a->substr(a->rfind(':') + 1) != "0") {
        return Status::Error("'metrics.address' " + *a + " is also the address of another listener");
      }
    }
  }
  return Status::Ok();
}

}  // namespace rapport
