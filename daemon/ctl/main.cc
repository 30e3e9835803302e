// rapportctl: Rapport's admin CLI (argument parsing; each subcommand group lives in its own file here).
//   rapportctl import FILE... --state-dir DIR   NDJSON through the same framing, decoder and store as rapportd
//   rapportctl get CUSTOMER_ID [--explain]      (--state-dir DIR or --url http://127.0.0.1:8470)
//   rapportctl top --by METRIC -n N [--tier T]  (state dir or --url)
//   rapportctl tiers | fit [--save] | erase ID | deadletter list|replay   (state dir or --url)
//   rapportctl backtest --calibration-end D1 --holdout-end D2 [--json] [--plot FILE.png]  (state dir or --url)
//   rapportctl changes [--follow] [--after C]   (--url): the change feed as NDJSON
//   rapportctl merge ID ID2... | unmerge ID ID2... | aliases ID   (--url): identity merges
//   rapportctl backup DEST | restore SRC        (state dir)
//   rapportctl migrate --partitions N           (stopped state dir)
//   rapportctl generate [--model mix|bgnbd] --customers N [--events M | --r R --alpha A ...] [--seed S]
// Works on a state dir while rapportd has it open (LMDB is multi-process).
// Exit codes: 0 ok, 1 not found / partial, 2 usage or fatal error.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "daemon/ctl/admin.h"
#include "daemon/ctl/alerts.h"
#include "daemon/ctl/backtest.h"
#include "daemon/ctl/backup.h"
#include "daemon/ctl/changes.h"
#include "daemon/ctl/common.h"
#include "daemon/ctl/identity.h"
#include "daemon/ctl/import.h"
#include "daemon/ctl/migrate.h"
#include "daemon/ctl/query.h"
#include "daemon/generator.h"
#include "daemon/value_generator.h"

#ifndef RAPPORT_VERSION
#define RAPPORT_VERSION "0.0.0"
#endif

namespace {

// --url / --token / --ca-file / --state-dir / --config / --timeout on a subcommand.
void add_target_options(CLI::App* sub, rapport::CtlTarget& target, bool url, bool state_dir = true) {
  CLI::Option* url_opt = nullptr;
  if (url) {
    url_opt = sub->add_option("--url", target.url,
                              "Talk to a running rapportd over HTTP or HTTPS, e.g. http://127.0.0.1:8470 or "
                              "https://rapport.example:8470 (not a state dir)");
    sub->add_option("--token", target.token, "Bearer token for --url (default: $RAPPORT_TOKEN)")
        ->envname("RAPPORT_TOKEN");
    sub->add_option("--ca-file", target.ca_file,
                    "For an https:// --url: PEM file of the CA certificate(s) to trust instead of the system's, e.g. "
                    "rapportd's own self-signed certificate");
    sub->add_option("--timeout", target.timeout_s, "HTTP timeout in seconds for --url (default 30; fit 600)")
        ->check(CLI::PositiveNumber);
  }
  if (state_dir) {
    auto* dir = sub->add_option("--state-dir", target.state_dir,
                                "State directory (default: the config's, ./var/rapport); works beside a running "
                                "rapportd");
    if (url_opt != nullptr) dir->excludes(url_opt);
  }
  sub->add_option("-c,--config", target.config_path, "rapportd TOML config (weights, value settings, limits)");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "rapportctl — Rapport's admin CLI: import, inspect, rank, fit, backtest, erase, dead letters, backup, "
      "restore and migrate (re-partition).\n"
      "Works on a state dir (beside a running rapportd: LMDB is multi-process) or, with --url, against a "
      "running daemon.\nExit codes: 0 ok, 1 not found / partial, 2 usage or fatal error."};
  app.require_subcommand(1);
  app.set_version_flag("-V,--version", std::string("rapportctl ") + RAPPORT_VERSION);
  app.failure_message(
      [](const CLI::App* a, const CLI::Error& e) { return "rapportctl: " + CLI::FailureMessage::simple(a, e); });

