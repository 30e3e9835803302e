// The change feed's daemon pieces: the opaque cursor (one position per partition) and FeedWaiters, which
// parks long-polls until a notification, their deadline, or stop.
#include "daemon/feed.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

namespace rapport {
namespace {

using namespace std::chrono_literals;

// Waits for `done` (a failure guard of 20 s, not a timing assertion).
template <typename Done>
bool eventually(Done done) {
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(FeedCursor, RoundTripsOnePositionPerPartition) {
  const std::vector<std::uint64_t> positions = {0, 17, UINT64_MAX};
  const std::string text = encode_feed_cursor(positions);
  EXPECT_EQ(text, "f1.0.11.ffffffffffffffff.03");
  const FeedCursor back = decode_feed_cursor(text, 3);
  EXPECT_FALSE(back.malformed);
  EXPECT_EQ(back.positions, positions);
  // Another partition count decodes (the caller answers 410), with its own count.
  const FeedCursor other = decode_feed_cursor(text, 2);
  EXPECT_FALSE(other.malformed);
  EXPECT_EQ(other.positions.size(), 3u);
  // Empty: the start.
  EXPECT_EQ(decode_feed_cursor("", 4).positions, std::vector<std::uint64_t>(4, 0));
}

TEST(FeedCursor, AnythingElseIsMalformed) {
  for (const char* bad : {"f1", "f1.", "f1.02", "f1.1.02", "f1.1.2.01", "f1.1.x.02", "e1.1.01", "f1.1.0102", "f1..01",
                          "f1.11111111111111111.01", "f1.1.1"}) {
    const FeedCursor c = decode_feed_cursor(bad, 1);
    EXPECT_TRUE(c.malformed) << bad;
    EXPECT_TRUE(c.positions.empty()) << bad;
  }
}

TEST(FeedWaiters, ANotificationRetriesAndTheDeadlineAnswersFinal) {
  FeedWaiters waiters(4);
  std::atomic<bool> ready{false};
  std::promise<bool> woken, expired;
  // Answers once `ready` is set (as a long-poll once a change arrived); a deadline an hour away.
  ASSERT_EQ(waiters.park(std::chrono::steady_clock::now() + 1h,
                         [&](bool final) {
                           if (!ready && !final) return false;
                           woken.set_value(final);
                           return true;
                         }),
            FeedWaiters::Park::kParked);
  // A deadline already passed: answered final without any notification.
  ASSERT_EQ(waiters.park(std::chrono::steady_clock::now(),
                         [&](bool final) {
                           if (!final) return false;
                           expired.set_value(final);
                           return true;
                         }),
            FeedWaiters::Park::kParked);
  EXPECT_TRUE(expired.get_future().get());
  ready = true;
  waiters.notify();
  EXPECT_FALSE(woken.get_future().get());  // answered by the notification, not the deadline
  EXPECT_EQ(waiters.parked(), 0u);
}

TEST(FeedWaiters, ARequestParkedAfterAChangeIsTriedOnceWithoutANotification) {
  FeedWaiters waiters(4);
  std::atomic<bool> ready{false};
  std::atomic<int> tries{0};
  // A waits for something else; its tries show where the thread is.
  ASSERT_EQ(waiters.park(std::chrono::steady_clock::now() + 1h,
                         [&](bool final) {
                           ++tries;
                           return final;
                         }),
            FeedWaiters::Park::kParked);
  ASSERT_TRUE(eventually([&] { return tries > 0; })) << "a newly parked request is tried at once";
  // A change, and its notification, which the thread takes (trying A again) before B is parked: B's
  // caller had found nothing just before the change.
  ready = true;
  waiters.notify();
  ASSERT_TRUE(eventually([&] { return tries >= 2; }));
  std::promise<bool> answered;
  ASSERT_EQ(waiters.park(std::chrono::steady_clock::now() + 1h,
                         [&](bool final) {
                           if (!ready && !final) return false;
                           answered.set_value(final);
                           return true;
                         }),
            FeedWaiters::Park::kParked);
  // Not final: answered by the thread's first try of B, not at the deadline an hour away (the test gives up
  // after 20 s).
  auto future = answered.get_future();
  ASSERT_EQ(future.wait_for(20s), std::future_status::ready);
  EXPECT_FALSE(future.get());
}

TEST(FeedWaiters, BoundedAndStopAnswersEveryParkedRequest) {
  FeedWaiters waiters(2);
  std::atomic<int> finals{0};
  auto wait = [&](bool final) {
    if (!final) return false;
    ++finals;
    return true;
  };
  const auto later = std::chrono::steady_clock::now() + 1h;
  EXPECT_EQ(waiters.park(later, wait), FeedWaiters::Park::kParked);
  EXPECT_EQ(waiters.park(later, wait), FeedWaiters::Park::kParked);
  EXPECT_EQ(waiters.park(later, wait), FeedWaiters::Park::kFull);
  waiters.notify();  // nothing new for them: they keep waiting
  waiters.stop();
  EXPECT_EQ(finals, 2);
  EXPECT_EQ(waiters.park(later, wait), FeedWaiters::Park::kStopped);
}

}  // namespace
}  // namespace rapport
