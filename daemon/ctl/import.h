// rapportctl import: NDJSON files into a state dir, through the same line framing, decoder and store as rapportd.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace rapport {

struct ImportOptions {
  std::vector<std::string> files;  // "-" = standard input
  std::string state_dir = "./var/rapport";
  std::string config_path;
  std::size_t batch = 50'000;  // events per commit
  bool async = false;          // commit without fsync
  bool quiet = false;          // no progress bar
};

// Every file is opened before anything is imported: when one cannot be opened (missing, unreadable, a
// directory), each such file is reported ("rapportctl: cannot open F: <reason>") and the import does not start
// (exit 2, no summary). Otherwise the files are imported in order and a summary goes to stderr.
// Exit 0: every line stored; 1: some lines rejected (kept as dead letters); 2: fatal (config, storage, read
// error).
int ctl_import(const ImportOptions& options);

}  // namespace rapport
