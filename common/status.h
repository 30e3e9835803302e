// Status and Result<T>: errors as values at module boundaries.
//
// A Status is either ok or carries a message a user can act on. Result<T>
// holds a value or an error Status. Both are cheap to move; the ok path never
// allocates. Thread safety: plain values, no shared state.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace rapport {

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }
  // Not a failure: what the operation needs is not there yet (e.g. too little data to fit a
  // model on a new install). Callers may report it quietly; ok() is still false.
  static Status NotReady(std::string message) {
    Status s(std::move(message));
    s.not_ready_ = true;
    return s;
  }

  bool ok() const { return !failed_; }
  bool not_ready() const { return not_ready_; }
  explicit operator bool() const { return ok(); }
  // REQUIRES: !ok()
  const std::string& message() const { return message_; }

 private:
  explicit Status(std::string message) : failed_(true), message_(std::move(message)) {}
  bool failed_ = false;
  bool not_ready_ = false;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                                            // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  // REQUIRES: !ok()
  const Status& status() const { return std::get<Status>(v_); }
  const std::string& message() const { return status().message(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace rapport
