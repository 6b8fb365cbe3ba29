// Multi-node election and safety scenarios: Figure 8 (§5.4.2), pre-vote (diss. §9.6) and
// check-quorum (diss. §6.2) under partial, non-transitive partitions, nodes rejoining with a
// higher term, stale messages, and the election scenarios of etcd-io/raft's raft_test.go.
// The Cluster's InvariantChecker runs after every round of every test.
#include "scenario.h"

namespace keel::testing {
namespace {

// Campaigns until `id` leads (a first attempt may lose to votes already cast in its term).
void campaignUntilLeader(Cluster& c, uint64_t id, int attempts = 5) {
  for (int i = 0; i < attempts && c[id].role() != Role::Leader; ++i) {
    c[id].campaign();
    c.pump();
  }
  ASSERT_EQ(c[id].role(), Role::Leader) << c.describe();
}

// Pumps like Cluster::pump, but passes every message through `rewrite` before delivering it.
void pumpRewriting(Cluster& c, const std::function<void(Message&)>& rewrite) {
  c.holdMessages = true;
  for (int r = 0; r < 1000; ++r) {
    c.round();
    if (c.held.empty()) break;
    std::vector<Message> batch;
    batch.swap(c.held);
    for (Message& m : batch) {
      rewrite(m);
      c.deliver(m);
    }
  }
  c.holdMessages = false;
}

// ---------------------------------------------------------------------------------------------
// Figure 8 (§5.4.2)

// Figure 8, (a) to (d): "a leader cannot immediately conclude that an entry from a previous term
// is committed once it is stored on a majority of servers" ... "a log entry that has been
// stored on a majority of servers [can] still be overwritten by a future leader."
//
// keel's leader appends a no-op when it takes office (§8), so in (c) S1's log holds an entry of
// its own term after the old one; the network drops every Append that would deliver that no-op,
// which leaves exactly the figure's situation: the term-1 entry "a" at index 2 on S1, S2 and S3
// (a majority, known to S1) and nothing of S1's term anywhere else. (In the figure S2 gets the
// entry already in (a); here it gets it in (c), which changes nothing that matters.)
TEST(Paper_5_4_2, Figure8_OldTermEntryOnAMajorityIsNotCommittedAndCanBeOverwritten) {
  Cluster c(5, [](Config& cfg) {
    paperConfig(cfg);
    cfg.maxMessageBytes = 1;  // one entry of data per Append
  });
  c.recordTranscript = true;
  c.elect(1);
  run(c, 1);  // everyone learns that the term-1 no-op at index 1 is committed
  // (a) S1 leads in term 1 and appends "a" at index 2, which reaches nobody.
  c.isolate(1);
  ASSERT_TRUE(c.propose(1, "a").ok());
  c.pump();
  // (b) S1 crashes; S5 is elected in term 2 with the votes of S2, S3, S4 and appends its no-op
  // at index 2, which reaches nobody either; then S5 crashes.
  c.crash(1);
  c.heal();
  c.filter = [](const Message& m) { return !(m.from == NodeId{5} && m.type == MessageType::Append); };
  c.elect(5);
  EXPECT_EQ(c[5].term(), Term{2});
  EXPECT_EQ(logTerms(c, 5), (std::vector<uint64_t>{1, 2}));
  c.crash(5);
  // (c) S1 restarts and is elected in term 3; it replicates index 2 to S2 and S3 (a majority
  // with itself) but none of the entries of its own term: the network shortens S1's Appends
  // so that they carry no entry of term 3 (as if S1 had crashed before sending the rest).
  c.filter = nullptr;
  c.cut(1, 4);
  auto noTerm3 = [](Message& m) {
    if (m.from != NodeId{1} || m.type != MessageType::Append) return;
    std::erase_if(m.entries, [](const Entry& e) { return e.term == Term{3}; });
  };
  c.restart(1);
  for (int i = 0; i < 5 && c[1].role() != Role::Leader; ++i) {
    c[1].campaign();
    pumpRewriting(c, noTerm3);
  }
  ASSERT_EQ(c[1].role(), Role::Leader);
  EXPECT_EQ(c[1].term(), Term{3});
  for (int i = 0; i < 3; ++i) {
    c.tickAll();
    pumpRewriting(c, noTerm3);
  }
  ASSERT_EQ(logTerms(c, 2), (std::vector<uint64_t>{1, 1})) << c.describe(60);
  ASSERT_EQ(logTerms(c, 3), (std::vector<uint64_t>{1, 1}));
  EXPECT_EQ(c[1].progress(NodeId{2})->match, Index{2});
  EXPECT_EQ(c[1].progress(NodeId{3})->match, Index{2});
  // §5.4.2: "Raft never commits log entries from previous terms by counting replicas."
  EXPECT_EQ(c[1].commitIndex(), Index{1});
  // (d) S1 crashes; S5 restarts and wins term 4 with the votes of S2, S3 and S4 (its last term
  // 2 is later than their 1), and overwrites index 2 everywhere.
  c.crash(1);
  c.heal();
  c.restart(5);
  campaignUntilLeader(c, 5);
  EXPECT_EQ(c[5].term(), Term{4});
  c.restart(1);
  ASSERT_TRUE(c.propose(5, "b").ok());
  ASSERT_TRUE(settle(c));
  for (uint64_t id = 1; id <= 5; ++id) {
    EXPECT_EQ(logTerms(c, id), (std::vector<uint64_t>{1, 2, 4, 4})) << id;
    EXPECT_EQ(appliedData(c, id), std::vector<std::string>{"b"}) << id;  // "a" was never committed
  }
}

// Figure 8 (e): "if S1 replicates an entry from its current term on a majority of the servers
// before crashing, as in (e), then this entry is committed (S5 cannot win an election). At this
// point all preceding entries in the log are committed as well."
TEST(Paper_5_4_2, Figure8_EntryOfTheCurrentTermOnAMajorityCommitsThePrecedingOnes) {
  Cluster c(5, [](Config& cfg) {
    paperConfig(cfg);
    cfg.maxMessageBytes = 1;
  });
  c.elect(1);
  run(c, 1);
  c.isolate(1);
  ASSERT_TRUE(c.propose(1, "a").ok());
  c.pump();
  c.crash(1);
  c.heal();
  c.filter = [](const Message& m) { return !(m.from == NodeId{5} && m.type == MessageType::Append); };
  c.elect(5);
  c.crash(5);
  // (e) S1 leads in term 3 and replicates index 2 and its no-op to S2 and S3, but not to S4.
  c.filter = [](const Message& m) { return !(m.from == NodeId{1} && m.to == NodeId{4}); };
  c.restart(1);
  campaignUntilLeader(c, 1);
  c.pump();
  EXPECT_EQ(c[1].commitIndex(), Index{3});  // the no-op of term 3 commits "a" with it
  c.crash(1);
  c.filter = nullptr;
  c.restart(5);
  for (int i = 0; i < 5; ++i) {
    c[5].campaign();
    c.pump();
    EXPECT_NE(c[5].role(), Role::Leader) << "S5 lacks a committed entry: it cannot win";
  }
  c.restart(1);
  ASSERT_TRUE(settle(c, 500));
  for (uint64_t id = 1; id <= 5; ++id) {
    std::vector<std::string> data = appliedData(c, id);
    ASSERT_FALSE(data.empty()) << id;
    EXPECT_EQ(data[0], "a") << id;
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-vote and check-quorum under partial partitions

// diss. §9.6: with pre-vote, "a server [that] is partitioned from the leader but can reach
// others" cannot disrupt the cluster: its pre-votes fail because the others still hear from
// the leader (diss. §4.2.3: they disregard vote requests within the minimum election timeout
// of hearing from a current leader), so its term never rises. S3 below can reach S2 but not
// the leader S1: the partition is not transitive.
TEST(PreVote, NodeCutFromTheLeaderOnlyCannotDisruptTheCluster) {
  Cluster c(3);
  c.elect(1);
  c.cutBoth(1, 3);
  for (int i = 0; i < 100; ++i) {
    if (i % 10 == 0) ASSERT_TRUE(c.propose(1, "v" + std::to_string(i)).ok());
    run(c, 1);
  }
  EXPECT_EQ(c[1].role(), Role::Leader);
  EXPECT_EQ(c[1].term(), Term{1});
  EXPECT_EQ(c[2].term(), Term{1});
  EXPECT_EQ(c[3].term(), Term{1}) << "a failed pre-vote does not raise the term";
  EXPECT_NE(c[3].role(), Role::Leader);
  EXPECT_EQ(appliedData(c, 2).size(), 10u);
  // Healed, S3 catches up without any election.
  c.heal();
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c.leader(), NodeId{1});
  EXPECT_EQ(c[3].term(), Term{1});
  EXPECT_EQ(appliedData(c, 3).size(), 10u);
}

// Without pre-vote, check-quorum's lease alone keeps S2 loyal while the partition lasts, but S3's
// term rises with every timeout; once healed, S3's answer to the leader's heartbeat carries that
// term and deposes the leader (etcd's TestDisruptiveFollower). The cluster recovers with a
// leader that holds every committed entry (S3 cannot win: its log is behind).
TEST(CheckQuorum, NodeRejoiningWithAHigherTermDeposesTheLeaderWithoutPreVote) {
  Cluster c(3, [](Config& cfg) { cfg.preVote = false; });
  c.recordTranscript = true;
  c.elect(1);
  c.cutBoth(1, 3);
  for (int i = 0; i < 60; ++i) {
    if (i % 10 == 0) c.propose(1, "v" + std::to_string(i));
    run(c, 1);
  }
  EXPECT_EQ(c[1].role(), Role::Leader) << "S2 disregarded S3's votes within its lease";
  EXPECT_EQ(c[1].term(), Term{1});
  Term t3 = c[3].term();
  EXPECT_GT(t3, Term{2});
  c.heal();
  run(c, 1);
  EXPECT_EQ(c[1].role(), Role::Follower) << "the leader learned of a higher term";
  EXPECT_GE(c[1].term(), t3);
  ASSERT_TRUE(settle(c));
  NodeId l = c.leader();
  EXPECT_NE(l, NodeId{3});
  EXPECT_GT(c[l.value].term(), t3);
  EXPECT_EQ(appliedData(c, 3).size(), 6u);
}

// A leader that can reach only a minority steps down within an election timeout (diss. §6.2:
// "a leader steps down if an election timeout elapses without a successful round of heartbeats
// to a majority of its cluster"), while the majority side, which no longer hears from it,
// elects a new leader. S5 still hears from S1 and holds out until S1 steps down.
TEST(CheckQuorum, LeaderCutFromTheMajorityStepsDownAndTheMajorityElectsANewOne) {
  Cluster c(5);
  c.recordTranscript = true;
  c.elect(1);
  c.propose(1, "before");
  c.pump();
  for (uint64_t id : {2, 3, 4}) c.cutBoth(1, id);
  ASSERT_TRUE(c.propose(1, "lost").ok());  // reaches S5 only: never committed
  run(c, 40);
  EXPECT_NE(c[1].role(), Role::Leader);
  NodeId l = c.leader();
  ASSERT_TRUE(l == NodeId{2} || l == NodeId{3} || l == NodeId{4}) << c.describe();
  ASSERT_TRUE(c.propose(l.value, "after").ok());
  c.heal();
  ASSERT_TRUE(settle(c));
  for (uint64_t id = 1; id <= 5; ++id)
    EXPECT_EQ(appliedData(c, id), (std::vector<std::string>{"before", "after"})) << id;
}

// A stuck candidate (check-quorum without pre-vote) whose term ran ahead is freed: the leader
// learns of its term from the answer to a heartbeat and steps down, and an election brings
// everyone to one term (etcd's TestFreeStuckCandidateWithCheckQuorum).
TEST(CheckQuorum, StuckCandidateWithAHigherTermIsFreed) {
  Cluster c(3, [](Config& cfg) { cfg.preVote = false; });
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 3; ++i) {
    c[3].campaign();
    c.pump();
  }
  EXPECT_EQ(c[3].role(), Role::Candidate);
  EXPECT_EQ(c[3].term(), Term{4});
  c.heal();
  ASSERT_TRUE(settle(c));
  EXPECT_GE(c[c.leader().value].term(), Term{4});
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_EQ(c[id].term(), c[c.leader().value].term());
}

// With pre-vote, a node that rejoins after a partition keeps its old term (it never won a
// pre-vote), so rejoining disturbs nothing (etcd's TestDisruptiveFollowerPreVote).
TEST(PreVote, IsolatedNodeRejoinsWithoutRaisingTheTerm) {
  Cluster c(3);
  c.elect(1);
  c.isolate(3);
  run(c, 100);
  EXPECT_EQ(c[3].term(), Term{1});
  EXPECT_EQ(c[3].role(), Role::PreCandidate);
  c.heal();
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c.leader(), NodeId{1});
  EXPECT_EQ(c[1].term(), Term{1});
}

// A node that rejoins with a higher term in the paper's algorithm (no pre-vote, no
// check-quorum): the leader ignores nothing of it until it campaigns; its vote request raises
// everyone's term (§5.1) but it loses (§5.4.1: its log is behind), and a node with the
// committed entries wins the next election.
TEST(Paper_5_1, NodeRejoiningWithAHigherTermForcesANewElectionItCannotWin) {
  Cluster c(3, paperConfig);
  c.recordTranscript = true;
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 50);
  Term high = c[3].term();
  EXPECT_GT(high, Term{2});
  EXPECT_EQ(c[1].term(), Term{1});
  c.heal();
  // S3 ignores the stale leader's heartbeats; its next vote request carries its term.
  c[3].campaign();
  c.pump();
  EXPECT_NE(c[3].role(), Role::Leader);
  EXPECT_EQ(c[1].term(), c[3].term());
  EXPECT_NE(c[1].role(), Role::Leader);
  ASSERT_TRUE(settle(c));
  EXPECT_NE(c.leader(), NodeId{3});
  EXPECT_EQ(appliedData(c, 3).size(), 5u);
}

