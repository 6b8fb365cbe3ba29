// keel examples: what the examples' command-line clients share.
//
//   PROGRAM [--cluster ADDR,ADDR,...] [--timeout-ms N] COMMAND [ARGS...]
//
// The cluster comes from --cluster, else $KEEL_CLUSTER, else 127.0.0.1:7101,7102,7103.
// Exit status (as the `keel` tool): 0 success; 1 failure (unavailable, timeout, unknown
// outcome); 2 bad usage; 3 not found; 4 a compare-and-set found another value.
#pragma once

#include <keel/client.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace keel::examples {

enum Exit { kOk = 0, kFailed = 1, kUsage = 2, kNotFound = 3, kCompareFailed = 4 };

// Fills `options` from the flags and `words` with the rest. False on a malformed flag.
inline bool parseClientArgs(int argc, char** argv, Client::Options& options, std::vector<std::string>& words) {
  const char* env = std::getenv("KEEL_CLUSTER");
  std::string cluster = env && *env ? env : "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";
  options.sessions = false;  // sessions are KvStateMachine's; these machines do not have them
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--cluster" || a == "--timeout-ms") && i + 1 >= argc) return false;
    if (a == "--cluster") cluster = argv[++i];
    else if (a == "--timeout-ms") options.timeoutMs = uint32_t(std::strtoul(argv[++i], nullptr, 10));
    else words.push_back(a);
  }
  for (size_t start = 0; start <= cluster.size();) {
    size_t comma = cluster.find(',', start);
    if (comma == std::string::npos) comma = cluster.size();
    if (comma > start) options.addresses.push_back(cluster.substr(start, comma - start));
    start = comma + 1;
  }
  return !options.addresses.empty() && !words.empty();
}

// Prints why a call failed; returns the exit status.
inline int failed(const Outcome<std::string>& o) {
  std::fprintf(stderr, "error: %s%s%s\n", toString(o.error), o.detail.empty() ? "" : ": ", o.detail.c_str());
  return kFailed;
}

}  // namespace keel::examples
