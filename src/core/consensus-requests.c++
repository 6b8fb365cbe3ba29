// keel: the consensus module's requests: proposals, membership changes (§6), linearizable
// reads (ReadIndex and leases, diss. §6.4) and leadership transfer (diss. §3.10), and the
// application of configurations. Section numbers as in consensus.c++.
#include "consensus-impl.h"

#include <algorithm>
#include <stdexcept>

namespace keel {

// ---------------------------------------------------------------------------------------------
// Client requests

Result Consensus::Impl::propose(Bytes data, EntryType type) {
  Result r;
  if (role_ != Role::Leader) {
    r.refusal = Refusal::NotLeader;
    r.leader = leader_;
    return r;
  }
  if (transferTarget_) {
    r.refusal = Refusal::TransferInProgress;
    return r;
  }
  if (data.size() > cfg_.maxEntryBytes) {
    r.refusal = Refusal::TooLarge;
    return r;
  }
  if (cfg_.maxUncommittedBytes && uncommittedBytes_ > 0 &&
      uncommittedBytes_ + data.size() > cfg_.maxUncommittedBytes) {
    r.refusal = Refusal::Dropped;
    return r;
  }
  r.index = appendLeaderEntry(type, std::move(data));
  r.leader = cfg_.id;
  r.term = term_;
  return r;
}

Result Consensus::Impl::proposeMembership(std::span<const MembershipChange> changes) {
  Result r;
  if (role_ != Role::Leader) {
    r.refusal = Refusal::NotLeader;
    r.leader = leader_;
    return r;
  }
  if (pendingMembershipIndex_ > applied_ || membership_.joint()) {
    r.refusal = Refusal::ChangePending;
    return r;
  }
  std::vector<NodeId> voters = membership_.voters, learners = membership_.learners;
  auto erase = [](std::vector<NodeId>& v, NodeId id) { v.erase(std::remove(v.begin(), v.end(), id), v.end()); };
  auto insert = [](std::vector<NodeId>& v, NodeId id) {
    auto it = std::lower_bound(v.begin(), v.end(), id);
    if (it == v.end() || *it != id) v.insert(it, id);
  };
  for (const MembershipChange& c : changes) {
    if (!c.node) {
      r.refusal = Refusal::InvalidChange;
      return r;
    }
    switch (c.kind) {
      case MembershipChange::Kind::AddVoter:
        erase(learners, c.node);
        insert(voters, c.node);
        break;
      case MembershipChange::Kind::AddLearner:
        if (std::binary_search(voters.begin(), voters.end(), c.node)) {
          r.refusal = Refusal::InvalidChange;  // demoting a voter: remove it, then add it back
          return r;
        }
        insert(learners, c.node);
        break;
      case MembershipChange::Kind::Remove:
        erase(voters, c.node);
        erase(learners, c.node);
        break;
    }
  }
  Membership target;
  target.learners = learners;
  target.voters = voters;
  if (voters != membership_.voters) target.outgoing = membership_.voters;  // §6: joint first
  if (voters.empty() || !target.validate().empty()) {
    r.refusal = Refusal::InvalidChange;
    return r;
  }
  r = propose(target.encode(), EntryType::Membership);
  if (r.ok()) pendingMembershipIndex_ = r.index;
  return r;
}

Result Consensus::Impl::readIndex(NodeId from, uint64_t context) {
  Result r;
  if (role_ != Role::Leader) {
    if (role_ == Role::Follower && leader_) {
      // §6.4: a follower asks the leader for its commit index.
      Message& m = send(MessageType::ReadIndex, leader_);
      m.context = context;
      r.leader = leader_;
      return r;
    }
    r.refusal = Refusal::NotLeader;
    r.leader = leader_;
    return r;
  }
  r.leader = cfg_.id;
  PendingRead pr{context, log_.committed, 0, from};
  // §6.4 step 1: the leader must have committed an entry of its term to know the commit index.
  if (!committedInTerm()) {
    readsWaitingForCommit_.push_back(pr);
    return r;
  }
  // diss. §6.4.1: within its lease the leader answers at once; otherwise (no round
  // acknowledged lately, a transfer in progress) the read takes a heartbeat round like any.
  bool lease = cfg_.readMode == ReadMode::Lease && leaseHolds();
  KEEL_FAULT_IF(Fault::ReadWithoutQuorum, { lease = true; });
  if (lease || quorumWithAsker(from)) {
    KEEL_FAULT_IF(Fault::ForwardedReadAcksRound, {
      if (Peer* p = peer(from)) {
        p->readAck = readRound_;
        releaseReads();
      }
    });
    answerRead(from, context, pr.index);
    return r;
  }
  // §6.4 step 3: a round of heartbeats confirms we are still the leader. Every read asked
  // for before the next broadcast shares that round.
  if (readRound_ == readRoundSent_) ++readRound_;
  pr.round = readRound_;
  reads_.push_back(pr);
  return r;
}

// §6.4 step 3 asks for a quorum that acknowledged this leader after the read arrived. The
// leader counts, so a leader that is a quorum by itself (a single voter) answers at once. A read
// forwarded by a follower brings one more such acknowledgement with it: the follower sent it in
// this term, after the read reached it. A leader of a later term was voted for by a quorum, which
// shares a node with every quorum of this term; if this leader and the asker make a quorum, that
// node is one of them, and neither had voted in a later term when the read arrived (the asker
// sent its request in this term after that, and this leader still leads it). So the commit index
// answers the read without a heartbeat round: in a 3-node cluster, every read through a
// follower. The acknowledgement covers the asker's own read only: reads that reached this leader
// before the request did may have arrived after the asker sent it.
bool Consensus::Impl::quorumWithAsker(NodeId asker) const {
  return Quorum::committed(peers_, membership_.joint(), [&](const Peer& p) {
           return uint64_t(p.id == cfg_.id || p.id == asker);
         }) != 0;
}

void Consensus::Impl::answerRead(NodeId from, uint64_t context, Index index) {
  if (from == cfg_.id) {
    readStates_[cur_].push_back(ReadState{index, context});
    return;
  }
  Message& m = send(MessageType::ReadIndexResponse, from);
  m.index = index;
  m.context = context;
  if (Peer* p = peer(from)) m.commit = std::min(p->match, log_.committed);
}

void Consensus::Impl::sendReadRound() {
  broadcastHeartbeat(readRound_);
  readRoundSent_ = readRound_;
  if (cfg_.readMode == ReadMode::Lease && (leaseRounds_.empty() || leaseRounds_.back().round < readRound_))
    leaseRounds_.push_back(SentRound{readRound_, ticks_});
}

bool Consensus::Impl::leaseHolds() const {
  // The tick of the sending counts as the first: the round left at some moment of it.
  return role_ == Role::Leader && hasLease_ && !transferTarget_ && ticks_ < leaseTick_ + cfg_.leaseTicks();
}

void Consensus::Impl::resetLease() {
  hasLease_ = false;
  leaseRounds_.clear();
  leaseMinRound_ = readRoundSent_ + 1;
}

void Consensus::Impl::releaseReads() {
  uint64_t acked = Quorum::committed(peers_, membership_.joint(), [&](const Peer& p) {
    return p.id == cfg_.id ? readRound_ : p.readAck;
  });
  readRoundAcked_ = std::max(readRoundAcked_, acked);
  // A quorum acknowledged round `acked`: the lease runs from its sending.
  while (!leaseRounds_.empty() && leaseRounds_.front().round <= acked) {
    if (leaseRounds_.front().round >= leaseMinRound_) {
      hasLease_ = true;
      leaseTick_ = leaseRounds_.front().tick;
    }
    leaseRounds_.pop_front();
  }
  while (readsHead_ < reads_.size() && reads_[readsHead_].round <= acked) {
    const PendingRead& r = reads_[readsHead_++];
    answerRead(r.from, r.context, r.index);
  }
  if (readsHead_ == reads_.size()) {
    reads_.clear();
    readsHead_ = 0;
  }
}

void Consensus::Impl::startReadsWaitingForCommit() {
  if (readsWaitingForCommit_.empty() || !committedInTerm()) return;
  std::vector<PendingRead> waiting;
  waiting.swap(readsWaitingForCommit_);
  for (const PendingRead& w : waiting) readIndex(w.from, w.context);
}

Result Consensus::Impl::transferLeadership(NodeId to) {
  Result r;
  if (role_ != Role::Leader) {
    r.refusal = Refusal::NotLeader;
    r.leader = leader_;
    return r;
  }
  r.leader = cfg_.id;
  if (to == cfg_.id) return r;
  Peer* pr = peer(to);
  if (!pr || !membership_.isVoter(to)) {
    r.refusal = Refusal::UnknownNode;
    return r;
  }
  if (transferTarget_ == to) return r;
  if (transferTarget_) abortTransfer();
  transferTarget_ = to;
  resetLease();
  electionElapsed_ = 0;  // the transfer has one election timeout to finish
  if (pr->match == log_.lastIndex()) {
    Message& t = send(MessageType::TimeoutNow, to);
    t.term = term_;
  } else {
    sendAppend(*pr, true);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Membership

// Leave the joint configuration as soon as it is applied (§6: C_old,new then C_new), once
// every configuration entry this leader appended is applied too.
bool Consensus::Impl::leaveJointIfApplied() {
  if (role_ != Role::Leader || !membership_.joint() || pendingMembershipIndex_ > applied_) return false;
  Membership leave;
  leave.voters = membership_.voters;
  leave.learners = membership_.learners;
  pendingMembershipIndex_ = appendLeaderEntry(EntryType::Membership, leave.encode());
  return true;
}

void Consensus::Impl::applyMembership(const Membership& m) {
  membership_ = m;
  resetPeers();
  if (role_ != Role::Leader) return;
  // A lease granted by a quorum of another configuration says nothing about this one's.
  resetLease();
  if (leaveJointIfApplied()) return;
  if (!m.isVoter(cfg_.id)) {
    // §6 (diss. §4.2.2): a leader that is not part of the new configuration steps down once
    // that configuration is committed. It first tells the followers that it is committed, and
    // hands leadership to the most up-to-date remaining voter so the cluster need not wait
    // for an election timeout.
    broadcastHeartbeat(readRound_);
    Peer* best = nullptr;
    for (Peer& p : peers_)
      if (p.id != cfg_.id && m.isVoter(p.id) && (!best || p.match > best->match)) best = &p;
    if (best && best->match == log_.lastIndex()) {
      Message& t = send(MessageType::TimeoutNow, best->id);
      t.term = term_;
    }
    becomeFollower(term_, kNoNode);
    return;
  }
  if (transferTarget_ && !m.isVoter(transferTarget_)) abortTransfer();
  // New members start from a probe; a smaller quorum may commit at once.
  maybeCommit();
  broadcastPending_ = true;
}

}  // namespace keel
