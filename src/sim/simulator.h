// keel-sim: the deterministic cluster simulator (FoundationDB's simulation testing and
// TigerBeetle's VOPR are the models).
//
// One run puts a whole cluster in one process: 3, 5 or 7 voters of the real consensus core
// (plus two spare nodes for membership changes), each with a SimLog that models durability
// (sim-log.h) and a KvStateMachine (include/keel/kv.h), a simulated network, simulated disks, clients, and a
// nemesis that injects faults and cluster operations at random moments. Every source of
// nondeterminism (message delays, losses, faults, client choices, the cores' election
// timeouts) is drawn from one generator seeded by Options::seed, and nothing reads a clock:
// the same Options give the same run, event for event.
//
// A run has two phases:
//   1. Faults, for Options::events events: network delay, loss, duplication and reordering;
//      partitions of every shape (one node isolated, the leader isolated, minority/majority,
//      one-way loss, non-transitive rings), healing; node crashes (losing unsynced writes,
//      tearing the last one) and restarts, pauses, slow disks; membership changes (add a
//      learner, promote, remove, replace), leadership transfers, snapshots and compaction
//      (followers then catch up through snapshot installs).
//   2. Liveness: everything heals, the nemesis stops, and every client operation invoked from
//      then on must complete within Options::opTimeout.
// After every event the safety invariants of invariants.h are checked; at the end the
// clients' history is checked for linearizability (keel::checker). The first failure ends
// the run; Result says what failed and what every node did last.
#pragma once

#include <keel/config.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace keel::sim {

// What the nemesis may do (a bit each).
enum Faults : uint32_t {
  kNetwork = 1 << 0,     // message loss, duplication, long delays (reordering)
  kPartitions = 1 << 1,  // partitions of every shape, and healing
  kCrashes = 1 << 2,     // crash (losing unsynced writes) and restart
  kTornWrites = 1 << 3,  // a crash keeps a random prefix of the unsynced writes
  kPauses = 1 << 4,      // a node stops: no ticks, no delivery, no disk completions
  kSlowDisk = 1 << 5,    // a node's syncs take 10-100 times longer for a while
  kMembership = 1 << 6,  // add learner, promote, remove, replace
  kTransfers = 1 << 7,   // leadership transfer
  kSnapshots = 1 << 8,   // snapshot and compaction at a random node
  // Every read a follower forwards to the leader (ReadIndex), and every answer, is held in the
  // network for 100-1000 ms (1-10 election timeouts): an election and writes happen while it
  // travels. Until the heal.
  kHeldReads = 1 << 9,
  kAllFaults = (1 << 10) - 1,
};
// "network,partitions,..." or "all"; nullopt for an unknown name.
std::optional<uint32_t> parseFaults(const std::string& names);
std::string faultNames(uint32_t faults);

// Deliberate defects of the driver, for tests that prove the simulator catches them (the
// defects of the core are keel::Fault, passed as Options::coreFaults).
enum Defects : uint32_t {
  kForgetVote = 1 << 0,  // a restarted node's storage has lost its vote
  kStaleReads = 1 << 1,  // nodes answer reads from local state, without ReadIndex
  // A client that, proposing a write again, waits for the answer of the last copy only: when
  // that answers SessionExpired it proposes the write once more in a new session, although an
  // earlier copy may have applied before the session expired.
  kRetryExpiredWrites = 1 << 2,
  // A leader's lazy sync of the writes it left unsynced (Ready::syncOptional) tells the core
  // they are durable without syncing them.
  kLazySyncWithoutSync = 1 << 3,
};

struct Options {
  uint64_t seed = 1;
  int nodes = 0;            // voters at the start: 3, 5 or 7; 0: chosen by the seed
  uint32_t faults = 0;      // bits of Faults; 0: a mix chosen by the seed
  uint64_t events = 4000;   // events of the fault phase
  int clients = 4;
  int keys = 3;
  int64_t opTimeout = 1'000'000'000;        // ns of simulated time a client waits for an op
  int64_t livenessTime = 3'000'000'000;     // ns of the liveness phase during which ops start
  uint64_t coreFaults = 0;  // Config::faults of every node (bits of keel::Fault)
  uint32_t defects = 0;     // bits of Defects
  uint64_t sessionTimeoutMs = 0;  // KvStateMachine's session timeout; 0: chosen by the seed
  bool checkHistory = true;               // run the linearizability checker at the end
  std::string historyPath;                // when set, the history is written there (JSON Lines)
  int traceDepth = 24;                    // events per node kept for the failure report
  // Applied to every node's Config after the seed chose its variant (pre-vote, check-quorum,
  // message and window sizes): for tests that aim at one configuration.
  std::function<void(Config&)> configure;
};

struct Result {
  bool ok = true;
  uint64_t seed = 0;
  int nodes = 0;
  uint32_t faults = 0;
  std::string failure;  // what failed (one line), empty when ok
  std::string report;   // on failure: the state and the last events of every node
  // Counters.
  uint64_t events = 0;
  int64_t simTime = 0;  // ns
  uint64_t messages = 0, dropped = 0, heldReads = 0;
  uint64_t opsOk = 0, opsFail = 0, opsInfo = 0;
  uint64_t committed = 0, terms = 0;
  uint64_t crashes = 0, pauses = 0, partitions = 0, membershipChanges = 0, transfers = 0;
  uint64_t compactions = 0, slicedCompactions = 0, snapshotInstalls = 0, snapshotReports = 0;
  uint64_t registrations = 0;    // client sessions registered (through the log)
  uint64_t sessionsExpired = 0;  // writes answered SessionExpired (the client registers again)
  std::string summary() const;  // one line
};

Result run(const Options& options);

}  // namespace keel::sim
