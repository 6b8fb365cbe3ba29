// keel internal: the server's options, from flags or a config file (one `name = value` per
// line, the names of the flags without dashes; `#` starts a comment).
#pragma once

#include <keel/config.h>
#include <keel/tls.h>

#include "address.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace keel::server {

struct Options {
  uint64_t id = 0;                          // --id
  std::string dataDir;                      // --data-dir
  std::string listen;                       // --listen host:port (peers and clients)
  std::map<uint64_t, std::string> peers;    // --peers 1=host:port,2=host:port,...
  bool join = false;                        // --join: start empty; an existing cluster adds us
  std::string clusterId = "keel";           // --cluster-id
  std::string http;                         // --http host:port for /metrics and /status
  std::string redisListen;                  // --redis-listen host:port: the Redis-protocol port (off: "")
  bool redisTls = false;                    // --redis-tls: that port over mutual TLS too (--tls-*)
  TlsOptions tls;                           // --tls-cert, --tls-key, --tls-ca, --tls-name (include/keel/tls.h)
  uint32_t tickMs = 50;                     // --tick-ms
  uint32_t electionTicks = 10;              // --election-ticks
  uint32_t heartbeatTicks = 2;              // --heartbeat-ticks
  bool checkQuorum = true;                  // --check-quorum: a leader without a quorum steps down
  ReadMode readMode = ReadMode::Safe;       // --read-mode readindex|lease
  uint32_t maxClockDriftPercent = 10;       // --max-clock-drift-percent (lease reads)
  uint64_t maxMessageBytes = 16ull << 20;   // --max-message-bytes (larger RPCs are refused)
  uint64_t snapshotEntries = 20000;         // --snapshot-entries: compact after this many
  double snapshotLogRatio = 2.0;            // --snapshot-log-ratio: ... and this many times the last snapshot's bytes
  uint32_t requestTimeoutMs = 5000;         // --request-timeout-ms
  uint32_t leaderSyncDelayMs = 5;           // --leader-sync-delay-ms (0: the leader syncs each write)
  uint64_t sessionTimeoutMs = 600000;       // --session-timeout-ms (KV sessions)
  bool memoryLog = false;                   // --memory-log: not durable (tests only)
  bool quiet = false;                       // --quiet
  // ---- Deliberate defects for the fault tests (tests/nemesis) that must be caught. ----
  // Each needs --unsafe-test as well; a node refuses to start otherwise. Never in production.
  bool unsafeTest = false;                  // --unsafe-test: allow the unsafe-test-* options
  // --unsafe-test-ack-before-persist: acknowledge appends (and count the leader's own copy)
  // before they are durable, and write the log lazily (about every 2 s), so kill -9 loses
  // acknowledged entries.
  bool unsafeTestAckBeforePersist = false;
  // --unsafe-test-stale-reads: serve every read from local state, without ReadIndex.
  bool unsafeTestStaleReads = false;
  // --unsafe-test-clock-rate R: this node's clock (its ticks, and the monotonic clock of its
  // lease bookkeeping) runs R times as fast as the real one: the nemesis's clock skew. (An
  // injected clock: libfaketime cannot be preloaded into a process linked with jemalloc.)
  double unsafeTestClockRate = 1.0;
  // --unsafe-test-sync-delay-ms N: every fdatasync of this node's log files takes N ms more (a
  // slow disk).
  uint32_t unsafeTestSyncDelayMs = 0;
};

// Sets one option by its flag name (without dashes). Returns an error sentence, "" when fine.
std::string setOption(Options& o, const std::string& name, const std::string& value);
// Reads a config file. Returns an error sentence, "" when fine.
std::string loadConfigFile(Options& o, const std::string& path);
// Checks the whole; returns an error sentence, "" when usable.
std::string validate(const Options& o);
using net::splitAddress;  // host:port -> (host, port); false when malformed
// The names of all options, with their help text, for --help and docs.
struct OptionHelp { const char* name; const char* arg; const char* help; };
const std::vector<OptionHelp>& optionHelp();

}  // namespace keel::server
