// Log compaction (Raft paper §7): InstallSnapshot with and without a conflicting log, the
// leader's Probe / Replicate / Snapshot progress states, lost snapshots, and restarts from a
// snapshot. The scenarios of etcd-io/raft's raft_snap_test.go and the snapshot tests of its
// raft_test.go, on keel's API.
#include "scenario.h"

namespace keel::testing {
namespace {

std::shared_ptr<const Snapshot> snapshotAt(uint64_t index, uint64_t term, Membership m = votersOf({1, 2, 3})) {
  auto s = std::make_shared<Snapshot>();
  s->meta = SnapshotMeta{Index{index}, Term{term}, std::move(m)};
  s->data = Bytes("state@" + std::to_string(index));
  return s;
}

Message snapshotMessage(uint64_t from, uint64_t term, std::shared_ptr<const Snapshot> s) {
  Message m = msg(MessageType::Snapshot, from, term);
  m.snapshot = std::move(s);
  return m;
}

// §7: "If existing log entry has same index and term as snapshot's last included entry,
// retain log entries following it and reply".
TEST(Paper_7, SnapshotMatchingAnEntryKeepsTheEntriesAfterIt) {
  Driver d(1, votersOf({1, 2, 3}), entriesOfTerms({1, 1, 1, 1}), HardState{Term{1}, kNoNode, Index{}});
  d.step(snapshotMessage(2, 1, snapshotAt(2, 1)));
  EXPECT_EQ(d->commitIndex(), Index{2});
  Output o = d.drain();
  EXPECT_FALSE(o.snapshot);
  EXPECT_EQ(d->lastIndex(), Index{4});
  ASSERT_EQ(o.messages.size(), 1u);
  EXPECT_EQ(o.messages[0].type, MessageType::AppendResponse);
  EXPECT_EQ(o.messages[0].index, Index{4});
  EXPECT_EQ(o.committed.size(), 2u);
}

// §7: "Discard the entire log ... Reset state machine using snapshot contents" — the follower's
// log conflicts with the snapshot (an entry of another term at its index).
TEST(Paper_7, SnapshotConflictingWithTheLogReplacesTheWholeLog) {
  Driver d(1, votersOf({1, 2, 3}), entriesOfTerms({1, 1, 2, 2}), HardState{Term{3}, kNoNode, Index{1}});
  d.step(snapshotMessage(2, 3, snapshotAt(3, 3)));
  Output o = d.drain();
  ASSERT_TRUE(o.snapshot);
  EXPECT_EQ(o.snapshot->index, Index{3});
  EXPECT_EQ(d.log.firstIndex(), Index{4});
  EXPECT_EQ(d.log.lastIndex(), Index{3});
  EXPECT_EQ(d.log.snapshot().data.str(), "state@3");
  EXPECT_EQ(d->commitIndex(), Index{3});
  EXPECT_EQ(d->appliedIndex(), Index{3});
  EXPECT_TRUE(o.committed.empty()) << "the snapshot replaces the entries it covers";
  ASSERT_EQ(o.messages.size(), 1u);
  EXPECT_EQ(o.messages[0].index, Index{3});
  // The snapshot's configuration takes effect with it.
  Driver e(4, votersOf({1, 2, 3}), {}, {});
  e.step(snapshotMessage(1, 1, snapshotAt(5, 1, votersOf({1, 2, 3, 4}))));
  e.drain();
  EXPECT_TRUE(e->membership().isVoter(NodeId{4}));
}

// A snapshot that is not newer than what the follower committed is ignored (a duplicate or a
// reordered message); the follower answers with its commit index (etcd's
// TestRestoreIgnoreSnapshot).
TEST(Paper_7, StaleSnapshotIsIgnored) {
  Driver d(1, votersOf({1, 2, 3}), entriesOfTerms({1, 1, 1}), HardState{Term{1}, kNoNode, Index{3}});
  d.step(snapshotMessage(2, 1, snapshotAt(2, 1)));
  Output o = d.drain();
  EXPECT_FALSE(o.snapshot);
  EXPECT_EQ(d.log.firstIndex(), Index{1});
  ASSERT_EQ(o.messages.size(), 1u);
  EXPECT_EQ(o.messages[0].index, Index{3});
  // A Snapshot message without a snapshot is answered the same way.
  d.step(msg(MessageType::Snapshot, 2, 1));
  o = d.drain();
  ASSERT_EQ(o.messages.size(), 1u);
  EXPECT_EQ(o.messages[0].index, Index{3});
}

// §7: "the leader must occasionally send snapshots to followers that lag behind ... when the
// leader has already discarded the next log entry that it needs to send". The follower moves
// through the leader's progress states: Probe -> Snapshot -> Probe -> Replicate.
TEST(Paper_7, LaggingFollowerWithoutConflictCatchesUpFromASnapshot) {
  Cluster c(3);
  c.recordTranscript = true;
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 20; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 1);
  c.compact(1);
  // 3 was in Replicate; the Appends it missed get no answer. Healed, its answer to a
  // heartbeat shows the leader that it lacks entries the leader compacted away.
  c.heal();
  std::vector<Progress::State> seen{c[1].progress(NodeId{3})->state};
  c.tickAll();
  for (int i = 0; i < 20 && c.round(); ++i)
    if (Progress::State s = c[1].progress(NodeId{3})->state; s != seen.back()) seen.push_back(s);
  using S = Progress::State;
  // Replicate -> (the rejection) Probe -> (the entries are compacted) Snapshot, in one step;
  // then the snapshot's acknowledgement -> Probe.
  EXPECT_EQ(seen, (std::vector<S>{S::Replicate, S::Snapshot, S::Probe})) << c.describe();
  EXPECT_EQ(c.node(3).log->snapshotMeta().index, Index{21});
  EXPECT_EQ(c[1].progress(NodeId{3})->match, Index{21});
  // The next Append, accepted, moves it back to Replicate.
  ASSERT_TRUE(c.propose(1, "after").ok());
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c[1].progress(NodeId{3})->state, S::Replicate);
  EXPECT_EQ(appliedData(c, 3), std::vector<std::string>{"after"});
}

