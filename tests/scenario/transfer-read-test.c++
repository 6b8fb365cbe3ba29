// Leadership transfer (dissertation §3.10) and linearizable reads (paper §8, dissertation
// §6.4): ReadIndex on the leader and through followers, on a fresh leader, lease reads. The
// scenarios of etcd-io/raft's TestLeaderTransfer* and TestReadOnly* on keel's API.
#include "scenario.h"

namespace keel::testing {
namespace {

// ---------------------------------------------------------------------------------------------
// Leadership transfer

// diss. §3.10: "The prior leader sends its log entries to the target server" until it is up to
// date, then "sends a TimeoutNow request to the target server", which starts an election at
// once (etcd's TestLeaderTransferToSlowFollower).
TEST(Transfer, ToALaggingFollowerCatchesItUpFirst) {
  Cluster c(3);
  c.recordTranscript = true;
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  c.heal();
  EXPECT_LT(c[3].lastIndex(), c[1].lastIndex());
  int timeoutNows = 0;
  c.filter = [&](const Message& m) {
    if (m.type == MessageType::TimeoutNow) {
      ++timeoutNows;
      EXPECT_EQ(c[3].lastIndex(), c[1].lastIndex()) << "TimeoutNow before the target caught up";
    }
    return true;
  };
  ASSERT_TRUE(c[1].transferLeadership(NodeId{3}).ok());
  EXPECT_EQ(c[1].transferTarget(), NodeId{3});
  EXPECT_EQ(c.propose(1, "refused").refusal, Refusal::TransferInProgress);
  c.pump();
  run(c, 1);
  EXPECT_EQ(timeoutNows, 1);
  EXPECT_EQ(c[3].role(), Role::Leader);
  EXPECT_EQ(c[3].term(), Term{2});
  EXPECT_EQ(c[1].role(), Role::Follower);
  EXPECT_EQ(c[1].transferTarget(), kNoNode);
  ASSERT_TRUE(c.propose(3, "new leader").ok());
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(appliedData(c, 1).back(), "new leader");
}

// A target that is far behind catches up from a snapshot first (etcd's
// TestLeaderTransferAfterSnapshot).
TEST(Transfer, ToAFollowerThatNeedsASnapshot) {
  Cluster c(3);
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 1);
  c.compact(1);
  c.heal();
  ASSERT_TRUE(c[1].transferLeadership(NodeId{3}).ok());
  for (int i = 0; i < 5 && c[3].role() != Role::Leader; ++i) run(c, 1);
  EXPECT_EQ(c[3].role(), Role::Leader);
  ASSERT_TRUE(settle(c));
}

// diss. §3.10: "If the transfer does not complete within an election timeout, the prior leader
// aborts the transfer and resumes accepting client requests" (etcd's
// TestLeaderTransferTimeout).
TEST(Transfer, AbortedAfterAnElectionTimeout) {
  Cluster c(3);
  c.elect(1);
  c.isolate(3);
  ASSERT_TRUE(c[1].transferLeadership(NodeId{3}).ok());
  EXPECT_EQ(c.propose(1, "x").refusal, Refusal::TransferInProgress);
  // Asking again for the same target changes nothing; asking for another target switches.
  EXPECT_TRUE(c[1].transferLeadership(NodeId{3}).ok());
  run(c, 10);
  EXPECT_EQ(c[1].transferTarget(), kNoNode);
  EXPECT_EQ(c[1].role(), Role::Leader);
  EXPECT_TRUE(c.propose(1, "x").ok());
}

// Requests a transfer cannot honour (etcd's TestLeaderTransferToSelf, ...ToNonExistingNode,
// TestTransferNonMember).
TEST(Transfer, RefusedOrTrivialRequests) {
  Cluster c(3);
  c.elect(1);
  EXPECT_TRUE(c[1].transferLeadership(NodeId{1}).ok());  // already the leader
  EXPECT_EQ(c[1].transferTarget(), kNoNode);
  EXPECT_EQ(c[1].transferLeadership(NodeId{7}).refusal, Refusal::UnknownNode);
  Result r = c[2].transferLeadership(NodeId{3});
  EXPECT_EQ(r.refusal, Refusal::NotLeader);
  EXPECT_EQ(r.leader, NodeId{1});
  // A TimeoutNow that reaches a non-member or a learner is ignored.
  Cluster l({NodeId{1}, NodeId{2}, NodeId{3}}, votersOf({1, 2}, {3}));
  l.elect(1);
  Message t = msg(MessageType::TimeoutNow, 1, 1);
  t.to = NodeId{3};
  l.deliver(t);
  l.pump();
  EXPECT_NE(l[3].role(), Role::Leader);
}

// A second transfer to another node replaces the first (etcd's
// TestLeaderTransferSecondTransferToAnotherNode), and transferring back works (etcd's
// TestLeaderTransferBack).
TEST(Transfer, SecondTransferToAnotherNodeAndBack) {
  Cluster c(3);
  c.elect(1);
  c.isolate(3);
  ASSERT_TRUE(c[1].transferLeadership(NodeId{3}).ok());
  c.pump();
  ASSERT_TRUE(c[1].transferLeadership(NodeId{2}).ok());
  c.pump();
  EXPECT_EQ(c[2].role(), Role::Leader);
  c.heal();
  ASSERT_TRUE(settle(c));
  ASSERT_TRUE(c[2].transferLeadership(NodeId{1}).ok());
  c.pump();
  EXPECT_EQ(c[1].role(), Role::Leader);
  ASSERT_TRUE(settle(c));
}

// Removing the transfer target from the configuration cancels the transfer (etcd's
// TestLeaderTransferRemoveNode).
TEST(Transfer, RemovingTheTargetCancelsTheTransfer) {
  Cluster c(3, [](Config& cfg) { cfg.checkQuorum = false; });
  c.elect(1);
  run(c, 1);
  c.isolate(3);
  ASSERT_TRUE(change(c[1], MembershipChange::Kind::Remove, 3).ok());
  ASSERT_TRUE(c[1].transferLeadership(NodeId{3}).ok());
  c.pump();
  run(c, 1);
  EXPECT_FALSE(c[1].membership().contains(NodeId{3}));
  EXPECT_EQ(c[1].transferTarget(), kNoNode);
  EXPECT_TRUE(c.propose(1, "x").ok());
}

// The transfer target's vote request bypasses the followers' lease (diss. §4.2.3: "a server
// ... should not [disregard RequestVote] if the leader itself asked the target to campaign").
TEST(Transfer, TargetsVoteBypassesTheLease) {
  Cluster c(5);
  c.elect(1);
  ASSERT_TRUE(c[1].transferLeadership(NodeId{5}).ok());
  c.pump();
  EXPECT_EQ(c[5].role(), Role::Leader);
  for (uint64_t id = 1; id <= 4; ++id) EXPECT_EQ(c[id].leader(), NodeId{5}) << id;
}

// ---------------------------------------------------------------------------------------------
// Reads

// §8: "a leader must have the latest information on which entries are committed ... Raft
// handles this by having each leader commit a blank no-op entry into the log at the start of
// its term." A ReadIndex on a fresh leader waits until that no-op is committed, then for its
// heartbeat round (diss. §6.4 steps 1-3) (etcd's TestReadOnlyForNewLeader).
TEST(ReadIndex, OnAFreshLeaderWaitsForItsNoOpToCommit) {
  Cluster c(3);
  c.recordTranscript = true;
  c.elect(1);
  ASSERT_TRUE(c.propose(1, "a").ok());
  ASSERT_TRUE(settle(c));
  // 2 takes over, but no acknowledgement reaches it yet: its no-op is not committed.
  c.filter = [](const Message& m) { return m.type != MessageType::AppendResponse; };
  ASSERT_TRUE(c[1].transferLeadership(NodeId{2}).ok());
  c.pump();
  ASSERT_EQ(c[2].role(), Role::Leader);
  Index noop = c[2].lastIndex();
  EXPECT_LT(c[2].commitIndex(), noop);
  ASSERT_TRUE(c[2].readIndex(41).ok());
  ASSERT_TRUE(c[3].readIndex(42).ok());  // forwarded to 2
  c.pump();
  run(c, 2);
  EXPECT_TRUE(c.node(2).reads.empty());
  EXPECT_TRUE(c.node(3).reads.empty());
  c.filter = nullptr;
  run(c, 2);
  ASSERT_EQ(c.node(2).reads.size(), 1u);
  EXPECT_EQ(c.node(2).reads[0].context, 41u);
  EXPECT_GE(c.node(2).reads[0].index, noop);
  ASSERT_EQ(c.node(3).reads.size(), 1u);
  EXPECT_EQ(c.node(3).reads[0].context, 42u);
  EXPECT_GE(c.node(3).reads[0].index, noop);
}

// diss. §6.4: every read asked for before the next Ready shares one round of heartbeats.
TEST(ReadIndex, ReadsBeforeOneReadyShareOneHeartbeatRound) {
  Cluster c(3);
  c.elect(1);
  run(c, 1);
  int heartbeats = 0;
  c.filter = [&](const Message& m) { heartbeats += m.type == MessageType::Heartbeat; return true; };
  for (uint64_t ctx = 1; ctx <= 5; ++ctx) ASSERT_TRUE(c[1].readIndex(ctx).ok());
  c.pump();
  EXPECT_EQ(heartbeats, 2);  // one per follower
  ASSERT_EQ(c.node(1).reads.size(), 5u);
  for (uint64_t k = 0; k < 5; ++k) EXPECT_EQ(c.node(1).reads[k].context, k + 1);
  // Reads of a later round wait for that round.
  ASSERT_TRUE(c[1].readIndex(6).ok());
  c.pump();
  EXPECT_EQ(c.node(1).reads.size(), 6u);
  EXPECT_EQ(heartbeats, 4);
}

// One round in flight: reads asked while a round travels wait, and all of them share the
// round that goes out once a quorum confirmed the previous one.
TEST(ReadIndex, OneRoundInFlightCarriesEveryReadAskedMeanwhile) {
  Cluster c(3);
  c.elect(1);
  run(c, 1);
  int heartbeats = 0;
  c.filter = [&](const Message& m) { heartbeats += m.type == MessageType::Heartbeat; return true; };
  ASSERT_TRUE(c[1].readIndex(1).ok());
  ASSERT_TRUE(c.round());  // round 1 goes out and reaches the followers
  EXPECT_EQ(heartbeats, 2);
  for (uint64_t ctx = 2; ctx <= 4; ++ctx) ASSERT_TRUE(c[1].readIndex(ctx).ok());
  ASSERT_TRUE(c.round());  // the answers come back; round 2 waited for them
  EXPECT_EQ(heartbeats, 2);
  ASSERT_EQ(c.node(1).reads.size(), 0u);  // released by the next Ready
  c.pump();
  EXPECT_EQ(heartbeats, 4);  // one more round, for three reads
  ASSERT_EQ(c.node(1).reads.size(), 4u);
  for (uint64_t k = 0; k < 4; ++k) EXPECT_EQ(c.node(1).reads[k].context, k + 1);
  // A round whose heartbeats were lost delays the reads behind it until the heartbeat tick.
  c.isolate(2);
  c.isolate(3);
  ASSERT_TRUE(c[1].readIndex(5).ok());
  c.pump();
  ASSERT_TRUE(c[1].readIndex(6).ok());
  c.pump();
  EXPECT_EQ(c.node(1).reads.size(), 4u);
  c.heal();
  c.tick(1, 1);  // heartbeatTicks is 1 in the test clusters
  c.pump();
  EXPECT_EQ(c.node(1).reads.size(), 6u);
}

// A read answered through a follower carries the commit index the follower needs to serve it.
// A follower without a leader refuses; a "leader" that is not one refuses a forwarded read.
TEST(ReadIndex, ThroughFollowersAndLearners) {
  Cluster c({NodeId{1}, NodeId{2}, NodeId{3}, NodeId{4}}, votersOf({1, 2, 3}, {4}));
  c.elect(1);
  c.propose(1, "a");
  c.pump();
  ASSERT_TRUE(c[4].readIndex(9).ok());  // a learner forwards too (etcd's TestReadOnlyWithLearner)
  c.pump();
  ASSERT_EQ(c.node(4).reads.size(), 1u);
  EXPECT_EQ(c.node(4).reads[0].index, Index{2});
  EXPECT_GE(c[4].commitIndex(), Index{2});
  // No leader known: refused.
  Cluster d(3);
  EXPECT_EQ(d[2].readIndex(1).refusal, Refusal::NotLeader);
  // A forwarded read that reaches a follower is refused with a ReadIndexResponse.
  Message r = msg(MessageType::ReadIndex, 3, 1);
  r.to = NodeId{2};
  r.context = 5;
  c.recordTranscript = true;
  c.deliver(r);
  c.pump();
  bool refused = false;
  for (const std::string& line : c.transcript)
    refused = refused || line.find("n2->n3 ReadIndexResponse") != std::string::npos;
  EXPECT_TRUE(refused);
  EXPECT_TRUE(c.node(3).reads.empty());
}

// A follower's forwarded read is its own acknowledgement of the leader, sent after the read
// reached it: where the leader and that follower make a quorum (3 voters), the leader answers at
// once, without a heartbeat round. With 5 voters, or from a learner, a round is still needed.
TEST(ReadIndex, ThroughAFollowerThatCompletesTheQuorumTakesNoRound) {
  Cluster c(3);
  c.elect(1);
  ASSERT_TRUE(c.propose(1, "a").ok());
  ASSERT_TRUE(settle(c));
  int heartbeats = 0;
  c.filter = [&](const Message& m) { heartbeats += m.type == MessageType::Heartbeat; return true; };
  ASSERT_TRUE(c[2].readIndex(7).ok());
  ASSERT_TRUE(c[1].readIndex(8).ok());  // the leader's own read still takes its round
  c.pump();
  EXPECT_EQ(heartbeats, 2);
  ASSERT_EQ(c.node(2).reads.size(), 1u);
  EXPECT_EQ(c.node(2).reads[0].context, 7u);
  EXPECT_EQ(c.node(2).reads[0].index, c[1].commitIndex());
  ASSERT_EQ(c.node(1).reads.size(), 1u);
  // Alone, a follower's read costs one request and its answer, and no heartbeat.
  heartbeats = 0;
  int messages = 0;
  c.filter = [&](const Message& m) { heartbeats += m.type == MessageType::Heartbeat; ++messages; return true; };
  ASSERT_TRUE(c[3].readIndex(9).ok());
  c.pump();
  EXPECT_EQ(heartbeats, 0);
  EXPECT_EQ(messages, 2);
  ASSERT_EQ(c.node(3).reads.size(), 1u);
  EXPECT_EQ(c.node(3).reads[0].index, c[1].commitIndex());

  Cluster five(5);
  five.elect(1);
  run(five, 1);
  heartbeats = 0;
  five.filter = [&](const Message& m) { heartbeats += m.type == MessageType::Heartbeat; return true; };
  ASSERT_TRUE(five[2].readIndex(1).ok());
  five.pump();
  EXPECT_EQ(heartbeats, 4);  // 1 and 2 are not a majority of 5: a round to every follower
  EXPECT_EQ(five.node(2).reads.size(), 1u);

  Cluster learner({NodeId{1}, NodeId{2}, NodeId{3}, NodeId{4}}, votersOf({1, 2, 3}, {4}));
  learner.elect(1);
  run(learner, 1);
  heartbeats = 0;
  learner.filter = [&](const Message& m) { heartbeats += m.type == MessageType::Heartbeat; return true; };
  ASSERT_TRUE(learner[4].readIndex(1).ok());
  learner.pump();
  EXPECT_EQ(heartbeats, 3);  // a learner acknowledges nothing
  EXPECT_EQ(learner.node(4).reads.size(), 1u);
}

// The acknowledgement a forwarded read brings covers that read only. Here 2's request leaves
// in 1's term and is held in the network; meanwhile 2 and 3 elect 3 in a later term, and 3
// commits a write; then a read reaches the deposed 1, and only after it 2's old request.
// Counting the request as 2's acknowledgement of 1's round would answer that read with a commit
// index that misses the write, a stale read. 2's own read is safe: it was asked before 3 was
// elected.
TEST(ReadIndex, AForwardedReadAcknowledgesNoOtherRead) {
  Cluster c(3, [](Config& cfg) { cfg.checkQuorum = false; });  // 1 does not step down by itself
  c.elect(1);
  ASSERT_TRUE(c.propose(1, "a").ok());
  ASSERT_TRUE(settle(c));
  std::vector<Message> held;
  c.filter = [&](const Message& m) {
    if (m.type != MessageType::ReadIndex) return true;
    held.push_back(m);
    return false;
  };
  ASSERT_TRUE(c[2].readIndex(1).ok());
  c.pump();
  ASSERT_EQ(held.size(), 1u);
  c.filter = nullptr;
  c.isolate(1);
  c.elect(3);
  ASSERT_GT(c[3].term(), held[0].term);
  ASSERT_TRUE(c.propose(3, "b").ok());
  run(c, 3);
  Index write = c[3].lastIndex();
  ASSERT_GE(c[3].commitIndex(), write);
  EXPECT_LT(c[1].commitIndex(), write);
  ASSERT_EQ(c[1].role(), Role::Leader);
  ASSERT_TRUE(c[1].readIndex(2).ok());  // its round goes nowhere: 1 is cut off
  c.pump();
  c.heal();
  c.deliver(held[0]);  // 2's old request, of 1's term, reaches 1 at last
  c.pump();
  EXPECT_TRUE(c.node(1).reads.empty()) << "answered at " << toString(c.node(1).reads[0].index);
  c.tick(1, 1);  // its next heartbeats meet 3's term and depose it; the read dies unanswered
  c.pump();
  EXPECT_NE(c[1].role(), Role::Leader);
  EXPECT_TRUE(c.node(1).reads.empty());
}

// A read asked of a leader that loses its leadership before the round completes is never
// answered (the caller times out and retries): the read states die with the role.
TEST(ReadIndex, LostLeadershipDropsPendingReads) {
  Cluster c(3, [](Config& cfg) { cfg.checkQuorum = false; });
  c.elect(1);
  run(c, 1);
  c.isolate(1);
  ASSERT_TRUE(c[1].readIndex(1).ok());
  c.pump();
  c.heal();
  c.elect(2);
  c.pump();
  run(c, 2);
  EXPECT_TRUE(c.node(1).reads.empty());
}

// diss. §6.4.1: with leases, the leader answers at once; a follower's read is answered by the
// leader at once as well. A single voter answers at once in any mode.
TEST(ReadIndex, LeaseReadsAndSingleNode) {
  Cluster c(3, [](Config& cfg) { cfg.readMode = ReadMode::Lease; });
  // (A node votes for no one within an election timeout of its start: elected by timeouts.)
  uint64_t l = c.electByTimeout().value;
  ASSERT_NE(l, 0u);
  run(c, 1);
  uint64_t f = l % 3 + 1;
  int heartbeats = 0;
  c.filter = [&](const Message& m) { heartbeats += m.type == MessageType::Heartbeat; return true; };
  ASSERT_TRUE(c[l].readIndex(1).ok());
  ASSERT_TRUE(c[f].readIndex(2).ok());
  c.pump();
  EXPECT_EQ(heartbeats, 0);
  EXPECT_EQ(c.node(l).reads.size(), 1u);
  EXPECT_EQ(c.node(f).reads.size(), 1u);
  Cluster one(1);
  one.elect(1);
  ASSERT_TRUE(one[1].readIndex(3).ok());
  one.pump();
  EXPECT_EQ(one.node(1).reads.size(), 1u);
  // A lease without check-quorum is refused as a configuration error.
  Config bad;
  bad.id = NodeId{1};
  bad.readMode = ReadMode::Lease;
  bad.checkQuorum = false;
  EXPECT_FALSE(bad.validate().empty());
}

}  // namespace
}  // namespace keel::testing
