// keel nemesis: the workloads, run through keel's client library on one kj event loop (their
// own thread), recorded as histories in the format of HISTORY-FORMAT.md.
//
//   registers  Workers read, write and compare-and-set a few keys ("r<k>", unique values
//              "v<n>"); every 300 operations the keys move on to fresh ones, so that each key's
//              history stays small enough to check exactly. Checked by keel-check's library.
//   set        Workers add unique elements: a put of key "s/<e>" = "<e>". After healing, one
//              linearizable scan of "s/" must hold every acknowledged add and nothing that was
//              never attempted.
//
// Each worker is bound to one node (worker w talks to node w mod N, as Jepsen's clients do),
// so a node that serves stale reads is asked. Every operation has a deadline: the client's
// own, and a harness deadline above it (a call to a paused node would otherwise wait forever).
// The outcome of an operation is `ok` when the client says so, `fail` only when it certainly
// did not apply (a compare-and-set that found another value), and `info` otherwise. A worker
// whose operation ended in `info` takes a fresh process number and a fresh client (session).
#pragma once

#include <keel/check.h>
#include <keel/tls.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace keel::nemesis {

struct WorkloadConfig {
  std::vector<std::string> addresses;  // one per node
  int registerWorkers = 6;
  int setWorkers = 3;
  int keys = 4;                 // register keys in use at a time
  int opsPerKeyWindow = 300;    // operations before the register keys move on
  uint32_t opTimeoutMs = 3000;  // harness deadline; the client's is 500 ms shorter
  uint32_t thinkMs = 20;        // mean pause between a worker's operations
  // The final reads of the register keys stop once they took this long (a cluster left without
  // a leader would otherwise cost every key ten timeouts); the keys left are counted.
  uint32_t finalReadBudgetMs = 60000;
  uint64_t seed = 1;
  TlsOptions tls;  // the clients' (--tls)
};

struct Counts {
  uint64_t ok = 0, fail = 0, info = 0;
};

struct WorkloadResult {
  checker::History registers;
  checker::History set;
  Counts registerCounts, setCounts;
  std::set<std::string> setAttempted, setAcked;
  bool setFinalRead = false;
  std::set<std::string> setFinal;
  std::string finalReadError;
  uint64_t finalReadsSkipped = 0;  // register keys not read at the end (budget spent)
  uint64_t okAfterHeal = 0;      // operations invoked after the heal that came back ok
  int64_t firstOkAfterHealNs = -1;  // how long after the heal the first one completed
  uint64_t clients = 0;          // clients (sessions) created
};

// Nanoseconds since the run started, on the one clock of the whole run.
int64_t nowNs();
void startClock();

class Workload {
 public:
  explicit Workload(WorkloadConfig config);
  // Runs until `stop` becomes true, then lets outstanding operations finish (bounded by the
  // deadline) and does the final reads. `healedAt` (nowNs() of the heal, -1 until then) is
  // used to count progress after the heal.
  void run(const std::atomic<bool>& stop, const std::atomic<int64_t>& healedAt);
  WorkloadResult& result() { return result_; }

 private:
  WorkloadConfig config_;
  WorkloadResult result_;
};

}  // namespace keel::nemesis
