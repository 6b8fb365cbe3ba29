// Basic behaviour of the consensus module on small clusters. The paper's rules, one test per
// sentence, are in tests/scenario; these cover the plumbing around them.
#include "cluster.h"

#include <gtest/gtest.h>

namespace keel::testing {
namespace {

TEST(Consensus, RejectsABadConfigWithAClearError) {
  MemoryLog log(Membership{{NodeId{1}}, {}, {}});
  Config c;  // no id
  try {
    Consensus node(c, log);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("id must be"), std::string::npos);
  }
  c.id = NodeId{1};
  MemoryLog learnersOnly(Membership{{}, {}, {NodeId{2}}});  // malformed: no voters
  EXPECT_THROW(Consensus(c, learnersOnly), std::invalid_argument);
  MemoryLog empty;  // no membership at all: a node waiting to join, which is fine
  EXPECT_NO_THROW(Consensus(c, empty));
}

TEST(Consensus, SingleNodeElectsItselfAndCommits) {
  Cluster c(1);
  c.elect(1);
  EXPECT_EQ(c[1].role(), Role::Leader);
  EXPECT_EQ(c[1].term(), Term{1});
  Result r = c.propose(1, "x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.index, Index{2});  // after the leader's no-op
  c.pump();
  EXPECT_EQ(c[1].commitIndex(), Index{2});
  EXPECT_EQ(dataOf(c.node(1).applied), std::vector<std::string>{"x"});
}

TEST(Consensus, SingleNodeElectsItselfByTimeout) {
  Cluster c(1);
  EXPECT_EQ(c.electByTimeout(), NodeId{1});
}

TEST(Consensus, ThreeNodesReplicateAndApplyEverywhere) {
  Cluster c(3);
  c.elect(1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.propose(1, "v" + std::to_string(i)).ok());
  c.pump();
  c.tickAll();  // a heartbeat carries the commit index to the followers
  c.pump();
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(c[id].commitIndex(), Index{11}) << id;
    EXPECT_EQ(dataOf(c.node(id).applied).size(), 10u) << id;
  }
}

TEST(Consensus, ProposalsOnAFollowerAreRefusedWithTheLeader) {
  Cluster c(3);
  c.elect(2);
  Result r = c.propose(1, "x");
  EXPECT_EQ(r.refusal, Refusal::NotLeader);
  EXPECT_EQ(r.leader, NodeId{2});
  EXPECT_STREQ(toString(r.refusal), "not the leader");
}

TEST(Consensus, LargeProposalsAreRefused) {
  Cluster c(1, [](Config& cfg) { cfg.maxEntryBytes = 4; });
  c.elect(1);
  EXPECT_EQ(c.propose(1, "12345").refusal, Refusal::TooLarge);
  EXPECT_TRUE(c.propose(1, "1234").ok());
}

TEST(Consensus, UncommittedBytesAreBounded) {
  Cluster c(3, [](Config& cfg) { cfg.maxUncommittedBytes = 10; });
  c.elect(1);
  c.isolate(1);
  EXPECT_TRUE(c.propose(1, "123456").ok());
  EXPECT_EQ(c.propose(1, "123456").refusal, Refusal::Dropped);
  c.heal();
  c.tickAll();
  c.pump();
  EXPECT_TRUE(c.propose(1, "123456").ok());  // committed bytes no longer count
}

TEST(Consensus, LeaderFailoverKeepsCommittedEntries) {
  Cluster c(3);
  c.elect(1);
  c.propose(1, "a");
  c.pump();
  c.crash(1);
  NodeId l = c.electByTimeout();
  ASSERT_TRUE(l == NodeId{2} || l == NodeId{3});
  c.propose(l.value, "b");
  c.pump();
  c.restart(1);
  c.tickAll();
  c.pump();
  c.tickAll();
  c.pump();
  EXPECT_EQ(dataOf(c.node(1).applied), (std::vector<std::string>{"a", "b"}));
}

TEST(Consensus, ReadIndexOnLeaderAndFollower) {
  Cluster c(3);
  c.elect(1);
  c.propose(1, "a");
  c.pump();
  ASSERT_TRUE(c[1].readIndex(7).ok());
  ASSERT_TRUE(c[2].readIndex(8).ok());
  c.pump();
  ASSERT_EQ(c.node(1).reads.size(), 1u);
  EXPECT_EQ(c.node(1).reads[0].context, 7u);
  EXPECT_EQ(c.node(1).reads[0].index, Index{2});
  ASSERT_EQ(c.node(2).reads.size(), 1u);
  EXPECT_EQ(c.node(2).reads[0].context, 8u);
  EXPECT_EQ(c.node(2).reads[0].index, Index{2});
  // The follower learned the commit index with the answer, so it can serve the read now.
  EXPECT_GE(c[2].commitIndex(), Index{2});
}

TEST(Consensus, ReadIndexWithoutQuorumNeverAnswers) {
  Cluster c(3);
  c.elect(1);
  c.isolate(1);
  ASSERT_TRUE(c[1].readIndex(1).ok());
  c.pump();
  EXPECT_TRUE(c.node(1).reads.empty());
}

TEST(Consensus, LeaseReadAnswersAtOnce) {
  Cluster c(3, [](Config& cfg) { cfg.readMode = ReadMode::Lease; });
  // With leases a node votes for no one within an election timeout of its start (it may have
  // granted a lease just before), so the cluster elects its leader by timeouts.
  NodeId l = c.electByTimeout();
  ASSERT_TRUE(l);
  c.tickAll();  // a heartbeat round that a quorum acknowledges grants the lease
  c.pump();
  EXPECT_TRUE(c[l.value].hasLease());
  c.isolate(l.value);
  ASSERT_TRUE(c[l.value].readIndex(1).ok());
  c.pump();
  EXPECT_EQ(c.node(l.value).reads.size(), 1u);
}

TEST(Consensus, CheckQuorumLeaderStepsDownWhenCutOff) {
  Cluster c(3);
  c.elect(1);
  c.isolate(1);
  c.tick(1, 10);  // the followers answered the election: the first check passes
  c.pump();
  EXPECT_EQ(c[1].role(), Role::Leader);
  c.tick(1, 10);  // a whole election timeout without hearing from anyone
  c.pump();
  EXPECT_EQ(c[1].role(), Role::Follower);
}

TEST(Consensus, StepRejectsAMessageForAnotherNode) {
  Cluster c(3);
  Message m;
  m.from = NodeId{2};
  m.to = NodeId{3};
  EXPECT_THROW(c[1].step(m), std::invalid_argument);
}

TEST(Consensus, TransferLeadership) {
  Cluster c(3);
  c.elect(1);
  c.propose(1, "a");
  c.pump();
  ASSERT_TRUE(c[1].transferLeadership(NodeId{3}).ok());
  EXPECT_EQ(c.propose(1, "b").refusal, Refusal::TransferInProgress);
  c.pump();
  EXPECT_EQ(c[3].role(), Role::Leader);
  EXPECT_EQ(c[1].role(), Role::Follower);
  EXPECT_EQ(c[3].transferLeadership(NodeId{9}).refusal, Refusal::UnknownNode);
}

TEST(Consensus, AddAndRemoveVotersThroughTheJointConfiguration) {
  Cluster c({NodeId{1}, NodeId{2}, NodeId{3}, NodeId{4}}, Membership{{NodeId{1}, NodeId{2}, NodeId{3}}, {}, {}});
  c.elect(1);
  c.pump();
  MembershipChange add{MembershipChange::Kind::AddVoter, NodeId{4}};
  Result r = c[1].proposeMembership(std::span(&add, 1));
  ASSERT_TRUE(r.ok()) << toString(r.refusal);
  EXPECT_EQ(c[1].proposeMembership(std::span(&add, 1)).refusal, Refusal::ChangePending);
  c.pump();
  c.tickAll();
  c.pump();
  EXPECT_FALSE(c[1].membership().joint());
  EXPECT_EQ(c[1].membership().voters.size(), 4u);
  EXPECT_EQ(c[4].membership().voters.size(), 4u);
  MembershipChange rm{MembershipChange::Kind::Remove, NodeId{1}};
  ASSERT_TRUE(c[1].proposeMembership(std::span(&rm, 1)).ok());
  c.pump();
  c.tickAll();
  c.pump();
  EXPECT_EQ(c[1].role(), Role::Follower);  // the removed leader stepped down
  EXPECT_FALSE(c[2].membership().isVoter(NodeId{1}));
  c.crash(1);
  NodeId l = c.electByTimeout();
  EXPECT_TRUE(l && l != NodeId{1});
}

TEST(Consensus, SnapshotCatchesUpALaggingFollower) {
  Cluster c(3);
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 20; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  c.compact(1);
  EXPECT_GT(c.node(1).log->firstIndex(), Index{2});
  c.heal();
  c.tickAll();
  c.pump();
  c.tickAll();
  c.pump();
  EXPECT_EQ(c[3].commitIndex(), c[1].commitIndex());
  EXPECT_EQ(c.node(3).log->snapshot().data.str(), "state@21");
  EXPECT_EQ(c.node(3).appliedIndex, Index{21});
}

TEST(Consensus, ANodeWithoutMembershipJoinsAsLearnerThenVoter) {
  Cluster c({NodeId{1}, NodeId{2}, NodeId{3}, NodeId{4}}, Membership{{NodeId{1}, NodeId{2}, NodeId{3}}, {}, {}});
  c.wipe(4);  // a fresh machine: no membership at all
  EXPECT_TRUE(c[4].membership().voters.empty());
  c.tick(4, 100);  // it never campaigns
  c.pump();
  EXPECT_EQ(c[4].role(), Role::Follower);
  EXPECT_EQ(c[4].term(), Term{0});
  c.elect(1);
  c.propose(1, "before");
  c.pump();
  MembershipChange add{MembershipChange::Kind::AddLearner, NodeId{4}};
  ASSERT_TRUE(c[1].proposeMembership(std::span(&add, 1)).ok());
  c.pump();
  c.tickAll();
  c.pump();
  EXPECT_TRUE(c[4].membership().isLearner(NodeId{4}));
  EXPECT_EQ(dataOf(c.node(4).applied), std::vector<std::string>{"before"});
  MembershipChange promote{MembershipChange::Kind::AddVoter, NodeId{4}};
  ASSERT_TRUE(c[1].proposeMembership(std::span(&promote, 1)).ok());
  for (int i = 0; i < 3; ++i) {
    c.pump();
    c.tickAll();
  }
  c.pump();
  EXPECT_TRUE(c[4].membership().isVoter(NodeId{4}));
  EXPECT_FALSE(c[1].membership().joint());
}

TEST(Consensus, SendableLetsALeaderReplicateWhileItsOwnWriteIsInFlight) {
  Cluster c(3);
  c.elect(1);
  Consensus& leader = c[1];
  leader.propose(Bytes("a"));
  const Ready& rd = leader.ready();  // the driver starts writing "a"...
  ASSERT_EQ(rd.entries.size(), 1u);
  ASSERT_EQ(rd.messages.size(), 2u);
  // ...and while the write is in flight, "b" arrives: its Appends may leave at once.
  EXPECT_FALSE(leader.hasReady());
  leader.propose(Bytes("b"));
  std::span<const Message> now = leader.sendable();
  ASSERT_EQ(now.size(), 2u);
  for (const Message& m : now) {
    EXPECT_EQ(m.type, MessageType::Append);
    ASSERT_EQ(m.entries.size(), 1u);
    EXPECT_EQ(m.entries[0].data.str(), "b");
  }
  EXPECT_TRUE(leader.sendable().empty());  // handed out once
  std::vector<Message> first(rd.messages.begin(), rd.messages.end());
  std::vector<Message> second(now.begin(), now.end());
  c.node(1).log->append(rd.entries);
  leader.advance();
  const Ready& next = leader.ready();
  EXPECT_EQ(next.entries.size(), 1u);    // "b" is still to be written
  EXPECT_TRUE(next.messages.empty());    // its Appends already went out
  c.node(1).log->append(next.entries);
  leader.advance();
  for (const Message& m : first) c.deliver(m);
  for (const Message& m : second) c.deliver(m);
  c.pump();
  EXPECT_EQ(leader.commitIndex(), Index{3});
  EXPECT_EQ(dataOf(c.node(1).applied), (std::vector<std::string>{"a", "b"}));
}

// Committed entries are on a quorum's disks, so the driver may apply them before this Ready's
// own write; only a cluster of one commits what the Ready itself writes.
TEST(Consensus, CommittedEntriesWaitForTheWriteOnlyInAClusterOfOne) {
  Cluster one(1);
  one.elect(1);
  one.propose(1, "x");
  const Ready& solo = one[1].ready();
  ASSERT_EQ(solo.entries.size(), 1u);
  ASSERT_EQ(solo.committed.size(), 1u);  // counted before it is durable...
  EXPECT_TRUE(solo.committedAfterWrite);  // ...so it waits for the write
  one.propose(1, "y");
  EXPECT_TRUE(one[1].applicable().empty());  // nor does anything committed after it
  one.node(1).log->append(solo.entries);
  one[1].advance();

  Cluster c(3);
  c.elect(1);
  Consensus& leader = c[1];
  leader.propose(Bytes("a"));
  const Ready& rd = leader.ready();
  std::vector<Message> out(rd.messages.begin(), rd.messages.end());
  c.node(1).log->append(rd.entries);
  leader.advance();
  for (const Message& m : out) c.deliver(m);
  c.round();  // the followers write "a" and answer
  leader.propose(Bytes("b"));
  const Ready& next = leader.ready();
  ASSERT_EQ(next.entries.size(), 1u);  // "b", to be written
  ASSERT_EQ(next.committed.size(), 1u);
  EXPECT_EQ(next.committed[0].data.str(), "a");
  EXPECT_FALSE(next.committedAfterWrite);  // "a" may be applied before "b" is written
  c.node(1).log->append(next.entries);
  leader.advance();
}

TEST(Consensus, ApplicableHandsOutWhatCommitsWhileTheWriteIsInFlight) {
  Cluster c(3);
  c.elect(1);
  Consensus& leader = c[1];
  leader.propose(Bytes("a"));
  const Ready& rd = leader.ready();
  std::vector<Message> appends(rd.messages.begin(), rd.messages.end());
  c.node(1).log->append(rd.entries);
  leader.advance();
  leader.propose(Bytes("b"));
  const Ready& writing = leader.ready();  // the leader's write of "b" is in flight...
  ASSERT_EQ(writing.entries.size(), 1u);
  EXPECT_TRUE(leader.applicable().empty());
  // ...when follower 2 answers that "a" is on its disk: "a" is on a quorum's disks.
  for (const Message& m : appends)
    if (m.to == NodeId{2}) c[2].step(m);
  const Ready& f = c[2].ready();
  c.node(2).log->append(f.entries);
  std::vector<Message> answers(f.messagesAfterPersist.begin(), f.messagesAfterPersist.end());
  c[2].advance();
  ASSERT_FALSE(answers.empty());
  for (const Message& m : answers) leader.step(m);
  std::span<const Entry> now = leader.applicable();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0].data.str(), "a");
  EXPECT_EQ(leader.snapshotMeta().index, now[0].index);
  EXPECT_TRUE(leader.applicable().empty());  // handed out once
  c.node(1).log->append(writing.entries);
  leader.advance();
  EXPECT_FALSE(leader.hasReady() && !leader.ready().committed.empty());  // nor again in a Ready
}

