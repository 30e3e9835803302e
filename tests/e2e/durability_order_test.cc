// "An acknowledgement means the event is on disk", checked on the real daemon.
//
// rapportd runs with tests/support/io_order_shim.cc preloaded (LD_PRELOAD), which
// logs, in the order they happen, the bytes received and sent on sockets, every
// write to LMDB's data file (with the test's event ids found in it) and every
// sync of that file (fsync/fdatasync/msync, and writes through an O_DSYNC
// descriptor, which return only once on disk). The checker then requires, for
// every {"ack":N} sent to a TCP client and every 200 answer to an HTTP ingest:
// each event it covers was written to data.mdb after it arrived, and a sync of
// data.mdb began after that write and returned before the answer's send began.
//
// With durability = "fsync" every answer passes. With "async" (MDB_NOSYNC) the
// same checker must flag every answer: that proves it can fail (a SIGKILL test
// cannot tell the two apart, as the page cache survives a killed process).
//
// Sanitizer builds: the ASan/TSan runtime must be the first preloaded library,
// so the test preloads the runtime this test binary itself runs with (found in
// /proc/self/maps), then the shim (which is built without sanitizers).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/e2e/reliability.h"

namespace rapport::test::reliability {
namespace {

constexpr const char* kMark = "ackd-";    // event ids: "ackd-" and 6 digits
constexpr std::size_t kMarkedIdLen = 11;  // the whole id

std::string marked_id(std::size_t i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "ackd-%06zu", i);
  return buf;
}

// ---------------------------------------------------------------------------
// The shim's log

struct IoOp {
  std::uint64_t before = 0, after = 0;  // the shim's counter just before the call and just after it returned
  char kind = 0;                        // A accept, R received, S sent, W data.mdb write, Y data.mdb sync
  int fd = -1;
  std::string bytes;               // R, S: the bytes
  std::vector<std::string> marks;  // W: the marked event ids in the written bytes
  bool dsync = false;              // W: through an O_DSYNC/O_SYNC descriptor (durable on return)
  unsigned long inode = 0;         // W, Y: which data.mdb (one per partition)
};

std::string unhex(std::string_view hex) {
  std::string out;
  out.reserve(hex.size() / 2);
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  return out;
}

std::vector<IoOp> read_io_log(const std::string& path) {
  std::vector<IoOp> ops;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    IoOp op;
    long tid = 0;
    std::string payload;
    if (!(fields >> op.before >> op.after >> op.kind >> op.fd >> tid >> payload)) {
      throw std::runtime_error("unreadable record in the I/O log: " + line.substr(0, 200));
    }
    if (op.kind == 'R' || op.kind == 'S') {
      op.bytes = unhex(payload);
    } else if (op.kind == 'Y') {
      const auto at = payload.rfind('@');
      if (at != std::string::npos) op.inode = std::stoul(payload.substr(at + 1));
    } else if (op.kind == 'W') {
      const auto colon = payload.find(':');
      const std::string head = payload.substr(0, colon);  // "dsync@<inode>" or "plain@<inode>"
      const auto at = head.find('@');
      op.dsync = head.substr(0, at) == "dsync";
      if (at != std::string::npos) op.inode = std::stoul(head.substr(at + 1));
      std::string rest = colon == std::string::npos ? "" : payload.substr(colon + 1);
      std::size_t pos = 0;
      while (pos < rest.size()) {
        const auto comma = std::min(rest.find(',', pos), rest.size());
        op.marks.push_back(unhex(std::string_view(rest).substr(pos, comma - pos)));
        pos = comma + 1;
      }
    }
    ops.push_back(std::move(op));
  }
  std::sort(ops.begin(), ops.end(), [](const IoOp& a, const IoOp& b) { return a.before < b.before; });
  return ops;
}

// ---------------------------------------------------------------------------
// The check

// One answer that acknowledges events: when its send began and, for each event, when it had fully arrived.
struct Answer {
  std::string what;  // for messages: "tcp {"ack":40}" or "http 200 on fd 12 (request 1)"
  std::uint64_t send_begin = 0;
  std::vector<std::pair<std::string, std::uint64_t>> events;  // id, arrival (counter after the recv that completed it)
};

std::vector<std::string> event_ids_in(std::string_view text) {
  std::vector<std::string> ids;
  const std::string_view key = "\"event_id\":\"";
  for (std::size_t pos = text.find(key); pos != std::string_view::npos; pos = text.find(key, pos)) {
    pos += key.size();
    const auto end = text.find('"', pos);
    if (end == std::string_view::npos) break;
    ids.emplace_back(text.substr(pos, end - pos));
    pos = end;
  }
  return ids;
}

