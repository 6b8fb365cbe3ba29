// Seeds that once failed, by name: each must pass for good. A seed replays the same run only
// while the simulator draws its randomness in the same order, so a change of the simulator
// can turn a seed into a different run; the cases stay anyway (they still are runs with
// faults) and each says what it found.
#include "sim-test.h"

namespace keel::sim::testing {
namespace {

Options seed(uint64_t s) {
  Options o;
  o.seed = s;
  return o;
}

// A follower whose Appends were all lost while the leader's window for it was full was never
// sent anything again: the leader waited for answers that could not come (liveness failure
// after healing). Fixed in the core: a heartbeat answer frees a slot of the window.
TEST(Regression, Seed26FullWindowOfLostAppends) { expectPasses(seed(26)); }

// A client waiting on a removed node for its write to apply waited until its deadline: the
// simulated client now proposes again elsewhere (the session applies the write once).
TEST(Regression, Seed502WriteWaitingOnARemovedNode) { expectPasses(seed(502)); }

// A client that kept asking removed nodes for reads: clients now refresh their list of members.
TEST(Regression, Seed464ReadsAskedOfRemovedNodes) { expectPasses(seed(464)); }

// The invariants once compared a node's storage with its core's log while a Ready was in
// flight (a false report): checks that read the log now wait for the node to settle.
TEST(Regression, Seed12CommittedCheckWhileSyncing) { expectPasses(seed(12)); }

// A read the client waited for on an entry the node applied as a no-op: clients now watch
// every applied entry, not only commands.
TEST(Regression, Seed117NoOpAtTheWatchedIndex) { expectPasses(seed(117)); }

// With KvStateMachine: a client's write had a copy at a node that was then removed (it never
// applied the index) and another that answered SessionExpired; the client waited for the
// removed node until its deadline (liveness failure after healing). A watched index is now
// answered by the first node to apply it.
TEST(Regression, Seed76CopyOnARemovedNodeAfterSessionExpiry) { expectPasses(seed(76)); }

// A server removed while it lagged stayed in the joint configuration it never saw end: it
// counted itself a voter, so healing did not shut it down, and with neither pre-vote nor
// check-quorum its elections kept deposing leaders (a read after healing timed out). Healing
// now goes by the configuration of the node that committed the most.
TEST(Regression, Seed1964RemovedServerStuckInJointConfiguration) { expectPasses(seed(1964)); }

// A leader of an older term, removed by a change that completed after the heal, went on
// believing it led: with neither pre-vote nor check-quorum the members ignore its heartbeats of
// a stale term (as etcd-io/raft does), nobody else writes to a non-member, and a client kept
// proposing through it until its deadline (found by a sweep of 184,058 seeds, 1 in 92,000).
// The simulated operator now retires removed servers on every tick after the heal, not only at
// the heal.
TEST(Regression, Seed20155LeaderRemovedAfterTheHeal) { expectPasses(seed(20155)); }
TEST(Regression, Seed75524LeaderRemovedAfterTheHealInAJointConfiguration) { expectPasses(seed(75524)); }

// A leader counted the entries it had left unsynced (Ready::syncOptional) as durable at the
// next Ready it advanced as durable, though that Ready wrote no entries and so was not synced:
// a crash then lost a committed entry from all but a minority (found while the lazy sync was
// written, 7 seeds in 8,000). Only a synced Ready that writes entries, or persisted(), counts
// them now.
TEST(Regression, Seed612UnsyncedLeaderEntriesCountedAfterAReadyWithoutEntries) { expectPasses(seed(612)); }
TEST(Regression, Seed191UnsyncedLeaderEntriesCountedAfterAReadyWithoutEntries) { expectPasses(seed(191)); }

// Consensus::applicable() (entries committed while the node's write is in flight) once handed
// out entries that a snapshot taken in since the last Ready covers, which the log no longer
// held: they are now left to the Ready that carries the snapshot.
TEST(Regression, Seed80EntriesCoveredByASnapshotTakenInDuringAWrite) {
  Options o = seed(80);
  o.faults = kAllFaults;
  expectPasses(o);
}

// Sessions that expire all the time (100 ms of the log's clock): clients register again and
// every seed still passes, exactly once.
TEST(Sessions, ClientsRegisterAgainAfterExpiry) {
  uint64_t expired = 0, registrations = 0;
  for (uint64_t s = 1; s <= 10; ++s) {
    Options o = seed(s);
    o.sessionTimeoutMs = 100;
    Result r = expectPasses(o);
    expired += r.sessionsExpired;
    registrations += r.registrations;
  }
  EXPECT_GT(expired, 0u);
  EXPECT_GT(registrations, 10u * 4);
}

// Lease reads (ReadMode::Lease, with check-quorum; keel-sim --read-mode lease). These seeds
// caught the first lease, which answered at once whenever the node was leader: an isolated
// leader kept answering for up to two election timeouts (check-quorum's), while the others
// elected a new leader after one, and the old leader of a leadership transfer answered at once
// as well (tests/scenario/lease-test.c++ has the same in small). 5 of seeds 1..2000 failed.
Options leaseSeed(uint64_t s) {
  Options o = seed(s);
  o.configure = [](Config& c) {
    c.checkQuorum = true;
    c.readMode = ReadMode::Lease;
  };
  return o;
}

TEST(LeaseReads, SeedsThatCaughtALeaseAsLongAsTheLeadership) {
  for (uint64_t s : {764, 938, 1161, 1333, 1843}) {
    SCOPED_TRACE("seed " + std::to_string(s));
    expectPasses(leaseSeed(s));
  }
}

// Five nodes, lease reads, pre-vote off (the seed's draw): after the heal a removed server and
// a follower with a stale log kept campaigning in rising terms, and each of
// their vote requests reset the election timers of the servers that could win (they stepped
// down to follower, and stepping down reset the timer); no election ended and a read timed out.
// Fixed in the core: a higher term seen in a vote request or response leaves the timer running
// (Figure 2 of the paper resets it only for the leader's AppendEntries and a granted vote).
TEST(Regression, Seed2618CandidatesThatCannotWinResetTheTimersOfThoseThatCan) {
  Options o = leaseSeed(2618);
  o.nodes = 5;
  expectPasses(o);
}

TEST(LeaseReads, Sweep) {
  uint64_t seeds = kSanitized ? 20 : 300;
  for (uint64_t s = 1; s <= seeds; ++s) {
    SCOPED_TRACE("seed " + std::to_string(s));
    if (!expectPasses(leaseSeed(s)).ok) return;
  }
}

}  // namespace
}  // namespace keel::sim::testing