// ---------------------------------------------------------------------------------------------
// More election scenarios (etcd's raft_test.go)

// §5.2: every node can become leader in turn (TestLeaderCycle), with and without pre-vote.
TEST(Election, LeaderCycle) {
  for (bool preVote : {false, true}) {
    Cluster c(3, [preVote](Config& cfg) {
      cfg.preVote = preVote;
      cfg.checkQuorum = false;
    });
    for (int round = 0; round < 2; ++round)
      for (uint64_t id = 1; id <= 3; ++id) {
        c.elect(id);
        for (uint64_t other = 1; other <= 3; ++other)
          if (other != id) EXPECT_EQ(c[other].role(), Role::Follower) << other;
      }
    EXPECT_EQ(c[3].term(), Term{6});
  }
}

// §5.2: "split votes are rare and ... are resolved quickly": from any seed, a five-node cluster
// elects exactly one leader within a few election timeouts.
TEST(Election, RandomizedTimeoutsResolveSplitVotes) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Cluster c(5, [seed](Config& cfg) { cfg.seed = seed; });
    NodeId l = c.electByTimeout(200);
    ASSERT_TRUE(l) << "seed " << seed;
    EXPECT_LE(c[l.value].term(), Term{3}) << "seed " << seed;
  }
}

// §5.2: two candidates in the same term: at most one wins; the other steps down when it hears
// from the winner (etcd's TestDuelingCandidates).
TEST(Election, DuelingCandidates) {
  Cluster c(3, paperConfig);
  c.cutBoth(1, 3);
  c[1].campaign();
  c[3].campaign();
  c.pump();
  // 2 voted for one of them; that one leads, the other stays a candidate in term 1.
  int leaders = (c[1].role() == Role::Leader) + (c[3].role() == Role::Leader);
  EXPECT_EQ(leaders, 1);
  c.heal();
  ASSERT_TRUE(settle(c));
}

