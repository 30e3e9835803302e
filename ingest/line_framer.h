// LineFramer: NDJSON line framing shared by the TCP front and `rapportctl import`.
//
// Pure (no I/O): feed it bytes as they arrive, in chunks of any size, and pull
// the complete lines out. The result does not depend on how the bytes were
// split into chunks.
//  - Lines end at '\n'; a '\r' right before it is dropped (CR LF). Lines are
//    numbered from 1 and every line counts, blank ones included.
//  - A line longer than max_line_bytes (not counting its line end) comes out
//    once, as too_large, as soon as that is known (before its end has
//    arrived), with its first min(payload_bytes, max_line_bytes) bytes as
//    text (bytes that are always known by then); the rest of it is skipped
//    unbuffered up to the next '\n'.
//  - A blank line (only ' ', '\t', '\r') is never too large, whatever its
//    length: an over-long one is judged at its first non-blank byte (then it
//    is too_large) or at its end (then it comes out as an empty line).
//  - finish() marks the end of input: an unterminated last line comes out as
//    a line.
// At most max_line_bytes + 1 bytes of a partial line are kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rapport {

// True when the line holds only ' ', '\t' and '\r' (or nothing).
bool is_blank_line(std::string_view line);

class LineFramer {
 public:
  struct Line {
    std::uint64_t number = 0;  // 1-based
    std::string_view text;     // without its line end; too_large: its head (see above)
    bool too_large = false;
  };

  // payload_bytes: how much of a too-large line to give out (kMaxPayloadBytes, ingest/submission.h).
  LineFramer(std::size_t max_line_bytes, std::size_t payload_bytes);

  // A new limit applies from the next line that is not yet judged.
  void set_max_line_bytes(std::size_t max_line_bytes) { max_line_ = max_line_bytes; }
  std::size_t max_line_bytes() const { return max_line_; }

  // Hands over the next bytes; they must stay valid until next() returns nullopt (or reset()). Call next()
  // until it returns nullopt before feeding more.
  void feed(std::string_view bytes);
  // End of input: next() then also returns an unterminated last line.
  void finish();
  // The next line, or nullopt when the bytes fed so far hold no further line. The text stays valid until the
  // next call of next(), feed() or reset().
  std::optional<Line> next();
  // Drops the unread input and any partial line; numbering goes on.
  void reset();

  // A line has begun and not ended (bytes kept, or an over-long line being skipped).
  bool partial() const;
  // Line ends ('\n') consumed so far.
  std::uint64_t line_ends() const { return line_ends_; }
  // The number of the last line given out.
  std::uint64_t lines() const { return number_; }

 private:
  enum class Mode : std::uint8_t {
    kNormal,     // carry_ holds the partial line
    kBlankLong,  // over-long and blank so far: carry_ holds its first payload_bytes bytes
    kSkipping,   // reported too_large: drop bytes up to the next '\n'
  };

  Line emit(std::string_view text, bool too_large);
  // The current line ends: carry_ + rest is all of it (its line end excluded).
  Line complete(std::string_view rest);
  // How much of a too-large line is given out: min(payload_bytes, max_line_bytes).
  std::size_t head_bytes() const;
  // Turns carry_ into the head of an over-long line: its first head_bytes(), then `more` up to that.
  void keep_head(std::string_view more);

  std::size_t max_line_;
  std::size_t payload_;
  Mode mode_ = Mode::kNormal;
  std::string carry_;
  bool release_ = false;  // carry_ was handed out by next(): clear it first
  std::string_view input_;
  bool eof_ = false;
  std::uint64_t number_ = 0;
  std::uint64_t line_ends_ = 0;
};

}  // namespace rapport
