// rapportctl backtest (see backtest.h).
#include "daemon/ctl/backtest.h"

#include <fcntl.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/clock.h"
#include "common/json_writer.h"
#include "daemon/backtest.h"

extern char** environ;

namespace rapport {
namespace {

// A gnuplot single-quoted string: a quote inside is written twice.
std::string gnuplot_quote(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

double number(simdjson::dom::element e) {
  double v = 0;
  if (e.get_double().get(v) == simdjson::SUCCESS) return v;
  std::int64_t i = 0;
  if (e.get_int64().get(i) == simdjson::SUCCESS) return static_cast<double>(i);
  std::uint64_t u = 0;
  if (e.get_uint64().get(u) == simdjson::SUCCESS) return static_cast<double>(u);
  return NAN;
}

std::string text(simdjson::dom::element e) {
  std::string_view v;
  return e.get_string().get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
}

// Runs `argv` with standard output and error into `log_path`; the exit status, or an error.
Result<int> run(const std::vector<std::string>& argv, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    if (rc == ENOENT) {
      return Status::Error("--plot needs " + argv[0] +
                           ", which is not installed (not found on PATH): install the Debian package gnuplot-nox "
                           "(apt-get install gnuplot-nox), or leave out --plot");
    }
    return Status::Error("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Status::Error(std::string("waitpid: ") + std::strerror(errno));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Status plot_backtest(std::string_view report_json, const std::string& png_path, const std::string& gnuplot) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(report_json.data(), report_json.size()).get(doc) != simdjson::SUCCESS) {
    return Status::Error("the backtest answer is not JSON");
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string dir_template = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/rapportctl-plot-XXXXXX";
  if (::mkdtemp(dir_template.data()) == nullptr) {
    return Status::Error("cannot create a temporary directory for the plot data: " + std::string(std::strerror(errno)));
  }
  const std::filesystem::path dir(dir_template);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};

  try {
    std::ofstream tracking(dir / "tracking.dat");
    tracking << "# week end actual predicted\n";
    for (simdjson::dom::element p : doc["tracking"]["weeks"].get_array()) {
      tracking << number(p["week"]) << ' ' << text(p["end"]) << ' ' << number(p["actual"]) << ' '
               << number(p["predicted"]) << '\n';
    }
    std::ofstream groups(dir / "groups.dat");
    groups << "# x label customers actual predicted\n";
    for (simdjson::dom::element g : doc["conditional_expectations"].get_array()) {
      groups << number(g["x"]) << ' ' << text(g["label"]) << ' ' << number(g["customers"]) << ' ' << number(g["actual"])
             << ' ' << number(g["predicted"]) << '\n';
    }
    if (!tracking || !groups) return Status::Error("cannot write the plot data under " + dir.string());
  } catch (const simdjson::simdjson_error& e) {
    return Status::Error(std::string("the backtest answer does not have the expected shape: ") + e.what());
  }
  const std::string d1 = text(doc["calibration_end"]).substr(0, 10), d2 = text(doc["holdout_end"]).substr(0, 10);
  const double calibration_weeks = number(doc["tracking"]["calibration_weeks"]);
  const double customers = number(doc["customers"]);
  std::ostringstream script;
  script << "set terminal pngcairo size 1400,560 font ',11'\n"
         << "set output " << gnuplot_quote(std::filesystem::absolute(png_path).string()) << "\n"
         << "set datafile commentschars '#'\n"
         << "set multiplot layout 1,2 title "
         << gnuplot_quote("Rapport backtest: calibration to " + d1 + ", holdout to " + d2 + ", " +
                          std::to_string(static_cast<long long>(customers)) + " customers")
         << "\n"
         << "set grid\nset key left top\n"
         << "set title 'Weekly cumulative repeat transactions'\n"
         << "set xlabel 'week'\nset ylabel 'repeat transactions'\n"
         << "set arrow 1 from " << calibration_weeks << ", graph 0 to " << calibration_weeks
         << ", graph 1 nohead dashtype 3 linecolor 'gray40'\n"
         << "set label 1 'calibration end' at " << calibration_weeks << ", graph 0.05 offset 0.5,0 textcolor 'gray40'\n"
         << "plot " << gnuplot_quote((dir / "tracking.dat").string())
         << " using 1:3 with lines linewidth 2 linecolor 'black' title 'actual', '' using 1:4 with lines "
            "linewidth 2 dashtype 2 linecolor 'red' title 'model'\n"
         << "unset arrow 1\nunset label 1\n"
         << "set title 'Conditional expectations: holdout transactions per customer'\n"
         << "set xlabel 'repeat transactions in the calibration'\nset ylabel 'mean transactions in the holdout'\n"
         << "set xrange [-0.5:7.5]\n"
         << "plot " << gnuplot_quote((dir / "groups.dat").string())
         << " using 1:4:xticlabels(2) with linespoints linewidth 2 pointtype 7 linecolor 'black' title 'actual', "
            "'' using 1:5 with linespoints linewidth 2 dashtype 2 pointtype 6 linecolor 'red' title 'model'\n"
         << "unset multiplot\nset output\n";
  const std::string script_path = (dir / "backtest.gp").string();
  {
    std::ofstream out(script_path);
    out << script.str();
    if (!out) return Status::Error("cannot write the gnuplot script under " + dir.string());
  }
  const std::string log_path = (dir / "gnuplot.log").string();
  auto status = run({gnuplot, script_path}, log_path);
  if (!status.ok()) return status.status();
  if (*status != 0) {
    std::string log = read_file(log_path);
    if (log.size() > 2000) log.resize(2000);
    return Status::Error(gnuplot + " failed (exit " + std::to_string(*status) + "): " + log);
  }
  std::error_code ec;
  if (!std::filesystem::exists(png_path, ec) || std::filesystem::file_size(png_path, ec) == 0) {
    return Status::Error(gnuplot + " wrote no image to " + png_path + ": " + read_file(log_path));
  }
  return Status::Ok();
}

namespace {

void print_tables(const std::string& json) {
  simdjson::dom::parser parser;
  const simdjson::dom::element doc = parser.parse(json);
  std::printf(
      "Backtest: fitted on the purchases up to %s, predicting the days after it up to %s (%g days), %g customers\n",
      text(doc["calibration_end"]).substr(0, 10).c_str(), text(doc["holdout_end"]).substr(0, 10).c_str(),
      number(doc["holdout_days"]), number(doc["customers"]));
  const auto m = doc["model"];
  std::printf("Model: BG/NBD r=%.4g alpha=%.4g days a=%.4g b=%.4g; Gamma-Gamma p=%.4g q=%.4g gamma=%.4g\n\n",
              number(m["bgnbd"]["r"]), number(m["bgnbd"]["alpha"]), number(m["bgnbd"]["a"]), number(m["bgnbd"]["b"]),
              number(m["gamma_gamma"]["p"]), number(m["gamma_gamma"]["q"]), number(m["gamma_gamma"]["gamma"]));
  std::printf("%-14s %14s %14s %10s %16s\n", "holdout", "actual", "predicted", "error", "MAE/customer");
  for (const char* what : {"transactions", "spend"}) {
    const auto t = doc[what];
    const double actual = number(t["actual"]), predicted = number(t["predicted"]);
    std::printf("%-14s %14.2f %14.2f %9.1f%% %16.4f\n", what, actual, predicted,
                actual != 0 ? 100.0 * (predicted - actual) / actual : NAN, number(t["mae"]));
  }
  std::printf(
      "\nConditional expectations (holdout transactions per customer, by repeat transactions in the "
      "calibration)\n%-4s %10s %10s %10s\n",
      "x", "customers", "actual", "predicted");
  for (simdjson::dom::element g : doc["conditional_expectations"].get_array()) {
    std::printf("%-4s %10.0f %10.4f %10.4f\n", text(g["label"]).c_str(), number(g["customers"]), number(g["actual"]),
                number(g["predicted"]));
  }
  const auto tracking = doc["tracking"];
  std::printf(
      "\nWeekly cumulative repeat transactions (week 1 starts %s; the calibration ends with week %g)\n"
      "%-5s %-11s %12s %12s\n",
      text(tracking["first_day"]).c_str(), number(tracking["calibration_weeks"]), "week", "ends", "actual",
      "predicted");
  for (simdjson::dom::element p : tracking["weeks"].get_array()) {
    std::printf("%-5g %-11s %12.0f %12.1f\n", number(p["week"]), text(p["end"]).c_str(), number(p["actual"]),
                number(p["predicted"]));
  }
}

}  // namespace

int ctl_backtest(const CtlTarget& target, const BacktestOptions& options) {
  // Checked here in both modes for the same messages; the daemon checks them again.
  auto dates = parse_backtest_dates(options.calibration_end, options.holdout_end, wall_ms(), "--calibration-end",
                                    "--holdout-end");
  if (!dates.ok()) return ctl_error(dates.message());
  std::string json;
  if (!target.url.empty()) {
    HttpClientRequest request;
    request.method = "POST";
    request.target = "/v1/model:backtest";
    JsonWriter body;
    body.begin_object()
        .field("calibration_end", options.calibration_end)
        .field("holdout_end", options.holdout_end)
        .end_object();
    request.body = body.take();
    auto response = ctl_http(target, std::move(request), /*default_timeout_s=*/600);
    if (!response.ok()) return ctl_error(response.message());
    if (response->status != 200) {
      ctl_http_failure(*response, "backtest");
      return kExitFatal;
    }
    json = std::move(response->body);
  } else {
    auto config = ctl_config(target);
    if (!config.ok()) return ctl_error(config.message());
    auto store = ctl_open_store(*config, /*read_only=*/true);
    if (!store.ok()) return ctl_error(store.message());
    const BacktestOutcome outcome = backtest_population(**store, config->evaluate, config->value, *dates);
    if (!outcome.report) return ctl_error("backtest failed: " + outcome.error);
    JsonWriter w;
    write_backtest_json(w, *outcome.report);
    json = w.take();
  }
  try {
    if (!options.plot.empty()) {
      const Status plotted = plot_backtest(json, options.plot, options.gnuplot);
      if (!plotted.ok()) return ctl_error(plotted.message());
    }
    if (options.json) {
      std::printf("%s\n", json.c_str());
    } else {
      print_tables(json);
    }
  } catch (const simdjson::simdjson_error& e) {  // a daemon of another version, say
    return ctl_error(std::string("the backtest answer does not have the expected shape: ") + e.what());
  }
  if (!options.plot.empty()) std::fprintf(stderr, "plot written to %s\n", options.plot.c_str());
  return kExitOk;
}

}  // namespace rapport
