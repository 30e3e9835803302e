// rapportctl import: files are framed into lines by the LineFramer the TCP front uses (ingest/line_framer.h),
// decoded by the daemon's Decoder and committed in batches with Store::apply_batch; rejected lines become dead
// letters (transport "import").
#include "daemon/ctl/import.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

#include "common/clock.h"
#include "daemon/alias_table.h"
#include "daemon/config.h"
#include "daemon/ctl/common.h"
#include "ingest/decoder.h"
#include "ingest/line_framer.h"
#include "ingest/submission.h"
#include "storage/identity.h"
#include "storage/store.h"

namespace rapport {
namespace {

// One input, opened before the import starts.
struct Input {
  std::string name;  // as shown in messages ("<stdin>" for "-")
  std::FILE* file = nullptr;
  std::size_t size = 0;  // regular files: for the progress bar
};

class Inputs {
 public:
  ~Inputs() {
    for (Input& in : inputs_)
      if (in.file != nullptr && in.file != stdin) std::fclose(in.file);
  }
  // Opens every file; reports each one that cannot be opened. True when all could.
  bool open(const std::vector<std::string>& names) {
    bool ok = true;
    for (const std::string& name : names) {
      if (name == "-") {
        inputs_.push_back({"<stdin>", stdin, 0});
        continue;
      }
      std::FILE* f = std::fopen(name.c_str(), "rb");
      struct stat st {};
      int err = errno;
      if (f != nullptr && ::fstat(::fileno(f), &st) != 0) err = errno;
      if (f != nullptr && S_ISDIR(st.st_mode)) err = EISDIR;
      if (f == nullptr || S_ISDIR(st.st_mode)) {
        if (f != nullptr) std::fclose(f);
        std::fprintf(stderr, "rapportctl: cannot open %s: %s\n", name.c_str(), std::strerror(err));
        ok = false;
        continue;
      }
      inputs_.push_back({name, f, S_ISREG(st.st_mode) ? static_cast<std::size_t>(st.st_size) : 0});
    }
    return ok;
  }
  std::vector<Input>& all() { return inputs_; }

 private:
  std::vector<Input> inputs_;
};

struct ImportError {
  std::string file;
  std::uint64_t line;
  std::string message;
};

class Importer {
 public:
  Importer(PartitionedStore& store, const Config& config, const ImportOptions& options, std::size_t total_bytes,
           std::shared_ptr<const AliasMap> aliases)
      : store_(store), config_(config), options_(options), decoder_(config.server.decode), total_bytes_(total_bytes) {
    batch_.reserve(options.batch);
    aliases_.replace(std::move(aliases));
  }

  // Returns false on a fatal (storage or read) error.
  bool import_file(const Input& input) {
    file_ = input.name;
    LineFramer framer(config_.server.decode.max_line_bytes, kMaxPayloadBytes);
    std::vector<char> buf(4 << 20);
    bool ok = true;
    while (ok) {
      const std::size_t n = std::fread(buf.data(), 1, buf.size(), input.file);
      if (n == 0) {
        if (std::ferror(input.file)) {
          std::fprintf(stderr, "\nrapportctl: cannot read %s: %s\n", file_.c_str(), std::strerror(errno));
          return false;
        }
        framer.finish();
      } else {
        bytes_ += n;
        framer.feed(std::string_view(buf.data(), n));
      }
      while (ok) {
        const auto line = framer.next();
        if (!line) break;
        ok = handle(*line);
      }
      progress(false);
      if (n == 0) break;
    }
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
      std::fprintf(stderr, "  %s:%llu: %s\n", e.file.c_str(), static_cast<unsigned long long>(e.line),
                   e.message.c_str());
    }
    if (rejected_ > errors_.size())
      std::fprintf(stderr, "  ... and %zu more rejected lines\n", rejected_ - errors_.size());
  }
  std::size_t rejected() const { return rejected_; }

 private:
  bool handle(const LineFramer::Line& line) {
    if (line.too_large) {
      reject(line.number, RejectReason::kTooLarge,
             "line is longer than " + std::to_string(config_.server.decode.max_line_bytes) + " bytes", line.text);
      return true;
    }
    if (is_blank_line(line.text)) return true;  // blank lines are skipped
    Event& event = next_slot();
    RejectReason reason{};
    std::string_view message;
    if (decoder_.decode_line(line.text, wall_ms(), event, reason, message)) {
      ++filled_;
    } else {
      reject(line.number, reason, message, line.text);
    }
    return filled_ < options_.batch || flush();
  }

  Event& next_slot() {
    if (batch_.size() <= filled_) batch_.emplace_back();
    return batch_[filled_];
  }

  void reject(std::uint64_t line_no, RejectReason reason, std::string_view message, std::string_view payload) {
    ++rejected_;
    std::string msg = std::string(reject_reason_label(reason)) + ": " + std::string(message);
    if (errors_.size() < 10) errors_.push_back({file_, line_no, msg});
    dead_letters_.push_back(DeadLetter{wall_ms(), "import", std::string(reject_reason_label(reason)), std::move(msg),
                                       std::string(payload.substr(0, kMaxPayloadBytes))});
  }

  bool flush() {
    if (filled_ == 0 && dead_letters_.empty()) return true;
    aliases_.relabel(batch_);  // events sent to an alias count for its survivor, as in rapportd
    Status s =
        store_.apply_batch(std::span<const Event>(batch_.data(), filled_), config_.apply, outcomes_, dead_letters_);
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
      bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
            std::string(static_cast<std::size_t>(width - filled), '.') + "] ";
      const double eta = rate > 0 ? static_cast<double>(total_bytes_ - std::min(bytes_, total_bytes_)) / rate : 0;
      char tail[64];
      std::snprintf(tail, sizeof tail, "%3.0f%% ETA %.0fs ", frac * 100, eta);
      bar += tail;
    }
    std::fprintf(stderr, "\r%s%.1f MB, %.0f events/s, %.1f MB/s   %s", bar.c_str(), static_cast<double>(bytes_) / 1e6,
                 static_cast<double>(events) / secs, rate / 1e6, final ? "\n" : "");
    std::fflush(stderr);
  }

  PartitionedStore& store_;
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
  AliasTable aliases_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_progress_{};
};

}  // namespace

int ctl_import(const ImportOptions& options) {
  Inputs inputs;
  if (!inputs.open(options.files)) return kExitFatal;  // nothing imported: fix the file list and run it again
  CtlTarget target;
  target.state_dir = options.state_dir;
  target.config_path = options.config_path;
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  if (options.async) config->storage.durability = Durability::kAsync;
  auto store = ctl_open_store(*config, /*read_only=*/false);
  if (!store.ok()) return ctl_error(store.message());
  // Identity merges (docs/design.md, "Identity"): resolve aliases as rapportd does.
  auto identity = load_identity_state(**store);
  if (!identity.ok()) return ctl_error(identity.message());
  if (identity->op.kind != IdentityOpKind::kNone) {
    return ctl_error(
        "an identity merge was interrupted in this state dir: start rapportd once (it completes it), "
        "then import");
  }
  std::size_t total_bytes = 0;
  for (const Input& in : inputs.all()) total_bytes += in.size;
  Importer importer(**store, *config, options, total_bytes, AliasMap::from_groups(identity->groups));
  bool ok = true;
  for (const Input& in : inputs.all()) {
    ok = importer.import_file(in);
    if (!ok) break;
  }
  ok = importer.finish() && ok;
  importer.summary();
  if (!ok) return kExitFatal;
  return importer.rejected() > 0 ? kExitPartial : kExitOk;
}

}  // namespace rapport
