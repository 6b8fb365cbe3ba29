// A faulty network (Raft paper §5.5: "Raft RPCs are idempotent"; §5.1: the network may lose,
// duplicate and reorder messages): deterministic loss, duplication and reordering, then seeded
// random mixtures with partitions and crashes. The invariant checker runs after every round;
// once the network heals, the cluster must converge and apply the same entries everywhere.
#include "scenario.h"

#include <random>

namespace keel::testing {
namespace {

// Every message delivered twice.
TEST(Network, DuplicatedMessagesAreHarmless) {
  Cluster c(3);
  c.elect(1);
  c.holdMessages = true;
  for (int i = 0; i < 20; ++i) {
    if (i % 2 == 0) c.propose(1, "v" + std::to_string(i));
    if (i % 5 == 0) c.tickAll();
    c.round();
    std::vector<Message> batch;
    batch.swap(c.held);
    for (const Message& m : batch) {
      c.deliver(m);
      c.deliver(m);
    }
  }
  c.holdMessages = false;
  ASSERT_TRUE(settle(c));
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_EQ(appliedData(c, id).size(), 10u) << id;
}

// Each round's messages delivered in reverse order, and some held back a round.
TEST(Network, ReorderedMessagesAreHarmless) {
  Cluster c(3);
  c.elect(1);
  c.holdMessages = true;
  std::vector<Message> late;
  for (int i = 0; i < 30; ++i) {
    if (i % 2 == 0) c.propose(1, "v" + std::to_string(i));
    if (i % 4 == 0) c.tickAll();
    c.round();
    std::vector<Message> batch;
    batch.swap(c.held);
    std::vector<Message> now = std::move(late);
    late.clear();
    for (size_t k = 0; k < batch.size(); ++k) (k % 3 == 0 ? late : now).push_back(batch[k]);
    for (auto it = now.rbegin(); it != now.rend(); ++it) c.deliver(*it);
  }
  for (const Message& m : late) c.deliver(m);
  c.holdMessages = false;
  ASSERT_TRUE(settle(c));
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_EQ(appliedData(c, id).size(), 15u) << id;
}

// Every third message lost.
TEST(Network, LostMessagesAreRetried) {
  Cluster c(3);
  c.elect(1);
  int n = 0;
  c.filter = [&n](const Message&) { return ++n % 3 != 0; };
  for (int i = 0; i < 30; ++i) {
    if (i % 3 == 0) c.propose(1, "v" + std::to_string(i));
    run(c, 1);
  }
  c.filter = nullptr;
  ASSERT_TRUE(settle(c));
  NodeId l = c.leader();
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_EQ(appliedData(c, id), appliedData(c, l.value)) << id;
}

// A small window of in-flight Appends (flow control, diss. §10.2.2) under loss: the leader
// stops sending at a full window, and when every acknowledgement of the window was lost it
// must still resume once the follower is heard from again (etcd frees one slot of a full
// window on a heartbeat answer: TestProgressFlowControl, TestMsgAppRespWaitReset).
TEST(Network, FullFlowControlWindowWhoseAcknowledgementsWereLostResumes) {
  Cluster c(3, [](Config& cfg) {
    cfg.maxInflightMessages = 2;
    cfg.maxMessageBytes = 4;
  });
  c.recordTranscript = true;
  c.elect(1);
  run(c, 1);
  c.cut(3, 1);  // 3 receives everything; its answers are lost
  for (int i = 0; i < 6; ++i) {
    c.propose(1, "vvvv");
    c.pump();
  }
  Progress p = *c[1].progress(NodeId{3});
  EXPECT_EQ(p.state, Progress::State::Replicate);
  EXPECT_EQ(p.inflight, 2u) << "the window is full";
  EXPECT_EQ(c[3].lastIndex(), Index{3});
  c.heal();
  ASSERT_TRUE(settle(c, 50));
  EXPECT_EQ(appliedData(c, 3).size(), 6u);
}

// Seeded random faults: every message may be lost, duplicated or delayed and delivered out of
// order; partitions come and go; nodes crash and restart; proposals arrive at whoever leads.
// Then the network heals and the cluster must converge.
void randomFaults(uint64_t seed, size_t nodes, size_t rounds) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  Cluster c(nodes, [seed](Config& cfg) { cfg.seed = seed; });
  c.recordTranscript = true;
  std::mt19937_64 rng(seed);
  auto chance = [&rng](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto pick = [&rng, nodes] { return uint64_t(1 + rng() % nodes); };
  c.holdMessages = true;
  std::vector<Message> delayed;
  int proposals = 0;
  std::set<uint64_t> down;
  for (size_t r = 0; r < rounds; ++r) {
    if (NodeId l = c.leader(); l && chance(0.3)) {
      if (c.propose(l.value, "p" + std::to_string(proposals)).ok()) ++proposals;
    }
    if (chance(0.5)) c.tickAll();
    if (chance(0.03)) c.isolate(pick());
    if (chance(0.02)) c.cutBoth(pick(), pick());
    if (chance(0.04)) c.heal();
    if (chance(0.01) && down.size() < (nodes - 1) / 2) {
      uint64_t id = pick();
      if (!down.count(id)) {
        c.crash(id);
        down.insert(id);
      }
    }
    if (chance(0.03) && !down.empty()) {
      uint64_t id = *down.begin();
      c.restart(id);
      down.erase(id);
    }
    if (chance(0.01)) {
      uint64_t id = pick();
      if (!down.count(id) && c.node(id).appliedIndex > c.node(id).log->snapshotMeta().index) c.compact(id);
    }
    c.round();
    std::vector<Message> batch;
    batch.swap(c.held);
    for (Message& m : delayed) batch.push_back(std::move(m));
    delayed.clear();
    std::shuffle(batch.begin(), batch.end(), rng);
    for (const Message& m : batch) {
      if (chance(0.1)) continue;                // lost
      if (chance(0.15)) { delayed.push_back(m); continue; }  // delivered later, out of order
      c.deliver(m);
      if (chance(0.05)) c.deliver(m);           // duplicated
    }
  }
  // Heal everything and let the cluster settle.
  c.holdMessages = false;
  c.heal();
  for (uint64_t id : down) c.restart(id);
  for (const Message& m : delayed) c.deliver(m);
  c.pump();
  ASSERT_TRUE(settle(c, 500)) << "seed " << seed;
  // One more proposal commits everywhere.
  NodeId l = c.leader();
  ASSERT_TRUE(c.propose(l.value, "final").ok());
  ASSERT_TRUE(settle(c, 100));
  for (NodeId id : c.ids()) {
    EXPECT_EQ(c[id.value].commitIndex(), c[l.value].commitIndex()) << toString(id);
    ASSERT_FALSE(c.node(id.value).applied.empty() && c.node(id.value).appliedIndex == Index{}) << toString(id);
  }
  EXPECT_GT(c.checker.committedEntries(), 1u);
}

TEST(Network, RandomLossDuplicationReorderingPartitionsAndCrashes_3Nodes) {
  for (uint64_t seed = 1; seed <= 8; ++seed) randomFaults(seed, 3, 300);
}
TEST(Network, RandomLossDuplicationReorderingPartitionsAndCrashes_5Nodes) {
  for (uint64_t seed = 101; seed <= 106; ++seed) randomFaults(seed, 5, 300);
}

}  // namespace
}  // namespace keel::testing
