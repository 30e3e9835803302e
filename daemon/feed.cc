#include "daemon/feed.h"

#include <algorithm>

#include "daemon/cursor.h"

namespace rapport {
namespace {

constexpr std::string_view kFeedCursorTag = "f1";

}  // namespace

std::string encode_feed_cursor(std::span<const std::uint64_t> positions) {
  const char count = static_cast<char>(positions.size());
  return encode_cursor(kFeedCursorTag, positions, std::string_view(&count, 1));
}

FeedCursor decode_feed_cursor(std::string_view text, std::uint32_t partitions) {
  FeedCursor out;
  if (text.empty()) {
    out.positions.assign(partitions, 0);
    return out;
  }
  // tag, one field per position, then the count byte: as many positions as dots less one.
  const auto dots = static_cast<std::size_t>(std::count(text.begin(), text.end(), '.'));
  std::string count;
  if (dots < 2 || dots > 256) {
    out.malformed = true;
    return out;
  }
  out.positions.assign(dots - 1, 0);
  if (!decode_cursor(text, kFeedCursorTag, out.positions, count, 1) ||
      static_cast<unsigned char>(count[0]) != out.positions.size()) {
    out.positions.clear();
    out.malformed = true;
  }
  return out;
}

FeedWaiters::FeedWaiters(std::size_t max_parked) : max_parked_(max_parked), thread_([this] { run(); }) {}

FeedWaiters::~FeedWaiters() { stop(); }

FeedWaiters::Park FeedWaiters::park(std::chrono::steady_clock::time_point deadline, Attempt attempt) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Park::kStopped;
    if (parked_.size() >= max_parked_) return Park::kFull;
    parked_.push_back(Parked{deadline, std::move(attempt)});
    has_fresh_ = true;
  }
  wake_.notify_one();
  return Park::kParked;
}

void FeedWaiters::notify() {
  {
    std::lock_guard lock(mutex_);
    notified_ = true;  // also while the thread is trying the parked requests (none in the list then)
  }
  wake_.notify_one();
}

void FeedWaiters::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

std::size_t FeedWaiters::parked() const {
  std::lock_guard lock(mutex_);
  return parked_.size();
}

void FeedWaiters::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (parked_.empty()) {
      if (stopping_) return;
      wake_.wait(lock, [&] { return stopping_ || !parked_.empty(); });
      continue;
    }
    const auto next = std::min_element(parked_.begin(), parked_.end(), [](const Parked& a, const Parked& b) {
                        return a.deadline < b.deadline;
                      })->deadline;
    // A newly parked request is tried once at once (a change may have come after its caller's try, before
    // it was parked) and may have an earlier deadline.
    wake_.wait_until(lock, next, [&] { return stopping_ || notified_ || has_fresh_; });
    const bool all = stopping_ || notified_;
    notified_ = has_fresh_ = false;
    const auto now = std::chrono::steady_clock::now();
    // Take the requests to try out of the list; attempts run without the lock (they read the store and answer).
    std::list<Parked> due;
    for (auto it = parked_.begin(); it != parked_.end();) {
      auto here = it++;
      if (all || here->fresh || here->deadline <= now) due.splice(due.end(), parked_, here);
    }
    const bool stopping = stopping_;
    lock.unlock();
    std::list<Parked> again;
    for (auto it = due.begin(); it != due.end();) {
      auto here = it++;
      const bool final = stopping || here->deadline <= now;
      here->fresh = false;
      if (!here->attempt(final)) again.splice(again.end(), due, here);
    }
    due.clear();
    lock.lock();
    parked_.splice(parked_.end(), again);
  }
}

}  // namespace rapport
