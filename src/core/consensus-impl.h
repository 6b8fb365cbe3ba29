// keel internal: Consensus::Impl, the consensus module's state and steps. consensus.c++ holds
// elections, replication, snapshots and the Ready cycle; consensus-requests.c++ holds what
// callers ask for (proposals, membership changes, reads, leadership transfer) and the
// application of configurations. Section numbers cite the Raft paper and, where marked
// "diss.", the dissertation (see consensus.c++).
#pragma once

#include <keel/consensus.h>

#include "faults.h"
#include "outbox.h"
#include "raft-log.h"
#include "tracker.h"

#include <deque>

namespace keel {

class Consensus::Impl {
 public:
  // splitmix64: small, fast and good enough to spread election timeouts.
  struct Rng {
    uint64_t s;
    uint64_t next() {
      uint64_t z = (s += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    }
  };

  Impl(const Config& config, const Log& log);

  // Input
  void tick();
  void step(const Message& m);
  Result propose(Bytes data, EntryType type);
  Result proposeMembership(std::span<const MembershipChange> changes);
  Result readIndex(NodeId from, uint64_t context);
  Result transferLeadership(NodeId to);
  void reportSnapshot(NodeId peer, Index index, bool delivered);
  enum class Campaign : uint8_t { PreElection, Election, Transfer };
  void campaign(Campaign kind);
  // Lease reads (diss. §6.4.1): true while this leader may answer reads at once.
  bool leaseHolds() const;

  // Output
  bool hasReady() const;
  std::span<const Message> sendable();
  std::span<const Entry> applicable();
  const Ready& ready();
  // Counts `committed` (the entries after applied_) as handed to the driver to apply.
  void handOutCommitted(std::span<const Entry> committed);
  void advance(bool durable);
  void persisted(Term term, Index index);
  // True when enough followers to commit without this leader replicate and answer promptly.
  bool followersSuffice() const;

  // State, read by Consensus's accessors.
  Config cfg_;
  const Log& storage_;
  RaftLog log_;
  Term term_;
  NodeId vote_;
  NodeId leader_;
  Role role_ = Role::Follower;
  Index applied_;
  Membership membership_;
  std::vector<Peer> peers_;  // every member, this node included, sorted by id
  NodeId transferTarget_;

 private:
  Peer* peer(NodeId id);
  Peer& self() { return *peer(cfg_.id); }
  bool promotable() const { return membership_.isVoter(cfg_.id); }
  bool committedInTerm() const { return log_.term(log_.committed) == term_; }
  void resetPeers();
  void resetRandomizedTimeout();

  // Role changes (§5.2)
  void becomeFollower(Term term, NodeId leader);
  void becomePreCandidate();
  void becomeCandidate();
  void becomeLeader();
  void poll(NodeId from, bool granted);

  // Per role
  void stepLeader(const Message& m);
  void stepCandidate(const Message& m);
  void stepFollower(const Message& m);
  void handleVoteRequest(const Message& m);
  void handleAppend(const Message& m);
  void handleHeartbeat(const Message& m);
  void handleSnapshot(const Message& m);
  void handleAppendResponse(Peer& pr, const Message& m);

  // Leader's replication
  Message& send(MessageType type, NodeId to);
  bool sendAppend(Peer& pr, bool allowEmpty);
  void sendHeartbeat(Peer& pr, uint64_t context);
  void broadcastAppend();
  void broadcastHeartbeat(uint64_t context);
  bool maybeCommit();
  void flushBatchedMessages();
  Index appendLeaderEntry(EntryType type, Bytes&& data);
  void abortTransfer() {
    // The target's votes bypassed the followers' promise: no round sent before counts.
    if (transferTarget_) resetLease();
    transferTarget_ = kNoNode;
  }

  // Reads (§6.4)
  struct PendingRead {
    uint64_t context;
    Index index;
    uint64_t round;
    NodeId from;
  };
  bool quorumWithAsker(NodeId asker) const;  // this leader and `asker` (itself, or a follower)
  void answerRead(NodeId from, uint64_t context, Index index);
  void releaseReads();
  void sendReadRound();
  void resetLease();
  void startReadsWaitingForCommit();

  // Membership (§6)
  void applyMembership(const Membership& m);
  bool leaveJointIfApplied();

  Rng rng_;
  uint32_t electionElapsed_ = 0;
  uint32_t heartbeatElapsed_ = 0;
  uint32_t randomizedElectionTimeout_ = 0;
  Index pendingMembershipIndex_;  // the last membership entry this leader appended
  uint64_t uncommittedBytes_ = 0;
  bool broadcastPending_ = false;  // proposals wait for one batched Append per follower

  std::vector<PendingRead> reads_;       // reads waiting for their heartbeat round
  size_t readsHead_ = 0;
  std::vector<PendingRead> readsWaitingForCommit_;  // reads before the leader's first commit
  uint64_t readRound_ = 0;         // last round started
  uint64_t readRoundSent_ = 0;     // last round broadcast
  uint64_t readRoundAcked_ = 0;    // last round a quorum confirmed
  // A new round goes out once the last one sent is confirmed: one round in flight, so that
  // under load each round carries every read asked for while the previous one travelled.
  // (The heartbeat tick sends the newest round regardless, so a lost round delays, never
  // stalls, the reads behind it.)
  bool readRoundDue() const { return readRound_ != readRoundSent_ && readRoundAcked_ >= readRoundSent_; }
  // Lease reads: every heartbeat broadcast is a round of its own; the rounds sent and not yet
  // acknowledged by a quorum, with the tick of their sending (within the last lease).
  struct SentRound {
    uint64_t round;
    uint64_t tick;
  };
  std::deque<SentRound> leaseRounds_;
  uint64_t leaseMinRound_ = 1;     // rounds before this one grant no lease
  bool hasLease_ = false;
  uint64_t leaseTick_ = 0;         // when the last round a quorum acknowledged was sent
  uint64_t ticks_ = 0;             // ticks since this node started
  std::vector<ReadState> readStates_[2];

  Outbox now_[2];      // messages that need nothing persisted first
  size_t nowSent_ = 0; // how many of now_[cur_] sendable() already handed out
  Outbox after_[2];    // messages that must wait until the Ready's writes are durable
  int cur_ = 0;        // which of the pairs above collects new output

  HardState prevHardState_;
  std::vector<Entry> committedBuf_;
  std::vector<Entry> applicableBuf_;
  Ready ready_;
  bool readyOutstanding_ = false;
};

}  // namespace keel