// One accepted connection, rebuilt from its R and S records.
struct Connection {
  std::string in, out;
  std::vector<std::pair<std::size_t, std::uint64_t>> sends;  // per S record: its first byte's offset in `out`, begin
  // TCP NDJSON: per complete line, its event ids and arrival; acknowledged lines so far.
  std::vector<std::pair<std::vector<std::string>, std::uint64_t>> lines;
  std::size_t lines_scanned_to = 0, acked_lines = 0;
  std::size_t out_scanned_to = 0;  // `out` before this offset holds no unparsed ack
  // HTTP: complete requests not answered yet (events, arrival), bytes of `in` consumed by parsed requests.
  std::vector<std::pair<std::vector<std::string>, std::uint64_t>> requests;
  std::size_t in_consumed = 0;
  int answered = 0;
};

// Every acknowledging answer in the log: {"ack":N} lines on NDJSON connections, "HTTP/1.1 200" answers to
// POST /v1/events on HTTP connections.
std::vector<Answer> answers_in(const std::vector<IoOp>& ops) {
  std::vector<Answer> answers;
  std::map<int, Connection> conns;
  for (const IoOp& op : ops) {
    if (op.kind == 'A') {
      conns[op.fd] = Connection{};
      continue;
    }
    if (op.kind != 'R' && op.kind != 'S') continue;
    const auto it = conns.find(op.fd);
    if (it == conns.end()) continue;  // not an accepted connection (the daemon's own sockets)
    Connection& c = it->second;
    const bool http =
        c.in.rfind("POST ", 0) == 0 || c.in.rfind("GET ", 0) == 0 ||
        (op.kind == 'R' && c.in.empty() && (op.bytes.rfind("POST ", 0) == 0 || op.bytes.rfind("GET ", 0) == 0));
    if (op.kind == 'R') {
      c.in += op.bytes;
      if (!http) {
        for (auto nl = c.in.find('\n', c.lines_scanned_to); nl != std::string::npos;
             nl = c.in.find('\n', c.lines_scanned_to)) {
          c.lines.emplace_back(event_ids_in(std::string_view(c.in).substr(c.lines_scanned_to, nl - c.lines_scanned_to)),
                               op.after);
          c.lines_scanned_to = nl + 1;
        }
      } else {
        for (;;) {
          const auto head_end = c.in.find("\r\n\r\n", c.in_consumed);
          if (head_end == std::string::npos) break;
          const std::string head = c.in.substr(c.in_consumed, head_end - c.in_consumed);
          std::string lower = head;
          std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
          const auto cl = lower.find("content-length:");
          const std::size_t length = cl == std::string::npos ? 0 : std::stoul(head.substr(cl + 15));
          if (c.in.size() < head_end + 4 + length) break;
          const std::string body = c.in.substr(head_end + 4, length);
          c.requests.emplace_back(
              head.rfind("POST /v1/events", 0) == 0 ? event_ids_in(body) : std::vector<std::string>{}, op.after);
          c.in_consumed = head_end + 4 + length;
        }
      }
      continue;
    }
    // S: an answer's send began with the send holding its first byte.
    c.sends.emplace_back(c.out.size(), op.before);
    c.out += op.bytes;
    auto send_holding = [&](std::size_t offset) {
      auto s = std::upper_bound(c.sends.begin(), c.sends.end(), std::make_pair(offset, UINT64_MAX));
      return std::prev(s)->second;
    };
    if (!http) {
      for (std::size_t pos = c.out.find("{\"ack\":", c.out_scanned_to); pos != std::string::npos;
           pos = c.out.find("{\"ack\":", c.out_scanned_to)) {
        const auto end = c.out.find('}', pos);
        if (end == std::string::npos) break;  // the rest of this ack comes with a later send
        c.out_scanned_to = end + 1;
        const std::size_t n = std::stoul(c.out.substr(pos + 7, end - pos - 7));
        Answer a;
        a.what = "tcp " + c.out.substr(pos, end + 1 - pos);
        a.send_begin = send_holding(pos);
        for (std::size_t l = c.acked_lines; l < n && l < c.lines.size(); ++l) {
          for (const std::string& id : c.lines[l].first) a.events.emplace_back(id, c.lines[l].second);
        }
        c.acked_lines = std::max(c.acked_lines, n);
        if (!a.events.empty()) answers.push_back(std::move(a));
      }
    } else if (op.bytes.rfind("HTTP/1.1 ", 0) == 0 && op.bytes.rfind("HTTP/1.1 1", 0) != 0 && !c.requests.empty()) {
      const auto request = c.requests.front();
      c.requests.erase(c.requests.begin());
      ++c.answered;
      if (op.bytes.rfind("HTTP/1.1 200", 0) == 0 && !request.first.empty()) {
        Answer a;
        a.what = "http 200 on fd " + std::to_string(op.fd) + " (request " + std::to_string(c.answered) + ")";
        a.send_begin = op.before;
        for (const std::string& id : request.first) a.events.emplace_back(id, request.second);
        answers.push_back(std::move(a));
      }
    }
  }
  return answers;
}