// §5.2 / §5.4.1: a leader elected over nodes with longer but uncommitted logs overwrites them
// (etcd's TestLeaderElectionOverwriteNewerLogs).
TEST(Election, NewLeaderOverwritesLongerUncommittedLogs) {
  Cluster c(5, paperConfig);
  c.recordTranscript = true;
  c.elect(1);
  run(c, 1);
  // 1 appends two entries that reach only 2.
  for (uint64_t id : {3, 4, 5}) c.cutBoth(1, id);
  c.propose(1, "x");
  c.propose(1, "y");
  c.pump();
  c.crash(1);
  c.heal();
  // 3 wins with 4 and 5 (its log is as up-to-date as theirs).
  c.elect(3);
  c.propose(3, "z");
  c.restart(1);
  ASSERT_TRUE(settle(c));
  for (uint64_t id = 1; id <= 5; ++id) EXPECT_EQ(appliedData(c, id), std::vector<std::string>{"z"}) << id;
}

// §5.1: messages of an old term delivered late change nothing (etcd's TestOldMessages): the
// Appends of a deposed leader, held back and then delivered after two more elections.
TEST(Election, LateMessagesFromAnOldTermAreIgnored) {
  Cluster c(3, [](Config& cfg) { cfg.checkQuorum = false; });
  c.elect(1);
  c.holdMessages = true;
  c.propose(1, "stale");
  c.round();
  std::vector<Message> stale = c.held;
  c.held.clear();
  c.holdMessages = false;
  ASSERT_FALSE(stale.empty());
  c.elect(2);
  c.elect(1);
  c.propose(1, "fresh");
  ASSERT_TRUE(settle(c));
  for (const Message& m : stale) c.deliver(m);
  c.pump();
  c.check();
  ASSERT_TRUE(settle(c));
  for (uint64_t id = 1; id <= 3; ++id) {
    std::vector<std::string> d = appliedData(c, id);
    EXPECT_EQ(std::count(d.begin(), d.end(), "fresh"), 1) << id;
  }
}