  rapport::ImportOptions import;
  auto* imp = app.add_subcommand("import",
                                 "Import NDJSON event files ('-' = stdin) into a state dir, framed into lines "
                                 "as the TCP front does. Every file is opened first: if one cannot be, nothing is "
                                 "imported. Exit 0 = all lines stored, 1 = some lines rejected (kept as dead "
                                 "letters), 2 = fatal error");
  imp->add_option("files", import.files, "NDJSON files, '-' for standard input; imported in this order")->required();
  imp->add_option("--state-dir", import.state_dir, "State directory (default ./var/rapport)");
  imp->add_option("-c,--config", import.config_path, "rapportd TOML config (scoring weights, costs, limits)");
  imp->add_option("--batch", import.batch, "Events per commit (default 50000)")->check(CLI::Range(1, 10'000'000));
  imp->add_flag("--async", import.async, "Commit without fsync (faster; a machine crash may lose the import)");
  imp->add_flag("-q,--quiet", import.quiet, "No progress bar");

  std::vector<std::string> get_ids;
  rapport::CtlTarget get_target;
  bool explain = false;
  auto* get = app.add_subcommand(
      "get", "Print customers' scores as JSON, one line each in the order given (exit 1 if any is unknown)");
  get->add_option("customer_id", get_ids,
                  "Customer ids; with --url, several are read with POST /v1/customers:batchGet (1000 per request)")
      ->required();
  add_target_options(get, get_target, /*url=*/true);
  get->add_flag("--explain", explain, "Include the components and inputs behind every score");

  rapport::CtlTarget top_target;
  rapport::TopOptions top_options;
  auto* top = app.add_subcommand(
      "top",
      "The N customers with the highest value of a metric, ties by id. State dir: scans every customer. "
      "--url: pages through the daemon's GET /v1/customers?tier=T&order=M for --tier T, or for each tier, "
      "and merges them into the same order (clv, churn_risk, satisfaction, loyalty only; no --as-of)");
  top->add_option("--by", top_options.by,
                  "Metric: clv (default), churn_risk, p_alive, profit_12m, revenue, satisfaction, loyalty (--url: clv, "
                  "churn_risk, satisfaction, loyalty)")
      ->check(CLI::IsMember({"clv", "churn_risk", "p_alive", "profit_12m", "revenue", "satisfaction", "loyalty"}));
  top->add_option("-n", top_options.n, "How many customers (default 10)")->check(CLI::Range(1, 10'000'000));
  top->add_option("--tier", top_options.tier, "Only customers of this tier: platinum, gold, iron, lead, unranked")
      ->check(CLI::IsMember({"platinum", "gold", "iron", "lead", "unranked"}));
  top->add_option("--as-of", top_options.as_of,
                  "Evaluate as of YYYY-MM-DD or RFC 3339 time (default now; state dir only)");
  top->add_flag("--json", top_options.json, "JSON instead of a table");
  add_target_options(top, top_target, /*url=*/true);

  rapport::CtlTarget tiers_target;
  bool tiers_json = false;
  auto* tiers = app.add_subcommand("tiers",
                                   "Customers per tier at the last fit, the CLV thresholds and fractions "
                                   "(exit 1 before the first fit)");
  tiers->add_flag("--json", tiers_json, "JSON (the shape of GET /v1/tiers) instead of a table");
  add_target_options(tiers, tiers_target, /*url=*/true);

  rapport::CtlTarget fit_target;
  rapport::FitOptions fit_options;
  auto* fit = app.add_subcommand("fit",
                                 "Fit the value model (BG/NBD + Gamma-Gamma) over every customer and print it "
                                 "as JSON; with --url the daemon fits, stores and uses it");
  fit->add_option("--as-of", fit_options.as_of,
                  "Fit as of YYYY-MM-DD or RFC 3339 time: T and t_x measured then, later events ignored (default now)");
  fit->add_flag("--save", fit_options.save,
                "State dir: store the model and tier counts (meta value_model / value_tier_counts) for rapportd, "
                "tiers and top");
  add_target_options(fit, fit_target, /*url=*/true);

  rapport::CtlTarget backtest_target;
  rapport::BacktestOptions backtest_options;
  auto* backtest = app.add_subcommand(
      "backtest",
      "Check the value model on your data: fit it as of --calibration-end exactly as fit --as-of does, predict "
      "every customer's repeat transactions and spend up to --holdout-end (the BG/NBD conditional expectation "
      "given x, t_x and T, the Gamma-Gamma mean spend) and compare with what they did: totals, mean absolute "
      "error per customer, the conditional-expectations table (customers by repeat transactions in the "
      "calibration, 0..7+) and the weekly cumulative repeat transactions (the tracking curve). With --url the "
      "daemon computes it (POST /v1/model:backtest, admin token). Exit 2 on bad dates, a holdout that does not "
      "end after the calibration or has no purchase, or a failed fit or plot");
  backtest
      ->add_option("--calibration-end", backtest_options.calibration_end,
                   "Last day of the calibration, YYYY-MM-DD or RFC 3339 (its purchases count)")
      ->required();
  backtest
      ->add_option("--holdout-end", backtest_options.holdout_end,
                   "Last day of the holdout, YYYY-MM-DD or RFC 3339: a later day than --calibration-end, not in "
                   "the future")
      ->required();
  backtest->add_flag("--json", backtest_options.json, "The JSON of POST /v1/model:backtest instead of tables");
  backtest->add_option("--plot", backtest_options.plot,
                       "Also draw the tracking curve and the conditional expectations into this PNG (needs gnuplot: "
                       "Debian package gnuplot-nox)");
  add_target_options(backtest, backtest_target, /*url=*/true);