struct Verdict {
  int data_writes = 0, syncs = 0, dsync_writes = 0;  // what the shim saw of data.mdb
  int tcp_answers = 0, http_answers = 0;
  std::vector<std::string> violations;  // one per answer that came too early
};

Verdict check_acks_follow_syncs(const std::vector<IoOp>& ops) {
  // event id -> (end, file) of the data.mdb writes holding it
  std::map<std::string, std::vector<std::pair<std::uint64_t, unsigned long>>> written;
  struct Sync {
    std::uint64_t began, returned;
    unsigned long inode;
  };
  std::vector<Sync> syncs;  // of a data.mdb file (each partition has its own)
  for (const IoOp& op : ops) {
    if (op.kind == 'W') {
      for (const std::string& m : op.marks) written[m].emplace_back(op.after, op.inode);
      if (op.dsync) syncs.push_back(Sync{op.before, op.after, op.inode});
    } else if (op.kind == 'Y') {
      syncs.push_back(Sync{op.before, op.after, op.inode});
    }
  }
  Verdict v;
  for (const IoOp& op : ops) {
    v.data_writes += op.kind == 'W';
    v.syncs += op.kind == 'Y';
    v.dsync_writes += op.kind == 'W' && op.dsync;
  }
  for (const Answer& a : answers_in(ops)) {
    (a.what.rfind("tcp", 0) == 0 ? v.tcp_answers : v.http_answers)++;
    std::string problem;
    for (const auto& [id, arrived] : a.events) {
      // The first write of the event to a data.mdb after it arrived, before the answer.
      std::optional<std::uint64_t> write_end;
      unsigned long file = 0;
      for (const auto& [w, inode] : written[id]) {
        if (w > arrived && w < a.send_begin && (!write_end || w < *write_end)) {
          write_end = w;
          file = inode;
        }
      }
      if (!write_end) {
        problem = "event " + id + " had not been written to data.mdb";
        break;
      }
      // ... and a sync of that same file (its partition's) between the write and the answer.
      const bool synced = std::any_of(syncs.begin(), syncs.end(), [&](const Sync& s) {
        return s.inode == file && s.began > *write_end && s.returned < a.send_begin;
      });
      if (!synced) {
        problem = "no sync of its data.mdb (inode " + std::to_string(file) + ") began after event " + id +
                  " was written (at " + std::to_string(*write_end) + ") and returned before the answer";
        break;
      }
    }
    if (!problem.empty()) {
      v.violations.push_back(a.what + " sent (at " + std::to_string(a.send_begin) + ") although " + problem);
    }
  }
  return v;
}

// ---------------------------------------------------------------------------
// Running rapportd under the shim

// The sanitizer runtime this test binary runs with ("" in a plain build): it must come first in LD_PRELOAD.
std::string sanitizer_runtime() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    for (const char* lib : {"/libasan.so", "/libtsan.so"}) {
      const auto at = line.find(lib);
      const auto path = line.find('/');
      if (at != std::string::npos && path != std::string::npos) return line.substr(path);
    }
  }
  return "";
}