// §5.4.2 and §8: a new leader commits the entries of earlier terms through the no-op of its own
// term, without any client proposal (etcd's TestCommitWithoutNewTermEntry; keel's no-op makes
// TestCannotCommitWithoutNewTermEntry's situation impossible).
TEST(Election, NewLeaderCommitsEntriesOfEarlierTermsWithItsNoOp) {
  Cluster c(5, paperConfig);
  c.elect(1);
  run(c, 1);
  for (uint64_t id : {3, 4, 5}) c.cutBoth(1, id);
  c.propose(1, "p1");
  c.propose(1, "p2");
  c.pump();
  EXPECT_EQ(c[1].commitIndex(), Index{1});
  c.heal();
  c.elect(2);  // 2 holds p1 and p2
  c.pump();
  run(c, 1);
  for (uint64_t id = 2; id <= 5; ++id) EXPECT_EQ(appliedData(c, id), (std::vector<std::string>{"p1", "p2"})) << id;
}

// §5.2: a single node with pre-vote elects itself without any message.
TEST(Election, SingleNodeWithPreVoteElectsItself) {
  Cluster c(1);
  c[1].campaign();
  EXPECT_EQ(c[1].role(), Role::Leader);
  EXPECT_EQ(c[1].term(), Term{1});
}

}  // namespace
}  // namespace keel::testing
