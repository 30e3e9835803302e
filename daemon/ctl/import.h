// rapportctl import: NDJSON files into a state dir, through the same decoder and store as rapportd.
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

// Imports the files in order; a summary goes to stderr.
// Exit 0: every line stored; 1: some lines rejected (kept as dead letters); 2: fatal (config, storage, a file
// that cannot be opened).
int ctl_import(const ImportOptions& options);

}  // namespace rapport