Verdict ingest_and_check(const std::string& durability, int partitions) {
  TempDir dir;
  const std::string io_log = dir.file("io.log");
  const std::string runtime = sanitizer_runtime();
  DaemonOptions options;
  options.args = {"--durability", durability, "--partitions", std::to_string(partitions)};
  const std::vector<std::string> env = {"LD_PRELOAD=" + (runtime.empty() ? "" : runtime + " ") + RAPPORT_IO_ORDER_SHIM,
                                        "RAPPORT_IO_LOG=" + io_log, std::string("RAPPORT_IO_MARK=") + kMark,
                                        "RAPPORT_IO_MARK_LEN=" + std::to_string(kMarkedIdLen)};
  Rapportd daemon(dir.file("state"), options, env);
  std::printf("[ durability ] %s, %d partition(s), LD_PRELOAD=%s\n", durability.c_str(), partitions,
              ((runtime.empty() ? "" : runtime + " ") + RAPPORT_IO_ORDER_SHIM).c_str());

  std::size_t next = 0;
  auto line = [&](std::size_t i) { return unit_purchase(marked_id(i), "dc" + std::to_string(i % 17)) + "\n"; };
  // TCP: small chunks each waited for (one commit each), then a pipelined burst (group commits).
  LineSocket tcp(daemon.tcp_port());
  std::size_t sent_lines = 0;
  auto wait_ack = [&](std::size_t n) {
    for (;;) {
      const auto l = tcp.read_line(std::chrono::seconds(60 * kTimeScale));
      if (!l) throw std::runtime_error("no ack for line " + std::to_string(n));
      if (l->rfind("{\"ack\":", 0) == 0 && std::stoul(l->substr(7)) >= n) return;
    }
  };
  for (int round = 0; round < 30; ++round) {
    std::string chunk;
    for (int k = 0; k < 5; ++k) chunk += line(next++);
    if (!tcp.send(chunk)) throw std::runtime_error("TCP send failed");
    sent_lines += 5;
    wait_ack(sent_lines);
  }
  for (int round = 0; round < 20; ++round) {
    std::string chunk;
    for (int k = 0; k < 100; ++k) chunk += line(next++);
    if (!tcp.send(chunk)) throw std::runtime_error("TCP send failed");
    sent_lines += 100;
  }
  wait_ack(sent_lines);
  // HTTP: NDJSON batches, one request per connection.
  for (int request = 0; request < 10; ++request) {
    std::string body;
    for (int k = 0; k < 3; ++k) body += line(next++);
    const auto r = http(daemon.http_port(), "POST", "/v1/events", body, "application/x-ndjson");
    if (r.status != 200) throw std::runtime_error("HTTP ingest: " + std::to_string(r.status) + " " + r.body);
  }
  if (daemon.stop(SIGTERM) != 0) throw std::runtime_error("rapportd did not stop cleanly: " + daemon.log_tail());
  return check_acks_follow_syncs(read_io_log(io_log));
}

// Each answer must wait for the sync of every partition's data.mdb holding one of its events.
class DurabilityOrder : public ::testing::TestWithParam<int> {};

TEST_P(DurabilityOrder, FsyncAnswersOnlyAfterTheSyncThatCoversTheirEvents) {
  const Verdict v = ingest_and_check("fsync", GetParam());
  std::printf(
      "[ durability ] fsync: data.mdb written %d times, %d fsync/fdatasync, %d O_DSYNC writes; %d TCP acks and %d "
      "HTTP 200s checked, %zu too early\n",
      v.data_writes, v.syncs, v.dsync_writes, v.tcp_answers, v.http_answers, v.violations.size());
  EXPECT_GE(v.tcp_answers, 31);  // 30 waited-for chunks and at least one ack of the burst
  EXPECT_EQ(v.http_answers, 10);
  for (std::size_t i = 0; i < v.violations.size() && i < 5; ++i) ADD_FAILURE() << v.violations[i];
}

// The same check must fail when acknowledgements do not wait for a sync: durability = "async" (MDB_NOSYNC).
TEST_P(DurabilityOrder, TheCheckCatchesAsyncAnsweringBeforeAnySync) {
  const Verdict v = ingest_and_check("async", GetParam());
  std::printf(
      "[ durability ] async: data.mdb written %d times, %d fsync/fdatasync, %d O_DSYNC writes; %d TCP acks and %d "
      "HTTP 200s checked, %zu flagged as too early\n",
      v.data_writes, v.syncs, v.dsync_writes, v.tcp_answers, v.http_answers, v.violations.size());
  if (!v.violations.empty()) std::printf("[ durability ] e.g. %s\n", v.violations.front().c_str());
  EXPECT_GE(v.tcp_answers, 31);
  EXPECT_EQ(v.http_answers, 10);
  EXPECT_EQ(v.violations.size(), static_cast<std::size_t>(v.tcp_answers + v.http_answers))
      << "with MDB_NOSYNC no answer is preceded by a sync of data.mdb, so the checker must flag every one";
}

INSTANTIATE_TEST_SUITE_P(Partitions, DurabilityOrder, ::testing::Values(1, 2, 4),
                         [](const auto& param_info) { return "P" + std::to_string(param_info.param); });

}  // namespace
}  // namespace rapport::test::reliability