// The snapshot's receiver has a conflicting log: it was the leader of an earlier term and
// appended entries nobody else has. InstallSnapshot discards them all.
TEST(Paper_7, FollowerWithAConflictingLogInstallsTheSnapshot) {
  Cluster c(3);
  c.recordTranscript = true;
  c.elect(3);
  c.isolate(3);
  c.propose(3, "lost1");
  c.propose(3, "lost2");
  c.pump();
  run(c, 30);  // 3 steps down (check-quorum); 1 or 2 take over
  NodeId l = c.leader();
  ASSERT_TRUE(l == NodeId{1} || l == NodeId{2});
  for (int i = 0; i < 10; ++i) c.propose(l.value, "v" + std::to_string(i));
  c.pump();
  run(c, 1);
  c.compact(l.value);
  ASSERT_EQ(logTerms(c, 3), (std::vector<uint64_t>{1, 1, 1}));
  c.heal();
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c.node(3).log->snapshotMeta().index, c.node(l.value).log->snapshotMeta().index);
  EXPECT_EQ(c[3].commitIndex(), c[l.value].commitIndex());
  std::vector<std::string> data = appliedData(c, 3);
  EXPECT_EQ(std::count(data.begin(), data.end(), "lost1"), 0);
}

// A snapshot that is lost leaves the follower in the Snapshot state; after two election
// timeouts without an answer the leader probes again and resends it (etcd's
// TestSnapshotFailure / TestSnapshotAbort).
TEST(Paper_7, LostSnapshotIsSentAgain) {
  Cluster c(3);
  c.recordTranscript = true;
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 1);
  c.compact(1);
  c.heal();
  int snapshotsSent = 0;
  bool drop = true;
  c.filter = [&](const Message& m) {
    if (m.type != MessageType::Snapshot) return true;
    ++snapshotsSent;
    return !drop;
  };
  run(c, 2);
  ASSERT_EQ(snapshotsSent, 1);
  EXPECT_EQ(c[1].progress(NodeId{3})->state, Progress::State::Snapshot);
  run(c, 10);
  EXPECT_EQ(snapshotsSent, 1) << "nothing more while the snapshot may be in flight";
  drop = false;
  run(c, 15);
  EXPECT_EQ(snapshotsSent, 2);
  ASSERT_TRUE(settle(c));
  c.propose(1, "x");
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c[1].progress(NodeId{3})->state, Progress::State::Replicate);
}