  rapport::CtlTarget erase_target;
  std::string erase_id;
  auto* erase = app.add_subcommand(
      "erase",
      "Erase a customer's state, events and dedup keys (exit 1 if unknown; in Kafka mode only with --url, "
      "so the owner publishes the tombstone)");
  erase->add_option("customer_id", erase_id, "Customer id")->required();
  add_target_options(erase, erase_target, /*url=*/true);

  rapport::CtlTarget identity_target;
  std::string identity_id;
  std::vector<std::string> identity_ids;
  auto* merge = app.add_subcommand(
      "merge",
      "Merge customers into one (--url, admin token): ID keeps its id and gets every event of the others, which "
      "resolve to it from then on (reads and later events). Refused: blocked ids ([identity] blocked_ids), more "
      "than [identity] max_aliases aliases, cycles. Prints the group as JSON");
  merge->add_option("customer_id", identity_id, "The survivor")->required();
  merge->add_option("ids", identity_ids, "The ids to merge into it")->required();
  auto* unmerge = app.add_subcommand(
      "unmerge",
      "Give aliases back (--url, admin token): each gets every event sent as it, before or after the merge, "
      "replayed from the journal; the survivor keeps the rest. Prints the group left as JSON");
  unmerge->add_option("customer_id", identity_id, "The survivor")->required();
  unmerge->add_option("ids", identity_ids, "Its aliases to give back")->required();
  auto* aliases = app.add_subcommand(
      "aliases", "Print a customer's group as JSON (--url): its survivor and aliases; resolved_from for an alias");
  aliases->add_option("customer_id", identity_id, "A survivor or an alias")->required();
  for (auto* sub : {merge, unmerge, aliases})
    add_target_options(sub, identity_target, /*url=*/true, /*state_dir=*/false);

  rapport::CtlTarget changes_target;
  rapport::ChangesOptions changes_options;
  auto* changes = app.add_subcommand(
      "changes",
      "Print the change feed of a running rapportd (--url) as NDJSON: each customer whose scores changed after the "
      "cursor, once, in change order; a tombstone {\"deleted\":true} for an erased one. After each answer "
      "\"next_cursor C\" goes to stderr");
  changes->add_option("--after", changes_options.after, "Start after this next_cursor (default: from the start)");
  changes->add_flag("--follow", changes_options.follow, "Keep following: long-poll for new changes until interrupted");
  add_target_options(changes, changes_target, /*url=*/true, /*state_dir=*/false);

  rapport::CtlTarget dl_target;
  rapport::DeadLetterOptions dl_options;
  auto* deadletter = app.add_subcommand("deadletter", "List or replay rejected items kept in the dead-letter store");
  deadletter->require_subcommand(1);
  auto* dl_list = deadletter->add_subcommand("list", "Print dead letters as JSON lines, oldest first");
  auto* dl_replay = deadletter->add_subcommand(
      "replay",
      "Re-submit dead letters (e.g. after a config fix); those accepted or duplicate are removed, still "
      "invalid ones stay and are reported (exit 1). With --url they are POSTed to the daemon's "
      "/v1/events?deadletter=false (still-invalid ones are not stored again) and the replayed ones removed with "
      "POST /v1/deadletter:remove (admin token)");
  for (auto* sub : {dl_list, dl_replay}) {
    sub->add_option("--after", dl_options.after, "Start after this sequence number (default 0)");
    sub->add_option("--limit", dl_options.limit, "At most this many letters (default 0 = all)");
    add_target_options(sub, dl_target, /*url=*/true);
  }

