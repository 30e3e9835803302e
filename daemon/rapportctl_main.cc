// rapportctl: Rapport's bulk importer and inspector.
//   rapportctl import FILE... --state-dir DIR   NDJSON through the same decoder and writer as rapportd
//   rapportctl get CUSTOMER_ID --state-dir DIR [--explain]
//   rapportctl generate --customers N --events M [--seed S]
// Works on a state dir while rapportd has it open (LMDB is multi-process).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/json_writer.h"
#include "daemon/config.h"
#include "daemon/customer_json.h"
#include "daemon/generator.h"
#include "ingest/decoder.h"
#include "storage/store.h"

#ifndef RAPPORT_VERSION
#define RAPPORT_VERSION "0.0.0"
#endif

namespace rapport {
namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct ImportOptions {
  std::vector<std::string> files;
  std::string state_dir = "./var/rapport";
  std::string config_path;
  std::size_t batch = 50'000;
  bool async = false;
  bool quiet = false;
};

struct ImportError {
  std::string file;
  std::size_t line;
  std::string message;
};

class Importer {
 public:
  Importer(Store& store, const Config& config, const ImportOptions& options)
      : store_(store), config_(config), options_(options), decoder_(config.server.decode) {
    batch_.reserve(options.batch);
  }

  // Returns false on a fatal (storage) error.
  bool import_file(const std::string& name) {
    std::FILE* in = name == "-" ? stdin : std::fopen(name.c_str(), "rb");
    if (in == nullptr) {
      std::fprintf(stderr, "rapportctl: cannot open %s: %s\n", name.c_str(), std::strerror(errno));
      return false;
    }
    file_ = name == "-" ? "<stdin>" : name;
    if (in != stdin) {
      std::fseek(in, 0, SEEK_END);
      total_bytes_ += static_cast<std::size_t>(std::max(0L, std::ftell(in)));
      std::fseek(in, 0, SEEK_SET);
    }
    std::vector<char> buf(4 << 20);
    std::string carry;
    std::size_t line_no = 0;
    bool ok = true;
    bool skipping = false;  // inside an overlong line
    for (;;) {
      const std::size_t n = std::fread(buf.data(), 1, buf.size(), in);
      if (n == 0) break;
      bytes_ += n;
      std::string_view chunk(buf.data(), n);
      while (ok && !chunk.empty()) {
        const auto nl = chunk.find('\n');
        if (nl == std::string_view::npos) {
          if (!skipping) carry.append(chunk);
          if (carry.size() > config_.server.decode.max_line_bytes) {
            skipping = true;
            carry.clear();
          }
          break;
        }
        ++line_no;
        if (skipping) {
          skipping = false;
          reject(line_no, RejectReason::kTooLarge, "line longer than the limit", {});
        } else if (!carry.empty()) {
          carry.append(chunk.substr(0, nl));
          ok = line(line_no, carry);
          carry.clear();
        } else {
          ok = line(line_no, chunk.substr(0, nl));
        }
        chunk.remove_prefix(nl + 1);
      }
      progress(false);
      if (!ok) break;
    }
    if (ok && (skipping || !carry.empty())) {
      ++line_no;
      if (skipping) {
        reject(line_no, RejectReason::kTooLarge, "line longer than the limit", {});
      } else {
        ok = line(line_no, carry);
      }
    }
    if (in != stdin) std::fclose(in);
    return ok && flush();
  }

  bool finish() {
    const bool ok = flush();
    progress(true);
    return ok;
  }

  void summary() const {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    std::fprintf(stderr, "imported %zu events in %.1f s (%.0f events/s): %zu accepted, %zu duplicates, %zu rejected\n",
                 accepted_ + duplicates_, secs, static_cast<double>(accepted_ + duplicates_) / std::max(secs, 1e-9),
                 accepted_, duplicates_, rejected_);
    for (const ImportError& e : errors_) {
      std::fprintf(stderr, "  %s:%zu: %s\n", e.file.c_str(), e.line, e.message.c_str());
    }
    if (rejected_ > errors_.size()) std::fprintf(stderr, "  ... and %zu more rejected lines\n", rejected_ - errors_.size());
  }
  std::size_t rejected() const { return rejected_; }