// A driver that streams a large snapshot may take longer than the two election timeouts after
// which the leader counts it as lost. Once the driver reports it delivered, the leader awaits
// the follower's answer afresh instead of starting a second copy; with no answer it still
// sends it again later.
TEST(Paper_7, ASnapshotReportedDeliveredIsNotSentAgainWhileTheAnswerIsDue) {
  Cluster c(3);
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 1);
  c.compact(1);
  c.heal();
  int snapshotsSent = 0;
  c.filter = [&](const Message& m) {
    snapshotsSent += m.type == MessageType::Snapshot;
    return m.type != MessageType::Snapshot;  // the driver holds it: a transfer in progress
  };
  run(c, 15);
  ASSERT_EQ(snapshotsSent, 1);
  Index sent = c.node(1).log->snapshotMeta().index;
  c[1].reportSnapshot(NodeId{3}, Index{sent.value - 1}, true);  // an older snapshot's: ignored
  c[1].reportSnapshot(NodeId{3}, sent, true);
  run(c, 15);  // 30 ticks since it was sent, 15 since the report
  EXPECT_EQ(snapshotsSent, 1);
  EXPECT_EQ(c[1].progress(NodeId{3})->state, Progress::State::Snapshot);
  run(c, 10);  // 25 ticks since the report and no answer: lost after all
  EXPECT_EQ(snapshotsSent, 2);
}

// A snapshot the driver reports as failed is sent again one election timeout later, not two
// (and not at once: a follower that refuses it would be sent it at every heartbeat).
TEST(Paper_7, ASnapshotReportedFailedIsSentAgainAnElectionTimeoutLater) {
  Cluster c(3);
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 1);
  c.compact(1);
  c.heal();
  int snapshotsSent = 0;
  bool drop = true;
  c.filter = [&](const Message& m) {
    if (m.type != MessageType::Snapshot) return true;
    ++snapshotsSent;
    return !drop;
  };
  run(c, 2);
  ASSERT_EQ(snapshotsSent, 1);
  Index sent = c.node(1).log->snapshotMeta().index;
  c[2].reportSnapshot(NodeId{3}, sent, false);  // not the leader: ignored
  c[1].reportSnapshot(NodeId{1}, sent, false);  // no snapshot pending for it: ignored
  run(c, 3);
  EXPECT_EQ(snapshotsSent, 1);
  drop = false;
  c[1].reportSnapshot(NodeId{3}, sent, false);  // 5 ticks after it was sent
  run(c, 3);
  EXPECT_EQ(snapshotsSent, 1) << "not at once";
  run(c, 8);  // 16 ticks after it was sent, 11 after the report
  EXPECT_EQ(snapshotsSent, 2);
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c.node(3).log->snapshotMeta().index, c.node(1).log->snapshotMeta().index);
  c.propose(1, "x");
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(c[1].progress(NodeId{3})->state, Progress::State::Replicate);
}

