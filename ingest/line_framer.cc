#include "ingest/line_framer.h"

#include <algorithm>

namespace rapport {

bool is_blank_line(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

LineFramer::LineFramer(std::size_t max_line_bytes, std::size_t payload_bytes)
    : max_line_(max_line_bytes), payload_(payload_bytes) {}

void LineFramer::feed(std::string_view bytes) { input_ = bytes; }

void LineFramer::finish() { eof_ = true; }

void LineFramer::reset() {
  input_ = {};
  carry_.clear();
  release_ = false;
  mode_ = Mode::kNormal;
}

bool LineFramer::partial() const { return mode_ != Mode::kNormal || (!release_ && !carry_.empty()); }

LineFramer::Line LineFramer::emit(std::string_view text, bool too_large) { return Line{++number_, text, too_large}; }

std::size_t LineFramer::head_bytes() const { return std::min(payload_, max_line_); }

void LineFramer::keep_head(std::string_view more) {
  const std::size_t head = head_bytes();
  if (carry_.size() > head) carry_.resize(head);
  carry_.append(more.substr(0, head - carry_.size()));
}

LineFramer::Line LineFramer::complete(std::string_view rest) {
  const char last = !rest.empty() ? rest.back() : !carry_.empty() ? carry_.back() : '\0';
  const bool cr = last == '\r';
  const std::size_t size = carry_.size() + rest.size() - (cr ? 1 : 0);
  if (size > max_line_) {
    if (is_blank_line(carry_) && is_blank_line(rest)) {
      carry_.clear();
      return emit({}, false);  // a blank line is never too large
    }
    if (carry_.empty()) return emit(rest.substr(0, head_bytes()), true);
    keep_head(rest);
    release_ = true;
    return emit(carry_, true);
  }
  if (carry_.empty()) return emit(rest.substr(0, rest.size() - (cr ? 1 : 0)), false);
  carry_.append(rest);
  if (cr) carry_.pop_back();
  release_ = true;
  return emit(carry_, false);
}

std::optional<LineFramer::Line> LineFramer::next() {
  if (release_) {
    carry_.clear();
    release_ = false;
  }
  for (;;) {
    if (input_.empty()) {
      if (!eof_) return std::nullopt;
      switch (mode_) {
        case Mode::kSkipping:  // already reported
          mode_ = Mode::kNormal;
          return std::nullopt;
        case Mode::kBlankLong:  // blank to its end
          mode_ = Mode::kNormal;
          carry_.clear();
          return emit({}, false);
        case Mode::kNormal:
          if (carry_.empty()) return std::nullopt;
          return complete({});
      }
    }
    const std::size_t nl = input_.find('\n');
    const std::string_view part = input_.substr(0, nl);  // up to the line end, or all of the input
    switch (mode_) {
      case Mode::kSkipping:
        if (nl == std::string_view::npos) {
          input_ = {};
          continue;
        }
        input_.remove_prefix(nl + 1);
        ++line_ends_;
        mode_ = Mode::kNormal;
        continue;
      case Mode::kBlankLong:
        if (!is_blank_line(part)) {
          keep_head(part);
          mode_ = Mode::kSkipping;  // drops the rest of the line, `part` included
          release_ = true;
          return emit(carry_, true);
        }
        if (nl == std::string_view::npos) {
          keep_head(part);
          input_ = {};
          continue;
        }
        input_.remove_prefix(nl + 1);
        ++line_ends_;
        mode_ = Mode::kNormal;
        carry_.clear();
        return emit({}, false);
      case Mode::kNormal:
        break;
    }
    if (nl != std::string_view::npos) {
      input_.remove_prefix(nl + 1);
      ++line_ends_;
      return complete(part);
    }
    // No line end yet: all of the input belongs to the current line.
    const std::size_t size = carry_.size() + input_.size();
    const bool over = size > max_line_ + 1 || (size == max_line_ + 1 && input_.back() != '\r');
    if (!over) {
      carry_.append(input_);
      input_ = {};
      continue;
    }
    const bool blank = is_blank_line(carry_) && is_blank_line(input_);
    keep_head(input_);
    input_ = {};
    if (blank) {
      mode_ = Mode::kBlankLong;  // no verdict before its end or its first non-blank byte
      continue;
    }
    mode_ = Mode::kSkipping;
    release_ = true;
    return emit(carry_, true);
  }
}

}  // namespace rapport
