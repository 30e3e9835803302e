#include "scoring/event.h"

#include <array>

namespace rapport {
namespace {

constexpr std::array<std::string_view, kEventTypeCount> kTypeNames = {
    "purchase", "refund", "support", "complaint", "survey", "review",
    "social", "referral", "engagement", "renewal", "cancellation",
};

constexpr std::array<std::string_view, kChannelCount> kChannelNames = {
    "twitter", "facebook", "instagram", "email", "chat", "phone", "store", "web", "app", "survey", "other",
};

}  // namespace

std::string_view event_type_name(EventType type) { return kTypeNames[static_cast<std::size_t>(type)]; }

std::optional<EventType> parse_event_type(std::string_view name) {
  for (std::size_t i = 0; i < kTypeNames.size(); ++i) {
    if (kTypeNames[i] == name) return static_cast<EventType>(i);
  }
  return std::nullopt;
}

std::string_view channel_name(Channel channel) { return kChannelNames[static_cast<std::size_t>(channel)]; }

Channel classify_channel(std::string_view label) {
  for (std::size_t i = 0; i + 1 < kChannelNames.size(); ++i) {
    if (kChannelNames[i] == label) return static_cast<Channel>(i);
  }
  return Channel::kOther;
}

}  // namespace rapport