  rapport::CtlTarget alerts_target;
  rapport::AlertsListOptions alerts_list_options;
  std::vector<std::string> alerts_ids;
  auto* alerts = app.add_subcommand("alerts", "List or replay alert webhook deliveries kept in a state dir's outbox");
  alerts->require_subcommand(1);
  auto* alerts_list = alerts->add_subcommand(
      "list",
      "Print dead alert deliveries (given up after alert_delivery.retry_for_s, a 410, or a removed alert) "
      "as JSON lines: id, alert, customer_id, event_id, at");
  alerts_list->add_flag("--pending", alerts_list_options.pending, "List undelivered deliveries instead");
  add_target_options(alerts_list, alerts_target, /*url=*/false);
  auto* alerts_replay = alerts->add_subcommand(
      "replay", "Move dead deliveries back to the outbox (same id); a running rapportd sends them again");
  alerts_replay->add_option("ids", alerts_ids, "Delivery ids as alerts list shows them (default: every dead one)");
  add_target_options(alerts_replay, alerts_target, /*url=*/false);

  rapport::CtlTarget backup_target;
  std::string backup_dest;
  bool backup_quiet = false;
  auto* backup = app.add_subcommand("backup",
                                    "Hot, compacted copy of a state dir (safe while rapportd runs) into "
                                    "DEST, which must not exist or be empty");
  backup->add_option("destination", backup_dest, "Backup directory (created; must be empty)")->required();
  backup->add_flag("-q,--quiet", backup_quiet, "No progress display");
  add_target_options(backup, backup_target, /*url=*/false);

  rapport::CtlTarget restore_target;
  std::string restore_src;
  bool restore_force = false;
  auto* restore = app.add_subcommand("restore",
                                     "Copy a backup into --state-dir. Stop rapportd first: a state dir "
                                     "in use is refused");
  restore->add_option("source", restore_src, "Backup directory made by `rapportctl backup`")->required();
  restore->add_flag("--force", restore_force, "Replace the data of a state dir that is not empty");
  add_target_options(restore, restore_target, /*url=*/false);

  rapport::CtlTarget migrate_target;
  std::uint32_t migrate_partitions = 0;
  bool migrate_quiet = false;
  auto* migrate = app.add_subcommand(
      "migrate",
      "Re-partition a state dir into N partitions (storage.partitions). Stop rapportd first. Builds the new layout "
      "in <state dir>/migrate, verifies every count and customer, then moves it into place; progress on stderr. "
      "If it is interrupted (even by kill -9), run the same command again: it goes on where it stopped, and "
      "rapportd refuses the dir until it has finished");
  migrate->add_option("--partitions", migrate_partitions, "Number of partitions of the new layout")
      ->required()
      ->check(CLI::Range(1u, rapport::kMaxPartitions));
  migrate->add_flag("-q,--quiet", migrate_quiet, "No progress lines");
  add_target_options(migrate, migrate_target, /*url=*/false);