// diss. §10.2.1: "the leader may even commit an entry before it has been written to its own
// disk, if a majority of followers have written it to their disks".
TEST(Consensus, ALeaderNeedNotSyncWhileItsFollowersAloneFormAQuorum) {
  Cluster c(3);
  c.elect(1);
  c.propose(1, "a");
  c.pump();  // both followers replicate and have answered
  Consensus& leader = c[1];
  Term term = leader.term();
  auto writeUnsynced = [&](const char* data) {
    leader.propose(Bytes(data));
    const Ready& rd = leader.ready();
    EXPECT_TRUE(rd.syncOptional);
    std::vector<Message> out(rd.messages.begin(), rd.messages.end());
    c.node(1).log->append(rd.entries);
    for (const Entry& e : rd.committed) {
      c.checker.applied(NodeId{1}, e);
      c.node(1).applied.push_back(e);
    }
    Index last = rd.entries.back().index;
    leader.advance(false);
    return std::make_pair(out, last);
  };

  // Both followers write "b": a quorum without the leader's own copy.
  auto [toAll, b] = writeUnsynced("b");
  for (const Message& m : toAll) c.deliver(m);
  c.round();
  EXPECT_EQ(leader.commitIndex(), b);

  // Only follower 2 writes "c": the leader's copy counts once the driver says it is synced.
  auto [toSome, cIdx] = writeUnsynced("c");
  c.isolate(3);
  for (const Message& m : toSome) c.deliver(m);
  c.round();
  EXPECT_EQ(leader.commitIndex(), b);
  // A later Ready that writes no entries (a read round's) is not synced: it proves nothing.
  ASSERT_TRUE(leader.readIndex(7).ok());
  c.pump();
  ASSERT_FALSE(c.node(1).reads.empty());
  EXPECT_EQ(leader.commitIndex(), b);
  leader.persisted(Term{term.value - 1}, cIdx);  // a sync from an earlier term: ignored
  EXPECT_EQ(leader.commitIndex(), b);
  leader.persisted(term, cIdx);
  EXPECT_EQ(leader.commitIndex(), cIdx);
  c.heal();
  c.pump();

  // Follower 3 falls silent: within three heartbeats the leader must sync again.
  c.isolate(3);
  for (int i = 0; i < 3; ++i) {
    c.tick(1);
    c.pump();
  }
  leader.propose(Bytes("d"));
  const Ready& rd = leader.ready();
  EXPECT_FALSE(rd.syncOptional);
  EXPECT_THROW(leader.advance(false), std::logic_error);
  std::vector<Message> out(rd.messages.begin(), rd.messages.end());
  c.node(1).log->append(rd.entries);
  leader.advance();
  for (const Message& m : out) c.deliver(m);
  c.pump();
  EXPECT_EQ(leader.commitIndex(), leader.lastIndex());
  EXPECT_EQ(dataOf(c.node(1).applied), (std::vector<std::string>{"a", "b", "c", "d"}));
}

