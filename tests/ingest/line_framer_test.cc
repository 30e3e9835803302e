#include "ingest/line_framer.h"

#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

namespace rapport {
namespace {

struct Out {
  std::uint64_t number;
  std::string text;
  bool too_large;
  bool operator==(const Out&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Out& o) {
  return os << "{" << o.number << ", \"" << o.text << "\", " << (o.too_large ? "too_large" : "ok") << "}";
}

void drain(LineFramer& f, std::vector<Out>& out) {
  while (auto line = f.next()) out.push_back({line->number, std::string(line->text), line->too_large});
}

// Feeds `bytes` cut at `cuts` (ascending offsets), then ends the input.
std::vector<Out> frame(std::string_view bytes, std::size_t max_line, const std::vector<std::size_t>& cuts = {},
                       std::size_t payload = 16) {
  LineFramer f(max_line, payload);
  std::vector<Out> out;
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    f.feed(bytes.substr(from, cut - from));
    drain(f, out);
    from = cut;
  }
  f.feed(bytes.substr(from));
  drain(f, out);
  f.finish();
  drain(f, out);
  return out;
}

TEST(LineFramer, SplitsAndNumbersEveryLineBlankOnesIncluded) {
  EXPECT_EQ(frame("a\n\nbc\n  \n", 8),
            (std::vector<Out>{{1, "a", false}, {2, "", false}, {3, "bc", false}, {4, "  ", false}}));
}

TEST(LineFramer, DropsTheCarriageReturnOfCrLf) {
  EXPECT_EQ(frame("a\r\nb\r\n\r\n", 8), (std::vector<Out>{{1, "a", false}, {2, "b", false}, {3, "", false}}));
  // Split between the CR and the LF.
  EXPECT_EQ(frame("ab\r\ncd", 8, {3}), (std::vector<Out>{{1, "ab", false}, {2, "cd", false}}));
}

TEST(LineFramer, FinalLineWithoutNewlineComesOutOnlyAtTheEnd) {
  LineFramer f(8, 16);
  f.feed("a\nlast");
  std::vector<Out> out;
  drain(f, out);
  EXPECT_EQ(out, (std::vector<Out>{{1, "a", false}}));
  EXPECT_TRUE(f.partial());
  f.finish();
  drain(f, out);
  EXPECT_EQ(out, (std::vector<Out>{{1, "a", false}, {2, "last", false}}));
  EXPECT_FALSE(f.partial());
  EXPECT_EQ(f.lines(), 2u);
  EXPECT_EQ(f.line_ends(), 1u);
  // Nothing after the end, and no empty line for input that ends with its newline.
  EXPECT_EQ(frame("a\n", 8), (std::vector<Out>{{1, "a", false}}));
  EXPECT_EQ(frame("", 8), (std::vector<Out>{}));
}

TEST(LineFramer, LineExactlyAtTheLimitIsALine) {
  const std::string at(8, 'x');
  EXPECT_EQ(frame(at + "\n" + at + "x\nok\n", 8), (std::vector<Out>{{1, at, false}, {2, at, true}, {3, "ok", false}}));
  // The CR of CR LF does not count, whichever read it comes in.
  EXPECT_EQ(frame(at + "\r\nok", 8), (std::vector<Out>{{1, at, false}, {2, "ok", false}}));
  EXPECT_EQ(frame(at + "\r\nok", 8, {8}), (std::vector<Out>{{1, at, false}, {2, "ok", false}}));
  EXPECT_EQ(frame(at + "\r\nok", 8, {9}), (std::vector<Out>{{1, at, false}, {2, "ok", false}}));
  // At the end of the input, without a newline.
  EXPECT_EQ(frame(at, 8, {4}), (std::vector<Out>{{1, at, false}}));
  EXPECT_EQ(frame(at + "x", 8, {4}), (std::vector<Out>{{1, at, true}}));
}

TEST(LineFramer, OverLongLineAcrossReadsIsReportedOnceAsSoonAsKnownAndSkipped) {
  LineFramer f(8, 4);
  std::vector<Out> out;
  f.feed("ok\n0123456");
  drain(f, out);
  EXPECT_EQ(out, (std::vector<Out>{{1, "ok", false}}));
  f.feed("789abc");  // over the limit: reported now, before its end has come
  drain(f, out);
  EXPECT_EQ(out, (std::vector<Out>{{1, "ok", false}, {2, "0123", true}}));
  EXPECT_TRUE(f.partial());
  f.feed("defghijklmnop");  // still the same line: skipped, not reported again
  drain(f, out);
  f.feed("q\nnext\n");
  drain(f, out);
  f.finish();
  drain(f, out);
  EXPECT_EQ(out, (std::vector<Out>{{1, "ok", false}, {2, "0123", true}, {3, "next", false}}));
  EXPECT_FALSE(f.partial());
}

TEST(LineFramer, BlankOverLongLineIsABlankLineWhereverItIsCut) {
  const std::string blank(20, ' ');
  const std::vector<Out> expected{{1, "", false}, {2, "ok", false}};
  for (std::size_t cut = 0; cut <= blank.size() + 1; ++cut) {
    EXPECT_EQ(frame(blank + "\nok\n", 8, {cut}), expected) << "cut at " << cut;
  }
  // Unterminated at the end of the input.
  EXPECT_EQ(frame(blank, 8, {10}), (std::vector<Out>{{1, "", false}}));
  // Blank for longer than the limit, then not: too large, judged at its first non-blank byte.
  EXPECT_EQ(frame(blank + "x\nok\n", 8, {12}), (std::vector<Out>{{1, std::string(8, ' '), true}, {2, "ok", false}}));
  EXPECT_EQ(frame(blank + "x\nok\n", 4, {5, 20}), (std::vector<Out>{{1, std::string(4, ' '), true}, {2, "ok", false}}));
}

// The head of a too-large line: its first payload bytes, or max_line bytes when that is less (what is always
// known when the line is reported).
TEST(LineFramer, TooLargeTextIsTheLinesHead) {
  EXPECT_EQ(frame("abcdefghijklmnop\n", 8, {}, 5), (std::vector<Out>{{1, "abcde", true}}));
  EXPECT_EQ(frame("abcdefghijklmnop\n", 8, {}, 100), (std::vector<Out>{{1, "abcdefgh", true}}));
  EXPECT_EQ(frame("abcdefghijklmnop\n", 8, {9}, 100), (std::vector<Out>{{1, "abcdefgh", true}}));
  EXPECT_EQ(frame("abcdefghijklmnop\n", 8, {3}, 5), (std::vector<Out>{{1, "abcde", true}}));
  EXPECT_EQ(frame("abcdefghijklmnop\n", 8, {9}, 5), (std::vector<Out>{{1, "abcde", true}}));
}

TEST(LineFramer, ResetDropsThePartialLineAndNumberingGoesOn) {
  LineFramer f(8, 16);
  std::vector<Out> out;
  f.feed("a\npart");
  drain(f, out);
  f.reset();
  EXPECT_FALSE(f.partial());
  f.feed("b\n");
  drain(f, out);
  EXPECT_EQ(out, (std::vector<Out>{{1, "a", false}, {2, "b", false}}));
}

TEST(LineFramer, NewLimitAppliesToTheNextLine) {
  LineFramer f(8, 16);
  std::vector<Out> out;
  f.feed("123456\n");
  drain(f, out);
  f.set_max_line_bytes(4);
  f.feed("123456\n");
  drain(f, out);
  EXPECT_EQ(out, (std::vector<Out>{{1, "123456", false}, {2, "1234", true}}));
}

// The same bytes give the same lines however they are cut into reads: one chunk, every single cut, every
// pair of cuts, byte by byte.
TEST(LineFramer, SameBytesSameLinesInEveryChunking) {
  const std::string inputs[] = {
      "{\"a\":1}\n\n{\"b\":2}\r\n   \n",
      "ok\n0123456789abcdef\nok\n",
      "ok\n" + std::string(20, ' ') + "\n" + std::string(12, '\t') + "x\nend",
      "01234567\r\n012345678\r\n\r\r\r\r\r\r\r\r\r\r\nz",
      std::string(30, 'y') + "\n" + std::string(9, ' ') + "\r",
  };
  for (const std::string& in : inputs) {
    const auto whole = frame(in, 8);
    std::vector<std::size_t> bytes;
    for (std::size_t i = 1; i < in.size(); ++i) bytes.push_back(i);
    EXPECT_EQ(frame(in, 8, bytes), whole) << in;
    for (std::size_t i = 0; i <= in.size(); ++i) {
      EXPECT_EQ(frame(in, 8, {i}), whole) << in << " cut at " << i;
      for (std::size_t j = i; j <= in.size(); ++j) {
        EXPECT_EQ(frame(in, 8, {i, j}), whole) << in << " cut at " << i << ", " << j;
      }
    }
  }
  // And what that is, for two of them.
  EXPECT_EQ(frame(inputs[1], 8), (std::vector<Out>{{1, "ok", false}, {2, "01234567", true}, {3, "ok", false}}));
  EXPECT_EQ(frame(inputs[2], 8),
            (std::vector<Out>{{1, "ok", false}, {2, "", false}, {3, "\t\t\t\t\t\t\t\t", true}, {4, "end", false}}));
}

}  // namespace
}  // namespace rapport
