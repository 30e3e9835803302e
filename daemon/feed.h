// The change feed's pieces outside storage (docs/design.md, "Change feed"):
// its opaque HTTP cursor (one position per partition) and FeedWaiters, which
// parks long-poll requests off the io threads until a writer commits, their
// deadline passes or the daemon stops.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace rapport {

// "f1.<position 0 hex>. ... .<position P-1 hex>.<P as one byte hex>" (daemon/cursor.h).
std::string encode_feed_cursor(std::span<const std::uint64_t> positions);

struct FeedCursor {
  std::vector<std::uint64_t> positions;  // one per partition of the cursor
  bool malformed = false;                // not made by encode_feed_cursor
};
// An empty text is the start (zeros) for `partitions` partitions.
FeedCursor decode_feed_cursor(std::string_view text, std::uint32_t partitions);

// Parked long-poll requests, served by one thread of its own.
// Thread safety: every member may be called from any thread.
class FeedWaiters {
 public:
  // Tries to answer a parked request: answers and returns true, or returns
  // false to keep waiting. `final` (deadline passed, or stopping): it must answer.
  using Attempt = std::function<bool(bool final)>;

  explicit FeedWaiters(std::size_t max_parked);
  ~FeedWaiters();  // stop()
  FeedWaiters(const FeedWaiters&) = delete;
  FeedWaiters& operator=(const FeedWaiters&) = delete;

  enum class Park { kParked, kFull, kStopped };
  // Parks a request until notify() (then attempt(false)) or `deadline`
  // (attempt(true)). kFull when max_parked are waiting, kStopped once
  // stopped: the caller answers itself then.
  Park park(std::chrono::steady_clock::time_point deadline, Attempt attempt);
  // Something changed (a writer committed): every parked request tries again.
  void notify();
  // Answers every parked request (attempt(true)) and ends the thread. Idempotent.
  void stop();
  std::size_t parked() const;

 private:
  struct Parked {
    std::chrono::steady_clock::time_point deadline;
    Attempt attempt;
    bool fresh = true;  // not tried by the thread yet: a change may have come since its caller's try
  };
  void run();

  const std::size_t max_parked_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::list<Parked> parked_;  // guarded by mutex_
  bool notified_ = false;     // guarded by mutex_
  bool has_fresh_ = false;    // guarded by mutex_: a request was parked since the thread last took the list
  bool stopping_ = false;     // guarded by mutex_
  std::thread thread_;
};

}  // namespace rapport
