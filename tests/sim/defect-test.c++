// Proof that the simulator finds bugs: with a deliberate defect switched on (a keel::Fault of
// the core, or a defect of the simulated driver), some seed among the first kBound must fail.
// Each test names the fault mix that exposes its defect and the bound it is held to; the
// bounds have a margin over the first failing seed measured when they were set.
#include "sim-test.h"

#include <cstdio>

namespace keel::sim::testing {
namespace {

struct Found {
  uint64_t seed = 0;
  std::string failure;
};

// The first failing seed in [1, bound], or seed 0.
Found firstFailure(Options o, uint64_t bound) {
  for (uint64_t seed = 1; seed <= bound; ++seed) {
    o.seed = seed;
    Result r = run(o);
    if (!r.ok) {
      std::printf("caught at seed %llu: %s\n", (unsigned long long)seed, r.failure.c_str());
      return {seed, r.failure};
    }
  }
  return {};
}

TEST(Defects, CommitPreviousTermIsCaught) {
  // §5.4.2: a leader that commits an entry of an earlier term by counting replicas.
  Options o;
  o.faults = kCrashes | kNetwork | kPartitions;
  o.coreFaults = coreFault(keel::Fault::CommitPreviousTerm);
  Found f = firstFailure(o, 30);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
  EXPECT_NE(f.failure.find("safety"), std::string::npos) << f.failure;
}

TEST(Defects, GrantAnyVoteIsCaught) {
  // §5.2/§5.4.1: votes granted twice in a term and to candidates with stale logs.
  Options o;
  o.coreFaults = coreFault(keel::Fault::GrantAnyVote);
  Found f = firstFailure(o, 30);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
  EXPECT_NE(f.failure.find("safety"), std::string::npos) << f.failure;
}

TEST(Defects, AckBeforePersistIsCaught) {
  // §5.1: acknowledgements (and votes) sent before the writes are durable, and crashes that
  // lose what was not synced.
  Options o;
  o.faults = kCrashes | kTornWrites | kSlowDisk;
  o.coreFaults = coreFault(keel::Fault::AckBeforePersist);
  Found f = firstFailure(o, 120);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
}

TEST(Defects, ForgetVoteOnRestartIsCaught) {
  // §5.1, Figure 2: votedFor is persistent state. The simulated storage loses it on a
  // restart; a node that crashes right after granting a vote can then vote twice in a term.
  Options o;
  o.faults = kCrashes;
  o.defects = kForgetVote;
  Found f = firstFailure(o, 150);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
  EXPECT_NE(f.failure.find("safety"), std::string::npos) << f.failure;
}

TEST(Defects, ReadWithoutQuorumIsCaught) {
  // §6.4: a leader that answers ReadIndex without confirming it still leads. Without
  // check-quorum an isolated leader keeps believing it leads until it hears of a new term.
  Options o;
  o.faults = kPartitions | kNetwork;
  o.coreFaults = coreFault(keel::Fault::ReadWithoutQuorum);
  o.configure = [](Config& c) { c.checkQuorum = false; };
  Found f = firstFailure(o, 100);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
  EXPECT_NE(f.failure.find("linearizab"), std::string::npos) << f.failure;
}

TEST(Defects, ForwardedReadTakenForAnAcknowledgementOfTheWholeRoundIsCaught) {
  // §6.4 step 3: a leader that takes a follower's forwarded read for that follower's
  // acknowledgement of its pending read round answers reads that reached it after the follower
  // sent the request: a request held in the network while the others elect a leader and write.
  Options o;
  o.nodes = 3;  // the leader and the asker are a quorum: the leader answers the request at once
  o.faults = kPartitions | kNetwork | kHeldReads;
  o.clients = 16;  // on one key: more reads at the leader to answer early, more writes to miss
  o.keys = 1;
  o.coreFaults = coreFault(keel::Fault::ForwardedReadAcksRound);
  o.configure = [](Config& c) { c.checkQuorum = false; };
  Found f = firstFailure(o, 200);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
  EXPECT_NE(f.failure.find("linearizab"), std::string::npos) << f.failure;
}

TEST(Defects, StaleReadsAreCaught) {
  // §6.4: a node that answers reads from its local state without ReadIndex.
  Options o;
  o.defects = kStaleReads;
  Found f = firstFailure(o, 10);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
  EXPECT_NE(f.failure.find("linearizab"), std::string::npos) << f.failure;
}

TEST(Defects, ALazySyncThatSyncsNothingIsCaught) {
  // §10.2.1 (diss.): a leader may leave its own write unsynced while its followers alone form a
  // quorum, but its copy may count towards a commit only once it is durable. Here the lazy
  // sync tells the core so without syncing, and crashes lose the leader's copy.
  Options o;
  o.faults = kCrashes | kTornWrites | kSlowDisk;
  o.defects = kLazySyncWithoutSync;
  Found f = firstFailure(o, 150);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
  EXPECT_NE(f.failure.find("safety"), std::string::npos) << f.failure;
}

TEST(Defects, RetryOfAnExpiredWriteIsCaught) {
  // §6.3: a client that waits for the answer of the last copy of a write only, and on
  // SessionExpired proposes the write again in a new session: an earlier copy may have
  // applied before the session expired, and the write then applies twice. Sessions expire
  // after 100 ms of the log's clock here, so that they do within a run.
  Options o;
  o.sessionTimeoutMs = 100;
  o.defects = kRetryExpiredWrites;
  Found f = firstFailure(o, 150);
  ASSERT_NE(f.seed, 0u) << "the defect went unnoticed";
  EXPECT_NE(f.failure.find("linearizab"), std::string::npos) << f.failure;
}

}  // namespace
}  // namespace keel::sim::testing
