// Membership changes (Raft paper §6; dissertation chapter 4): joint consensus entered for any
// change of voters and left automatically, under leader changes; learners and their promotion.
// keel applies a configuration when its entry is applied (handed out in a Ready), not when it
// is appended as etcd-io/raft's v1 changes did; the tests check that.
#include "scenario.h"

namespace keel::testing {
namespace {

using Kind = MembershipChange::Kind;

// True for an Append from `from` that carries a configuration entry outside any joint
// configuration (the leader's C_new, or a change of learners).
bool carriesFinalConfig(const Message& m, uint64_t from) {
  if (m.from != NodeId{from} || m.type != MessageType::Append) return false;
  for (const Entry& e : m.entries) {
    Membership x;
    if (e.type == EntryType::Membership && Membership::decode(e.data.view(), x) && !x.joint()) return true;
  }
  return false;
}

Cluster withJoiners(std::initializer_list<uint64_t> all, std::initializer_list<uint64_t> voters,
                    std::function<void(Config&)> tweak = {}) {
  std::vector<NodeId> ids;
  for (uint64_t id : all) ids.push_back(NodeId{id});
  return Cluster(ids, votersOf(voters), std::move(tweak));
}

// §6: "the cluster first switches to a transitional configuration we call joint consensus;
// once the joint consensus has been committed, the system then transitions to the new
// configuration." In C_old,new "agreement (for elections and entry commitment) requires
// separate majorities from both the old and new configurations."
TEST(Paper_6, AddingAVoterGoesThroughTheJointConfigurationAndLeavesIt) {
  Cluster c = withJoiners({1, 2, 3, 4}, {1, 2, 3});
  c.recordTranscript = true;
  c.elect(1);
  ASSERT_TRUE(change(c[1], Kind::AddVoter, 4).ok());
  // The configuration takes effect when applied, not when appended.
  EXPECT_FALSE(c[1].membership().joint());
  // Commit the joint entry on {1,2,3} but keep its successor (C_new) from committing: 4 is
  // unreachable, and C_old,new needs a majority of {1,2,3,4} too: 1, 2, 3 are enough.
  c.isolate(4);
  c.pump();
  run(c, 1);
  // 1 applied C_old,new and appended C_new at once; C_new also commits with {1,2,3}.
  EXPECT_FALSE(c[1].membership().joint());
  EXPECT_EQ(c[1].membership().voters, votersOf({1, 2, 3, 4}).voters);
  // Everything now needs 3 of {1,2,3,4}: with 2 and 3 cut off nothing commits.
  c.heal();
  ASSERT_TRUE(settle(c));
  c.isolate(2);
  c.isolate(3);
  ASSERT_TRUE(c.propose(1, "needs three").ok());
  run(c, 3);
  EXPECT_LT(c[1].commitIndex(), c[1].lastIndex());
  c.heal();
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(appliedData(c, 4), std::vector<std::string>{"needs three"});
}

// In the joint configuration a decision needs both majorities: with the old majority {1,2}
// but only 2 of the 5 new voters, nothing commits.
TEST(Paper_6, JointConfigurationNeedsMajoritiesOfBothOldAndNew) {
  Cluster c = withJoiners({1, 2, 3, 4, 5, 6}, {1, 2, 3});
  c.recordTranscript = true;
  c.elect(1);
  MembershipChange ch[] = {
      {Kind::AddVoter, NodeId{4}}, {Kind::AddVoter, NodeId{5}}, {Kind::AddVoter, NodeId{6}}, {Kind::Remove, NodeId{3}}};
  ASSERT_TRUE(c[1].proposeMembership(ch).ok());
  // C_old,new commits; C_new, appended when 1 applies C_old,new, reaches nobody.
  c.filter = [](const Message& m) { return !carriesFinalConfig(m, 1); };
  c.pump();
  c.filter = nullptr;
  // With 4, 5 and 6 unreachable, 1 and 2 are a majority of C_old but only 2 of C_new's 5.
  for (uint64_t id : {4, 5, 6}) c.isolate(id);
  run(c, 1);
  Membership m = c[1].membership();
  ASSERT_TRUE(m.joint()) << m.toString();
  EXPECT_EQ(m.outgoing, votersOf({1, 2, 3}).voters);
  EXPECT_EQ(m.voters, votersOf({1, 2, 4, 5, 6}).voters);
  Index commit = c[1].commitIndex();
  ASSERT_TRUE(c.propose(1, "x").ok());
  run(c, 5);
  EXPECT_EQ(c[1].commitIndex(), commit) << "the old majority alone cannot commit in C_old,new";
  c.heal();
  ASSERT_TRUE(settle(c));
  EXPECT_FALSE(c[1].membership().joint());
  EXPECT_EQ(c[1].membership().voters, votersOf({1, 2, 4, 5, 6}).voters);
  EXPECT_EQ(appliedData(c, 6), std::vector<std::string>{"x"});
}

// A follower's forwarded read skips the heartbeat round only where the leader and that follower
// make a majority of both configurations (§6): in C_old,new of {1,2,3} and {1,2,4,5,6}, 1 and 2
// are a majority of the old voters but not of the new ones; of {1,2,3,4,5} and {1,2,3}, of the
// new but not of the old.
TEST(Paper_6, JointConfigurationReadThroughAFollowerNeedsBothMajorities) {
  Cluster c = withJoiners({1, 2, 3, 4, 5, 6}, {1, 2, 3});
  c.elect(1);
  MembershipChange ch[] = {
      {Kind::AddVoter, NodeId{4}}, {Kind::AddVoter, NodeId{5}}, {Kind::AddVoter, NodeId{6}}, {Kind::Remove, NodeId{3}}};
  ASSERT_TRUE(c[1].proposeMembership(ch).ok());
  c.filter = [](const Message& m) { return !carriesFinalConfig(m, 1); };
  c.pump();
  run(c, 1);
  ASSERT_TRUE(c[1].membership().joint());
  int heartbeats = 0;
  bool cut = true;  // 4, 5 and 6 do not answer: no majority of the new voters acknowledges
  c.filter = [&](const Message& m) {
    heartbeats += m.type == MessageType::Heartbeat;
    return !carriesFinalConfig(m, 1) && !(cut && m.from.value >= 4);
  };
  ASSERT_TRUE(c[2].readIndex(1).ok());
  c.pump();
  EXPECT_EQ(heartbeats, 5);  // a round to every other voter of either configuration
  EXPECT_TRUE(c.node(2).reads.empty());
  cut = false;
  c.tick(1, 1);  // the heartbeat tick resends the round, which now completes
  c.pump();
  EXPECT_EQ(c.node(2).reads.size(), 1u);

  Cluster d = withJoiners({1, 2, 3, 4, 5}, {1, 2, 3, 4, 5});
  d.elect(1);
  MembershipChange shrink[] = {{Kind::Remove, NodeId{4}}, {Kind::Remove, NodeId{5}}};
  ASSERT_TRUE(d[1].proposeMembership(shrink).ok());
  d.filter = [](const Message& m) { return !carriesFinalConfig(m, 1); };
  d.pump();
  run(d, 1);
  ASSERT_TRUE(d[1].membership().joint());
  heartbeats = 0;
  d.filter = [&](const Message& m) {
    heartbeats += m.type == MessageType::Heartbeat;
    return !carriesFinalConfig(m, 1);
  };
  ASSERT_TRUE(d[2].readIndex(1).ok());
  d.pump();
  EXPECT_EQ(heartbeats, 4);
  EXPECT_EQ(d.node(2).reads.size(), 1u);
}

// Joint consensus under leader changes: the leader that entered C_old,new crashes before it can
// leave it. The next leader (elected by both majorities) must leave it by itself — whether it
// had applied C_old,new as a follower or learns that it is committed only as the leader.
void leaderChangeInJoint(bool newLeaderAppliedJoint) {
  // Without check-quorum, the followers need not wait out the crashed leader's lease.
  Cluster c = withJoiners({1, 2, 3, 4}, {1, 2, 3}, [](Config& cfg) { cfg.checkQuorum = false; });
  c.recordTranscript = true;
  c.elect(1);
  ASSERT_TRUE(change(c[1], Kind::AddVoter, 4).ok());
  // The joint entry reaches everyone; 1 learns it is committed and applies it, and its C_new
  // entry goes nowhere: 1 crashes at once.
  c.filter = [](const Message& m) {
    return !carriesFinalConfig(m, 1) && !(m.from == NodeId{1} && m.type == MessageType::Heartbeat);
  };
  c.pump();
  c.filter = nullptr;
  ASSERT_TRUE(c[1].membership().joint());
  if (newLeaderAppliedJoint) {
    // 2 learns the commit index from a heartbeat before 1 crashes.
    c.isolate(3);
    c.isolate(4);
    c.tick(1);
    c.holdMessages = true;
    c.round();
    std::vector<Message> hb;
    for (const Message& m : c.held)
      if (m.type == MessageType::Heartbeat && m.to == NodeId{2}) hb.push_back(m);
    c.held.clear();
    c.holdMessages = false;
    c.heal();
    for (const Message& m : hb) c.deliver(m);
    c.crash(1);  // before it can answer 2's acknowledgement with C_new
    c.pump();
    ASSERT_TRUE(c[2].membership().joint()) << c.describe();
  } else {
    EXPECT_FALSE(c[2].membership().joint());
  }
  c.crash(1);
  c.elect(2);
  ASSERT_TRUE(settle(c));
  run(c, 2);
  EXPECT_FALSE(c[2].membership().joint()) << "the new leader must leave the joint configuration\n" << c.describe();
  EXPECT_EQ(c[2].membership().voters, votersOf({1, 2, 3, 4}).voters);
  // ... and the cluster can change its membership again.
  ASSERT_TRUE(change(c[2], Kind::Remove, 1).ok());
  ASSERT_TRUE(settle(c));
  run(c, 2);
  EXPECT_EQ(c[3].membership().voters, votersOf({2, 3, 4}).voters);
  EXPECT_FALSE(c[3].membership().joint());
}
TEST(Paper_6, NewLeaderThatAppliedTheJointConfigurationLeavesIt) { leaderChangeInJoint(true); }
TEST(Paper_6, NewLeaderThatAppliesTheJointConfigurationAsLeaderLeavesIt) { leaderChangeInJoint(false); }

// diss. §4.1 (as corrected in 2015): "a leader may not append a new configuration entry until
// it has committed an entry from its current term"; and one change at a time (§6).
TEST(Paper_6, OneChangeAtATimeAndNotBeforeTheLeaderCommittedInItsTerm) {
  Cluster c = withJoiners({1, 2, 3, 4, 5}, {1, 2, 3}, [](Config& cfg) { cfg.checkQuorum = false; });
  c.elect(1);
  // 2 takes office, but no acknowledgement reaches it: its no-op stays uncommitted.
  c.filter = [](const Message& m) { return m.type != MessageType::AppendResponse; };
  c.elect(2);
  ASSERT_EQ(c[2].role(), Role::Leader);
  EXPECT_EQ(change(c[2], Kind::AddVoter, 4).refusal, Refusal::ChangePending) << "no-op not yet committed";
  c.filter = nullptr;
  run(c, 2);
  ASSERT_TRUE(change(c[2], Kind::AddVoter, 4).ok());
  EXPECT_EQ(change(c[2], Kind::AddVoter, 5).refusal, Refusal::ChangePending);
  EXPECT_EQ(change(c[3], Kind::AddVoter, 5).refusal, Refusal::NotLeader);
  ASSERT_TRUE(settle(c));
  run(c, 2);
  ASSERT_TRUE(change(c[2], Kind::AddVoter, 5).ok());
  ASSERT_TRUE(settle(c));
}

TEST(Paper_6, InvalidChangesAreRefused) {
  Cluster c = withJoiners({1, 2}, {1, 2});
  c.elect(1);
  run(c, 1);
  EXPECT_EQ(change(c[1], Kind::AddVoter, 0).refusal, Refusal::InvalidChange);
  EXPECT_EQ(change(c[1], Kind::AddLearner, 2).refusal, Refusal::InvalidChange) << "demoting a voter";
  MembershipChange both[] = {{Kind::Remove, NodeId{1}}, {Kind::Remove, NodeId{2}}};
  EXPECT_EQ(c[1].proposeMembership(both).refusal, Refusal::InvalidChange) << "no voter left";
  EXPECT_STREQ(toString(Refusal::InvalidChange), "invalid membership change");
}

// Removing a follower shrinks the quorum: entries that were waiting for it commit (etcd's
// TestCommitAfterRemoveNode).
TEST(Paper_6, RemovingAFollowerLetsPendingEntriesCommitWithTheSmallerQuorum) {
  Cluster c(2);
  c.recordTranscript = true;
  c.elect(1);
  run(c, 1);
  ASSERT_TRUE(change(c[1], Kind::Remove, 2).ok());
  c.pump();  // C_old,new = {1} / {1,2}: commits with 2's ack
  c.isolate(2);
  run(c, 1);
  EXPECT_EQ(c[1].membership().voters, votersOf({1}).voters);
  EXPECT_FALSE(c[1].membership().joint());
  ASSERT_TRUE(c.propose(1, "alone").ok());
  c.pump();
  EXPECT_EQ(appliedData(c, 1), std::vector<std::string>{"alone"});
  EXPECT_FALSE(c[1].progress(NodeId{2}));
}

// ---------------------------------------------------------------------------------------------
// Learners (diss. §4.2.1: "new servers join the cluster as non-voting members")

// A learner receives the log but never campaigns, and its acknowledgements do not count
// towards commitment (etcd's TestLearnerElectionTimeout, TestLearnerLogReplication).
TEST(Learner, ReceivesTheLogButNeitherCampaignsNorCounts) {
  Cluster c({NodeId{1}, NodeId{2}, NodeId{3}}, votersOf({1, 2}, {3}));
  c.elect(1);
  ASSERT_TRUE(c.propose(1, "a").ok());
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(appliedData(c, 3), std::vector<std::string>{"a"});
  // A learner never times out into a campaign, nor campaigns when asked.
  c.isolate(3);
  run(c, 100);
  EXPECT_EQ(c[3].role(), Role::Follower);
  c[3].campaign();
  EXPECT_EQ(c[3].role(), Role::Follower);
  EXPECT_EQ(c[3].term(), Term{1});
  c.heal();
  // Acknowledgements of the learner alone do not commit.
  c.cutBoth(1, 2);
  ASSERT_TRUE(c.propose(1, "b").ok());
  c.pump();
  EXPECT_EQ(c[3].lastIndex(), c[1].lastIndex());
  EXPECT_LT(c[1].commitIndex(), c[1].lastIndex());
  // A leader's transfer target must be a voter.
  EXPECT_EQ(c[1].transferLeadership(NodeId{3}).refusal, Refusal::UnknownNode);
  c.heal();
  ASSERT_TRUE(settle(c));
}

// diss. §4.2.1: a learner is promoted to voter once it has caught up (etcd's
// TestLearnerPromotion): adding it as a voter goes through the joint configuration; afterwards
// it counts, votes and can lead.
TEST(Learner, PromotionThroughTheJointConfiguration) {
  Cluster c = withJoiners({1, 2, 3}, {1, 2});
  c.recordTranscript = true;
  c.elect(1);
  ASSERT_TRUE(change(c[1], Kind::AddLearner, 3).ok());
  ASSERT_TRUE(settle(c));
  run(c, 1);
  // A change of learners alone takes effect directly, with no joint configuration.
  EXPECT_EQ(c[3].membership().learners, votersOf({3}).voters);
  EXPECT_FALSE(c[3].membership().joint());
  ASSERT_TRUE(c.propose(1, "caught up").ok());
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c[1].progress(NodeId{3})->state, Progress::State::Replicate);
  ASSERT_TRUE(change(c[1], Kind::AddVoter, 3).ok());
  ASSERT_TRUE(settle(c));
  run(c, 2);
  for (uint64_t id = 1; id <= 3; ++id) {
    EXPECT_EQ(c[id].membership().voters, votersOf({1, 2, 3}).voters) << id;
    EXPECT_TRUE(c[id].membership().learners.empty()) << id;
  }
  // Now 3 counts: with 2 down, 1 and 3 commit.
  c.isolate(2);
  ASSERT_TRUE(c.propose(1, "with 3").ok());
  c.pump();
  run(c, 1);
  EXPECT_EQ(c[1].commitIndex(), c[1].lastIndex());
  // ... and it can lead.
  c.heal();
  ASSERT_TRUE(c[1].transferLeadership(NodeId{3}).ok());
  c.pump();
  EXPECT_EQ(c[3].role(), Role::Leader);
  ASSERT_TRUE(settle(c));
}

// A learner added while the cluster runs catches up from a snapshot when the log it needs is
// compacted away (etcd's TestLearnerReceiveSnapshot).
TEST(Learner, CatchesUpFromASnapshot) {
  Cluster c = withJoiners({1, 2, 3}, {1, 2});
  c.elect(1);
  for (int i = 0; i < 10; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 1);
  c.compact(1);
  ASSERT_TRUE(change(c[1], Kind::AddLearner, 3).ok());
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c.node(3).log->snapshotMeta().index, Index{11});
  EXPECT_TRUE(c[3].membership().isLearner(NodeId{3}));
  ASSERT_TRUE(c.propose(1, "after").ok());
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(appliedData(c, 3), std::vector<std::string>{"after"});
}

// §6: a server removed from the configuration stops receiving the log; a removed learner
// too (etcd's TestRemoveLearner).
TEST(Learner, RemovedLearnerIsNoLongerReplicatedTo) {
  Cluster c({NodeId{1}, NodeId{2}, NodeId{3}}, votersOf({1, 2}, {3}));
  c.elect(1);
  run(c, 1);
  ASSERT_TRUE(change(c[1], Kind::Remove, 3).ok());
  ASSERT_TRUE(settle(c));
  run(c, 1);
  EXPECT_FALSE(c[1].membership().contains(NodeId{3}));
  EXPECT_FALSE(c[1].progress(NodeId{3}));
  Index last3 = c[3].lastIndex();
  c.propose(1, "x");
  c.pump();
  EXPECT_EQ(c[3].lastIndex(), last3);
}

}  // namespace
}  // namespace keel::testing