// A follower's writes, and a new leader's first ones (its followers are still being probed),
// must be durable before it goes on.
TEST(Consensus, OnlyALeaderWithPromptFollowersMayLeaveItsWriteUnsynced) {
  Cluster c(3);
  c.elect(1);
  c.propose(1, "a");
  c.pump();
  c.propose(1, "b");
  const Ready& lead = c[1].ready();
  ASSERT_TRUE(lead.syncOptional);
  std::vector<Message> out(lead.messages.begin(), lead.messages.end());
  c.node(1).log->append(lead.entries);
  c[1].advance();
  for (const Message& m : out)
    if (m.to == NodeId{2}) c[2].step(m);
  const Ready& follower = c[2].ready();
  ASSERT_EQ(follower.entries.size(), 1u);
  EXPECT_FALSE(follower.syncOptional);
  EXPECT_THROW(c[2].advance(false), std::logic_error);
  c.node(2).log->append(follower.entries);
  c[2].advance();
  c.pump();

  ASSERT_TRUE(c[1].transferLeadership(NodeId{2}).ok());
  for (int i = 0; i < 10 && c[2].role() != Role::Leader; ++i) c.round();
  ASSERT_EQ(c[2].role(), Role::Leader);
  const Ready& fresh = c[2].ready();  // its no-op (§8)
  ASSERT_EQ(fresh.entries.size(), 1u);
  EXPECT_FALSE(fresh.syncOptional);
  EXPECT_THROW(c[2].advance(false), std::logic_error);
  c.node(2).log->append(fresh.entries);
  c[2].advance();
}