 private:
  bool line(std::size_t line_no, std::string_view text) {
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) return true;  // blank lines are skipped
    Event& event = next_slot();
    RejectReason reason{};
    std::string_view message;
    if (decoder_.decode_line(text, wall_ms(), event, reason, message)) {
      ++filled_;
    } else {
      reject(line_no, reason, message, text);
    }
    return filled_ < options_.batch || flush();
  }

  Event& next_slot() {
    if (batch_.size() <= filled_) batch_.emplace_back();
    return batch_[filled_];
  }

  void reject(std::size_t line_no, RejectReason reason, std::string_view message, std::string_view payload) {
    ++rejected_;
    std::string msg = std::string(reject_reason_label(reason)) + ": " + std::string(message);
    if (errors_.size() < 10) errors_.push_back({file_, line_no, msg});
    dead_letters_.push_back(DeadLetter{wall_ms(), "import", std::string(reject_reason_label(reason)),
                                       std::move(msg), std::string(payload.substr(0, 4096))});
  }

  bool flush() {
    if (filled_ == 0 && dead_letters_.empty()) return true;
    Status s = store_.apply_batch(std::span<const Event>(batch_.data(), filled_), config_.apply, outcomes_,
                                  dead_letters_);
    if (!s.ok()) {
      std::fprintf(stderr, "\nrapportctl: storage error: %s\n", s.message().c_str());
      return false;
    }
    for (EventOutcome o : outcomes_) (o == EventOutcome::kAccepted ? accepted_ : duplicates_)++;
    filled_ = 0;
    dead_letters_.clear();
    return true;
  }

  void progress(bool final) {
    if (options_.quiet || !isatty(STDERR_FILENO)) return;
    const auto now = std::chrono::steady_clock::now();
    if (!final && now - last_progress_ < std::chrono::milliseconds(200)) return;
    last_progress_ = now;
    const double secs = std::max(std::chrono::duration<double>(now - started_).count(), 1e-3);
    const double rate = static_cast<double>(bytes_) / secs;
    const std::size_t events = accepted_ + duplicates_ + rejected_ + filled_;
    std::string bar;
    if (total_bytes_ > 0) {
      const double frac = std::min(1.0, static_cast<double>(bytes_) / static_cast<double>(total_bytes_));
      const int width = 30;
      const int filled = static_cast<int>(frac * width);
      bar = "[" + std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(width - filled), '.') + "] ";
      const double eta = rate > 0 ? static_cast<double>(total_bytes_ - std::min(bytes_, total_bytes_)) / rate : 0;
      char tail[64];
      std::snprintf(tail, sizeof tail, "%3.0f%% ETA %.0fs ", frac * 100, eta);
      bar += tail;
    }
    std::fprintf(stderr, "\r%s%.1f MB, %.0f events/s, %.1f MB/s   %s", bar.c_str(), static_cast<double>(bytes_) / 1e6,
                 static_cast<double>(events) / secs, rate / 1e6, final ? "\n" : "");
    std::fflush(stderr);
  }

  Store& store_;
  const Config& config_;
  const ImportOptions& options_;
  Decoder decoder_;
  std::vector<Event> batch_;
  std::size_t filled_ = 0;
  std::vector<EventOutcome> outcomes_;
  std::vector<DeadLetter> dead_letters_;
  std::vector<ImportError> errors_;
  std::string file_;
  std::size_t accepted_ = 0, duplicates_ = 0, rejected_ = 0;
  std::size_t bytes_ = 0, total_bytes_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_progress_{};
};

Result<Config> config_for(const std::string& config_path, const std::string& state_dir) {
  auto config = load_config(config_path);
  if (!config.ok()) return config.status();
  if (!state_dir.empty()) config->storage.directory = state_dir;
  return config;
}

int import_command(const ImportOptions& options) {
  auto config = config_for(options.config_path, options.state_dir);
  if (!config.ok()) {
    std::fprintf(stderr, "rapportctl: configuration: %s\n", config.message().c_str());
    return 2;
  }
  if (options.async) config->storage.durability = Durability::kAsync;
  auto store = Store::open(config->storage);
  if (!store.ok()) {
    std::fprintf(stderr, "rapportctl: %s\n", store.message().c_str());
    return 2;
  }
  Importer importer(**store, *config, options);
  bool ok = true;
  for (const std::string& f : options.files) {
    ok = importer.import_file(f);
    if (!ok) break;
  }
  ok = importer.finish() && ok;
  importer.summary();
  if (!ok) return 2;
  return importer.rejected() > 0 ? 1 : 0;
}