// A leader does not send a snapshot to a follower it has not heard from within an election
// timeout (recentActive); it starts as soon as the follower answers.
TEST(Paper_7, NoSnapshotToAnInactiveFollower) {
  Cluster c(3, [](Config& cfg) { cfg.checkQuorum = true; });
  c.elect(1);
  c.isolate(3);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 25);  // two check-quorum rounds: 3 is no longer recently active
  c.compact(1);
  EXPECT_FALSE(c[1].progress(NodeId{3})->recentActive);
  int snapshots = 0;
  c.filter = [&](const Message& m) { snapshots += m.type == MessageType::Snapshot; return true; };
  c.propose(1, "x");
  c.pump();
  EXPECT_EQ(snapshots, 0);
  c.heal();
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(snapshots, 1);
}

// A node restarted from a compacted log resumes from the snapshot: it applies nothing twice
// and takes its configuration from the snapshot (etcd's TestRestore, TestSlowNodeRestore).
TEST(Paper_7, RestartFromACompactedLog) {
  Cluster c(3);
  c.elect(1);
  for (int i = 0; i < 5; ++i) c.propose(1, "v" + std::to_string(i));
  c.pump();
  run(c, 1);
  c.compact(2);
  c.crash(2);
  c.restart(2);
  EXPECT_EQ(c[2].appliedIndex(), Index{6});
  EXPECT_EQ(c[2].membership().voters, votersOf({1, 2, 3}).voters);
  SnapshotMeta meta = c[2].snapshotMeta();
  EXPECT_EQ(meta.index, Index{6});
  EXPECT_EQ(meta.term, Term{1});
  c.propose(1, "after");
  ASSERT_TRUE(settle(c));
  EXPECT_EQ(appliedData(c, 2), std::vector<std::string>{"after"});
}

// A node restarted with Config::applied (its state machine kept its state) skips what it had
// applied and replays configuration entries up to it.
TEST(Paper_7, RestartWithAppliedSkipsAppliedEntries) {
  MemoryLog log(votersOf({1, 2}));
  std::vector<Entry> es = entriesOfTerms({1, 1, 1});
  Membership m3 = votersOf({1, 2, 3});
  es[1].type = EntryType::Membership;
  es[1].data = m3.encode();
  log.append(es);
  log.setHardState(HardState{Term{1}, kNoNode, Index{3}});
  Config cfg;
  cfg.id = NodeId{1};
  cfg.applied = Index{2};
  Consensus node(cfg, log);
  EXPECT_EQ(node.appliedIndex(), Index{2});
  EXPECT_EQ(node.membership().voters, m3.voters);
  ASSERT_TRUE(node.hasReady());
  const Ready& rd = node.ready();
  ASSERT_EQ(rd.committed.size(), 1u);
  EXPECT_EQ(rd.committed[0].index, Index{3});
  node.advance();
  // A log whose commit index is beyond its entries is refused.
  MemoryLog bad(votersOf({1}));
  bad.setHardState(HardState{Term{1}, kNoNode, Index{5}});
  EXPECT_THROW(Consensus(cfg, bad), std::invalid_argument);
  // One whose commit index is below its snapshot (the node stopped after installing a leader's
  // snapshot, before its next hard state was durable: seen in a one-hour nemesis run, where
  // the node then never started again) starts with the snapshot's index committed.
  MemoryLog behind(votersOf({1, 2, 3}));
  Snapshot s;
  s.meta.index = Index{10};
  s.meta.term = Term{2};
  s.meta.membership = votersOf({1, 2, 3});
  behind.installSnapshot(s);
  behind.setHardState(HardState{Term{2}, kNoNode, Index{4}});
  Config c2 = cfg;
  c2.applied = Index{10};
  Consensus restarted(c2, behind);
  EXPECT_EQ(restarted.commitIndex(), Index{10});
  EXPECT_EQ(restarted.appliedIndex(), Index{10});
  ASSERT_TRUE(restarted.hasReady());  // the corrected commit index is written back
  const Ready& fix = restarted.ready();
  ASSERT_TRUE(fix.hardState.has_value());
  EXPECT_EQ(fix.hardState->commit, Index{10});
  restarted.advance();
}

}  // namespace
}  // namespace keel::testing
