// Crash harness (DESIGN §8): rapportd is killed with SIGKILL at random
// (seeded) moments while a connector streams unit purchases over TCP for 200
// customers, and restarted on the same state dir. The connector behaves like
// a real one: after reconnecting it resends every line not yet acknowledged
// (at-least-once), so duplicates reach the daemon and must be recognised.
//
// After every restart: each customer has at least the events acknowledged
// for it (nothing acked is lost) and at most the distinct events ever sent
// (nothing applied twice). At the end, once everything is acknowledged:
// revenue == events == distinct events sent, and the timeline holds exactly
// those event ids, once each.
//
// Kinds of kill, all SIGKILL: during steady ingest; every third one while the
// daemon drains after SIGTERM (last commits, checkpoint on close); every
// fourth restart is also killed once during start-up (store open and journal
// replay, before the listeners). A kill counts for its phase only if it landed
// there: the daemon's log shows it had entered the phase (and, for start-up,
// had not reached its listeners) and waitpid reports SIGKILL as the cause of
// death; a drain that finished first (exit 0) is a clean restart, a start-up
// that was already listening is tried again. Each phase must be hit at least
// once; rounds are added after the planned kills until it is (bounded). One
// clean restart mid-run makes later kills replay the journal after a
// completed checkpoint.
//
// Knobs (environment): RAPPORT_CRASH_KILLS (default 6; bench/crash_long.sh
// runs >= 100), RAPPORT_CRASH_SEED, RAPPORT_CRASH_MAX_DELAY_MS (longest time
// between restart and kill, default 1200), RAPPORT_CRASH_RATE (events/s the
// connector offers, default 40000).
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "tests/e2e/reliability.h"