  rapport::GenerateOptions gen;
  rapport::ValueModelOptions gen_model;
  auto* generate = app.add_subcommand(
      "generate",
      "Write synthetic NDJSON events to standard output. --model mix (the default): a mix of every event type "
      "over Zipf-skewed customers, with late and duplicate lines, for load tests. --model bgnbd: customers who "
      "follow the value model (BG/NBD purchases with dropout, Gamma-Gamma spend) with interactions whose "
      "sentiment, csat, nps and ratings follow a per-customer satisfaction, for demos and fits; customer by "
      "customer, a summary on standard error. Same seed, same output");
  generate->add_option("--model", gen_model.model, "mix (default) or bgnbd")->check(CLI::IsMember({"mix", "bgnbd"}));
  generate->add_option("--customers", gen.customers, "Distinct customers (default 1000)")
      ->check(CLI::Range(1, 1'000'000'000));
  generate->add_option("--seed", gen.seed, "Random seed (default 1); same seed, same output");
  generate->add_option("--end-ms", gen.end_ms, "Latest timestamp, epoch ms (default now - 1 h)");
  generate
      ->add_option("--span-days", gen.span_days,
                   "Days before --end-ms that the events (mix) or first purchases (bgnbd) spread over (default "
                   "730)")
      ->check(CLI::Range(1, 36'500));
  const auto mix_only = [&](const char* flag) {
    return [&gen_model, flag](const std::string&) { gen_model.mix_only_flags.emplace_back(flag); };
  };
  const auto bgnbd_only = [&](const char* flag) {
    return [&gen_model, flag](const std::string&) { gen_model.bgnbd_only_flags.emplace_back(flag); };
  };
  generate->add_option("--events", gen.events, "mix: lines to write, duplicates included (default 10000)")
      ->each(mix_only("--events"));
  generate->add_option("--zipf", gen.zipf_exponent, "mix: customer skew exponent (default 1.1)")
      ->check(CLI::Range(0.0, 5.0))
      ->each(mix_only("--zipf"));
  generate->add_option("--late", gen.late_fraction, "mix: fraction of late events (default 0.02)")
      ->check(CLI::Range(0.0, 1.0))
      ->each(mix_only("--late"));
  generate->add_option("--duplicates", gen.duplicate_fraction, "mix: fraction of repeated lines (default 0.01)")
      ->check(CLI::Range(0.0, 1.0))
      ->each(mix_only("--duplicates"));
  generate->add_option("--r", gen_model.bgnbd.r, "bgnbd: shape of the purchase-rate Gamma (default 0.243, CDNOW)")
      ->check(CLI::PositiveNumber)
      ->each(bgnbd_only("--r"));
  generate
      ->add_option("--alpha", gen_model.bgnbd.alpha,
                   "bgnbd: rate parameter of the purchase-rate Gamma, in days (default 30.898 = CDNOW's 4.414 "
                   "weeks)")
      ->check(CLI::PositiveNumber)
      ->each(bgnbd_only("--alpha"));
  generate->add_option("--a", gen_model.bgnbd.a, "bgnbd: dropout Beta a (default 0.793, CDNOW)")
      ->check(CLI::PositiveNumber)
      ->each(bgnbd_only("--a"));
  generate->add_option("--b", gen_model.bgnbd.b, "bgnbd: dropout Beta b (default 2.426, CDNOW)")
      ->check(CLI::PositiveNumber)
      ->each(bgnbd_only("--b"));
  generate->add_option("--p", gen_model.spend.p, "bgnbd: spend shape per transaction (default 6.25, CDNOW)")
      ->check(CLI::PositiveNumber)
      ->each(bgnbd_only("--p"));
  generate->add_option("--q", gen_model.spend.q, "bgnbd: shape of the spend-rate Gamma (default 3.74, CDNOW)")
      ->check(CLI::PositiveNumber)
      ->each(bgnbd_only("--q"));
  generate->add_option("--gamma", gen_model.spend.gamma, "bgnbd: rate of the spend-rate Gamma (default 15.44, CDNOW)")
      ->check(CLI::PositiveNumber)
      ->each(bgnbd_only("--gamma"));
  generate
      ->add_option("--interactions", gen_model.interactions,
                   "bgnbd: scale of the non-purchase interaction rates (default 1; 0 = purchases only)")
      ->check(CLI::Range(0.0, 100.0))
      ->each(bgnbd_only("--interactions"));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : rapport::kExitFatal;
  }
  if (*imp) return rapport::ctl_import(import);
  if (*get) return rapport::ctl_get(get_target, get_ids, explain);
  if (*top) return rapport::ctl_top(top_target, top_options);
  if (*tiers) return rapport::ctl_tiers(tiers_target, tiers_json);
  if (*fit) return rapport::ctl_fit(fit_target, fit_options);
  if (*backtest) return rapport::ctl_backtest(backtest_target, backtest_options);
  if (*erase) return rapport::ctl_erase(erase_target, erase_id);
  if (*merge) return rapport::ctl_merge(identity_target, identity_id, identity_ids);
  if (*unmerge) return rapport::ctl_unmerge(identity_target, identity_id, identity_ids);
  if (*aliases) return rapport::ctl_aliases(identity_target, identity_id);
  if (*alerts_list) return rapport::ctl_alerts_list(alerts_target, alerts_list_options);
  if (*alerts_replay) return rapport::ctl_alerts_replay(alerts_target, alerts_ids);
  if (*changes) return rapport::ctl_changes(changes_target, changes_options);
  if (*dl_list) return rapport::ctl_deadletter_list(dl_target, dl_options);
  if (*dl_replay) return rapport::ctl_deadletter_replay(dl_target, dl_options);
  if (*backup) return rapport::ctl_backup(backup_target, backup_dest, backup_quiet);
  if (*restore) return rapport::ctl_restore(restore_target, restore_src, restore_force);
  if (*migrate) return rapport::ctl_migrate(migrate_target, migrate_partitions, migrate_quiet);
  if (*generate) return rapport::generate_command(gen, gen_model, stdout, stderr);
  return 2;
}