TEST(Consensus, ANodeWithoutMembershipGrantsNoVote) {
  // Node 1 of a 3-node cluster lost its disk and restarts empty: a stale candidate must not
  // win its vote (it may have voted in that term before the wipe).
  Cluster c(3);
  c.elect(1);
  c.propose(1, "x");
  c.pump();
  c.wipe(1);
  c.isolate(2);  // 3 can only win with 1's vote
  for (MessageType t : {MessageType::PreVote, MessageType::Vote}) {
    Message m;
    m.type = t;
    m.from = NodeId{3};
    m.to = NodeId{1};
    m.term = Term{5};
    m.index = Index{2};
    m.logTerm = Term{1};
    c.deliver(m);
  }
  c.pump();
  EXPECT_EQ(c[1].vote(), kNoNode);
  c.tick(3, 50);
  c.pump();
  EXPECT_NE(c[3].role(), Role::Leader);
  // Once a leader has given it a configuration it votes again. The initial configuration is
  // in no log entry, so the appends alone do not carry one: a membership change (the
  // operator's remove and re-add of a wiped node, or any other) does.
  c.heal();
  NodeId l = c.electByTimeout();
  ASSERT_TRUE(l);
  c.pump();
  EXPECT_TRUE(c[1].membership().voters.empty());
  MembershipChange add{MembershipChange::Kind::AddLearner, NodeId{9}};
  ASSERT_TRUE(c[l.value].proposeMembership(std::span(&add, 1)).ok());
  for (int i = 0; i < 3; ++i) {
    c.tickAll();
    c.pump();
  }
  EXPECT_FALSE(c[1].membership().voters.empty());
}

}  // namespace
}  // namespace keel::testing