namespace rapport::test::reliability {
namespace {

int env_int(const char* name, int fallback) {
  const std::string v = env_or(name, "");
  return v.empty() ? fallback : std::stoi(v);
}

constexpr int kCustomers = 200;
// Log lines that mark the phases (daemon/rapportd_main.cc).
constexpr const char* kStartingLine = " starting; config ";  // logged before the store opens (journal replay)
constexpr const char* kListeningLine = "listening http=";    // start-up is over
constexpr const char* kDrainingLine = "received SIGTERM: draining";
constexpr int kStartupAttempts = 20;    // start-up kills tried per start-up round until one lands before listening
constexpr int kExtraRounds = 20;        // rounds added after the planned kills until every phase has had a kill
constexpr std::size_t kChunk = 250;     // lines per send
constexpr std::size_t kWindow = 20000;  // most lines in flight without an answer

// Checks the stored state against what the connector knows; returns false (after reporting) on a violation.
bool check_bounds(int http_port, const EventBook& book, const std::string& when) {
  const CustomerTotals totals = customer_totals(http_port, book);
  const std::vector<int> acked = book.acked_per_customer();
  const std::vector<int> sent = book.sent_per_customer();
  int violations = 0;
  for (int c = 0; c < kCustomers && violations < 5; ++c) {
    const auto k = static_cast<std::size_t>(c);
    if (totals.revenue[k] < acked[k] || totals.revenue[k] > sent[k] || totals.events[k] != totals.revenue[k]) {
      ++violations;
      ADD_FAILURE() << when << ": customer " << book.customer(c) << " has revenue " << totals.revenue[k] << " and "
                    << totals.events[k] << " events; acknowledged " << acked[k] << ", distinct sent " << sent[k];
    }
  }
  return violations == 0;
}

// With P partitions a kill can land between two partitions' commits of one chunk: the chunk is not
// acknowledged, its resent lines are new in one partition and duplicates in the other.
class Crash : public ::testing::TestWithParam<int> {};

TEST_P(Crash, KillNineAtRandomMomentsLosesAndDuplicatesNothing) {
  const int kills = env_int("RAPPORT_CRASH_KILLS", 6);
  const auto seed = static_cast<unsigned>(env_int("RAPPORT_CRASH_SEED", 424242));
  const int max_delay_ms = std::max(40, env_int("RAPPORT_CRASH_MAX_DELAY_MS", 1200));
  const int rate = std::max(1000, env_int("RAPPORT_CRASH_RATE", 40000));
  std::mt19937 rng(seed);
  std::printf("[ crash ] kills=%d seed=%u max_delay_ms=%d rate=%d/s\n", kills, seed, max_delay_ms, rate);

  TempDir dir;
  EventBook book("k", kCustomers);
  DaemonOptions options;
  options.args = {"--partitions", std::to_string(GetParam())};
  Rapportd daemon(dir.file("state"), options);
  std::size_t next_new = 0;
  // Kills that landed in their phase, and attempts that did not (not counted as kills of that phase).
  int steady_kills = 0, drain_kills = 0, startup_kills = 0;
  int drain_missed = 0, startup_missed = 0;

  for (int round = 0;; ++round) {
    // After the planned kills, rounds go on (at most kExtraRounds) until each phase has had a kill.
    const bool planned_done = round >= kills;
    const bool final_round = planned_done && ((drain_kills > 0 && startup_kills > 0) || round >= kills + kExtraRounds);
    const bool drain_round = round % 3 == 2 || (planned_done && drain_kills == 0);
    const bool startup_round = round % 4 == 3 || (planned_done && startup_kills == 0);
    const std::vector<std::size_t> resend = book.unacked();
    auto session = std::make_unique<AckingSession>(daemon.tcp_port(), book);
    std::atomic<bool> stop{false};
    std::thread sender([&] {
      const auto started = Clock::now();
      std::size_t offered = 0;
      auto send = [&](const std::vector<std::size_t>& chunk) {
        while (!stop && session->lines_sent() > session->answered() + kWindow) {
          std::this_thread::sleep_for(milliseconds(1));
        }
        return !stop && session->send(chunk);
      };
      for (std::size_t i = 0; i < resend.size(); i += kChunk) {
        const std::vector<std::size_t> chunk(
            resend.begin() + static_cast<std::ptrdiff_t>(i),
            resend.begin() + static_cast<std::ptrdiff_t>(std::min(resend.size(), i + kChunk)));
        if (!send(chunk)) return;
      }
      if (final_round) return;
      while (!stop) {
        // Pace new events at `rate` per second so kills land while commits are in flight.
        const auto due = started + std::chrono::microseconds(static_cast<std::int64_t>(offered) * 1'000'000 / rate);
        std::this_thread::sleep_until(due);
        std::vector<std::size_t> chunk(kChunk);
        for (std::size_t k = 0; k < kChunk; ++k) chunk[k] = next_new + k;
        book.ensure(next_new + kChunk);
        next_new += kChunk;
        offered += kChunk;
        if (!send(chunk)) return;
      }
    });
    JoinOnExit join_sender(stop, {&sender});

    if (final_round) {
      sender.join();
      EXPECT_TRUE(session->wait_answered(std::chrono::seconds(120)))
          << "final resend not answered: " << session->answered() << " of " << session->lines_sent();
      EXPECT_TRUE(session->refused_ranges().empty()) << session->refusal_messages().front();
      session.reset();
      break;
    }

    std::uniform_int_distribution<int> delay(20, max_delay_ms);
    std::this_thread::sleep_for(milliseconds(delay(rng)));
    if (drain_round) {
      // A kill while the daemon drains after SIGTERM (final commits, the checkpoint on close). It counts only if
      // the daemon had begun draining (its log says so) and the SIGKILL is what ended it; a daemon that
      // finished draining first exits 0, which is a clean restart, not a drain kill.
      daemon.signal(SIGTERM);
      const bool draining = daemon.wait_log(kDrainingLine, std::chrono::seconds(60));
      if (draining) std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(0, 40)(rng)));
      const int killed = daemon.stop(SIGKILL);
      stop = true;
      sender.join();
      session.reset();
      ASSERT_TRUE(draining) << "rapportd did not log \"" << kDrainingLine << "\" after SIGTERM (exit " << killed
                            << ")\n"
                            << daemon.log_tail();
      ASSERT_TRUE(killed == -SIGKILL || killed == 0) << "rapportd failed while draining (exit " << killed << ")\n"
                                                     << daemon.log_tail();
      ++(killed == -SIGKILL ? drain_kills : drain_missed);
    } else {
      const int killed = daemon.stop(SIGKILL);
      stop = true;
      sender.join();
      session.reset();
      ASSERT_EQ(killed, -SIGKILL) << "rapportd was not running when killed (exit " << killed << ")\n"
                                  << daemon.log_tail();
      ++steady_kills;
    }
    // Start-up rounds also kill the next start-up once, while it opens the store and replays the journal:
    // after it logged that it is starting and before it listens. A kill that came after the listeners were up
    // does not count, and start-up is tried again (a few times per round).
    if (startup_round) {
      for (int attempt = 0; attempt < kStartupAttempts; ++attempt) {
        daemon.spawn();
        const bool starting = daemon.wait_log(kStartingLine, std::chrono::seconds(60));
        if (starting) std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<int>(0, 2)(rng)));
        const int killed = daemon.stop(SIGKILL);
        ASSERT_TRUE(starting) << "rapportd did not log \"" << kStartingLine << "\" (exit " << killed << ")\n"
                              << daemon.log_tail();
        ASSERT_EQ(killed, -SIGKILL) << "rapportd was not running when killed during start-up (exit " << killed << ")\n"
                                    << daemon.log_tail();
        // stop() read the log to its end: the whole log of that run is here.
        if (daemon.log().find(kListeningLine) == std::string::npos) {
          ++startup_kills;
          break;
        }
        ++startup_missed;
      }
    }
    daemon.start();
    const std::string when = "after kill " + std::to_string(round + 1) + " (seed " + std::to_string(seed) + ")";
    ASSERT_TRUE(check_bounds(daemon.http_port(), book, when)) << daemon.log_tail();
    if ((round + 1) % 10 == 0) {
      std::printf("[ crash ] %d kills so far, %zu distinct events\n", round + 1, book.size());
      std::fflush(stdout);
    }
    if (round == kills / 2 && !planned_done) {
      // One clean restart mid-run: later kills must replay the journal after a completed checkpoint.
      ASSERT_EQ(daemon.stop(SIGTERM), 0) << daemon.log_tail();
      daemon.start();
      ASSERT_TRUE(check_bounds(daemon.http_port(), book, when + " and a clean restart")) << daemon.log_tail();
    }
  }

  // Everything is acknowledged now: the state holds each distinct event exactly once.
  ASSERT_TRUE(book.unacked().empty()) << book.unacked().size() << " events never acknowledged";
  const std::vector<int> sent = book.sent_per_customer();
  const CustomerTotals totals = customer_totals(daemon.http_port(), book);
  int bad = 0;
  for (int c = 0; c < kCustomers && bad < 5; ++c) {
    const auto k = static_cast<std::size_t>(c);
    if (totals.revenue[k] != sent[k] || totals.events[k] != sent[k]) {
      ++bad;
      ADD_FAILURE() << book.customer(c) << ": revenue " << totals.revenue[k] << ", events " << totals.events[k]
                    << ", distinct events sent " << sent[k];
    }
  }
  // The timelines hold exactly the events sent, each once (every customer's; every 8th after long runs, where paging
  // through millions of events would dominate the run time).
  const int timeline_step = book.size() <= 300'000 ? 1 : 8;
  for (int c = 0; c < kCustomers && bad < 5; c += timeline_step) {
    std::vector<std::string> ids = timeline_ids(daemon.http_port(), book.customer(c));
    std::sort(ids.begin(), ids.end());
    std::vector<std::string> want;
    for (std::size_t i = static_cast<std::size_t>(c); i < book.size(); i += kCustomers)
      want.push_back("k" + std::to_string(i));
    std::sort(want.begin(), want.end());
    if (ids != want) {
      ++bad;
      ADD_FAILURE() << book.customer(c) << ": timeline has " << ids.size() << " events, want " << want.size()
                    << (std::adjacent_find(ids.begin(), ids.end()) != ids.end() ? " (with duplicates)" : "");
    }
  }
  // A clean restart (checkpoint on close, reopen) keeps the same totals.
  EXPECT_EQ(daemon.stop(SIGTERM), 0) << daemon.log_tail();
  daemon.start();
  const CustomerTotals again = customer_totals(daemon.http_port(), book);
  EXPECT_EQ(again.revenue, totals.revenue);
  std::printf(
      "[ crash ] %d kills during ingest, %d while draining, +%d during start-up; attempts that missed their phase: "
      "%d drains finished first, %d start-ups were already listening; %zu distinct events, %zu acknowledged\n",
      steady_kills, drain_kills, startup_kills, drain_missed, startup_missed, book.size(), book.acked_count());
  // Each kind of kill happened at least once (a test of a phase that was never hit proves nothing about it).
  EXPECT_GT(drain_kills, 0) << "no SIGKILL landed while rapportd was draining (" << drain_missed
                            << " drains finished before the kill)";
  EXPECT_GT(startup_kills, 0) << "no SIGKILL landed during start-up (" << startup_missed
                              << " start-ups were already listening when killed)";
}

INSTANTIATE_TEST_SUITE_P(Partitions, Crash, ::testing::Values(1, 2, 4),
                         [](const auto& param_info) { return "P" + std::to_string(param_info.param); });

}  // namespace
}  // namespace rapport::test::reliability