int get_command(const std::string& id, const std::string& state_dir, const std::string& config_path, bool explain) {
  auto config = config_for(config_path, state_dir);
  if (!config.ok()) {
    std::fprintf(stderr, "rapportctl: configuration: %s\n", config.message().c_str());
    return 2;
  }
  config->storage.read_only = true;
  auto store = Store::open(config->storage);
  if (!store.ok()) {
    std::fprintf(stderr, "rapportctl: %s\n", store.message().c_str());
    return 2;
  }
  auto state = (*store)->get_customer(id);
  if (!state.ok()) {
    std::fprintf(stderr, "rapportctl: %s\n", state.message().c_str());
    return 2;
  }
  if (!state->has_value()) {
    std::fprintf(stderr, "rapportctl: unknown customer: %s\n", id.c_str());
    return 1;
  }
  // The value model the daemon last fitted, if any.
  ValueModel model;
  bool have_model = false;
  if (auto stored = (*store)->get_meta("value_model"); stored.ok() && stored->has_value()) {
    have_model = deserialize(**stored, model).ok();
  }
  JsonWriter w;
  write_customer_json(w, id, **state, wall_ms(), config->evaluate, have_model ? &model : nullptr, config->value,
                      explain);
  std::printf("%s\n", w.str().c_str());
  return 0;
}

}  // namespace
}  // namespace rapport

int main(int argc, char** argv) {
  CLI::App app{"rapportctl — import, inspect and generate Rapport data."};
  app.require_subcommand(1);
  app.set_version_flag("-V,--version", std::string("rapportctl ") + RAPPORT_VERSION);

  rapport::ImportOptions import;
  auto* imp = app.add_subcommand("import", "Import NDJSON event files ('-' = stdin) into a state dir. Exit 0 = all "
                                           "lines stored, 1 = some lines rejected, 2 = fatal error");
  imp->add_option("files", import.files, "NDJSON files, '-' for standard input")->required();
  imp->add_option("--state-dir", import.state_dir, "State directory (default ./var/rapport)");
  imp->add_option("-c,--config", import.config_path, "rapportd TOML config (scoring weights, costs, limits)");
  imp->add_option("--batch", import.batch, "Events per commit (default 50000)")->check(CLI::Range(1, 10'000'000));
  imp->add_flag("--async", import.async, "Commit without fsync (faster; a machine crash may lose the import)");
  imp->add_flag("-q,--quiet", import.quiet, "No progress bar");

  std::string id, state_dir = "./var/rapport", config_path;
  bool explain = false;
  auto* get = app.add_subcommand("get", "Print a customer's scores as JSON");
  get->add_option("customer_id", id, "Customer id")->required();
  get->add_option("--state-dir", state_dir, "State directory (default ./var/rapport)");
  get->add_option("-c,--config", config_path, "rapportd TOML config (evaluation weights)");
  get->add_flag("--explain", explain, "Include the components and inputs behind every score");

  rapport::GenerateOptions gen;
  auto* generate = app.add_subcommand("generate", "Write synthetic NDJSON events to standard output");
  generate->add_option("--customers", gen.customers, "Distinct customers (default 1000)")->check(CLI::Range(1, 1'000'000'000));
  generate->add_option("--events", gen.events, "Lines to write, duplicates included (default 10000)");
  generate->add_option("--seed", gen.seed, "Random seed (default 1); same seed, same output");
  generate->add_option("--zipf", gen.zipf_exponent, "Customer skew exponent (default 1.1)")->check(CLI::Range(0.0, 5.0));
  generate->add_option("--late", gen.late_fraction, "Fraction of late events (default 0.02)")->check(CLI::Range(0.0, 1.0));
  generate->add_option("--duplicates", gen.duplicate_fraction, "Fraction of repeated lines (default 0.01)")
      ->check(CLI::Range(0.0, 1.0));
  generate->add_option("--end-ms", gen.end_ms, "Latest timestamp, epoch ms (default now - 1 h)");

  CLI11_PARSE(app, argc, argv);
  if (*imp) return rapport::import_command(import);
  if (*get) return rapport::get_command(id, state_dir, config_path, explain);
  if (*generate) {
    rapport::generate_events(gen, stdout);
    return std::fflush(stdout) == 0 ? 0 : 2;
  }
  return 2;
}
