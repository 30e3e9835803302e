// Event: one customer interaction, as decoded and validated by ingest/.
//
// A plain value type with inline bounded strings, so decoding an event never
// touches the heap. Thread safety: plain value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace rapport {

// A string of at most N bytes stored inline.
template <std::size_t N>
class BoundedString {
 public:
  static constexpr std::size_t kCapacity = N;
  BoundedString() = default;
  // Returns false (and leaves the string unchanged) if s is longer than N.
  bool assign(std::string_view s) {
    if (s.size() > N) return false;
    if (!s.empty()) std::memcpy(data_, s.data(), s.size());  // s.data() may be null when empty
    size_ = static_cast<std::uint16_t>(s.size());
    return true;
  }
  void clear() { size_ = 0; }
  std::string_view view() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  friend bool operator==(const BoundedString& a, const BoundedString& b) { return a.view() == b.view(); }

 private:
  char data_[N];
  std::uint16_t size_ = 0;
};

enum class EventType : std::uint8_t {
  kPurchase,
  kRefund,
  kSupport,
  kComplaint,
  kSurvey,
  kReview,
  kSocial,
  kReferral,
  kEngagement,
  kRenewal,
  kCancellation,
};
inline constexpr int kEventTypeCount = 11;

// Wire names: "purchase", "refund", ... "cancellation".
std::string_view event_type_name(EventType type);
std::optional<EventType> parse_event_type(std::string_view name);

// Known channel classes; any other label is kept on the event but counts as kOther.
enum class Channel : std::uint8_t {
  kTwitter,
  kFacebook,
  kInstagram,
  kEmail,
  kChat,
  kPhone,
  kStore,
  kWeb,
  kApp,
  kSurvey,
  kOther,
};
inline constexpr int kChannelCount = 11;
std::string_view channel_name(Channel channel);    // "twitter" ... "other"
Channel classify_channel(std::string_view label);  // unknown or empty -> kOther

inline constexpr std::size_t kMaxIdBytes = 128;
inline constexpr std::size_t kMaxChannelBytes = 32;

struct Event {
  BoundedString<kMaxIdBytes> event_id;      // 1..128 bytes, no NUL
  BoundedString<kMaxIdBytes> customer_id;   // 1..128 bytes of UTF-8, no NUL
  BoundedString<kMaxChannelBytes> channel;  // label as sent, may be empty
  std::int64_t ts_ms = 0;                   // epoch milliseconds (UTC)
  EventType type = EventType::kPurchase;
  // Optional numeric fields, already range-checked by the decoder:
  std::optional<double> amount;     // >= 0, <= 1e9 (purchase, refund: required)
  std::optional<double> cost;       // >= 0, <= 1e9
  std::optional<double> sentiment;  // [-1, 1]
  std::optional<double> nps;        // [0, 10]
  std::optional<double> csat;       // [1, 5]
  std::optional<double> rating;     // [1, 5]

  // Identity (docs/design.md, "Identity"): the id the event was sent with when it is stored under
  // another (the survivor of a merge); empty when it is customer_id itself. Unmerge gives it back.
  // Never from the wire (the decoder clears it).
  BoundedString<kMaxIdBytes> sent_as;
};

}  // namespace rapport
