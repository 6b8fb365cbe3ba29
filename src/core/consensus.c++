// keel: the consensus module. Section numbers cite the Raft paper (Ongaro and Ousterhout,
// "In Search of an Understandable Consensus Algorithm", 2014) and, where marked "diss.", the
// dissertation ("Consensus: Bridging Theory and Practice", 2014).
#include "consensus-impl.h"

#include <algorithm>
#include <stdexcept>

namespace keel {

namespace {

// A Ready hands out at most this much payload of committed entries to apply; the rest waits
// for the next Ready (a restarted node with a long committed log applies it in slices).
constexpr uint64_t kMaxCommittedBytesPerReady = 32u << 20;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction

Consensus::Impl::Impl(const Config& config, const Log& log)
    : cfg_(config), storage_(log), log_(log), rng_{config.seed ^ (config.id.value * 0x2545f4914f6cdd1dull)} {
  if (auto err = cfg_.validate(); !err.empty()) throw std::invalid_argument("keel::Config: " + err);
  HardState hs = log.hardState();
  SnapshotMeta snap = log.snapshotMeta();
  // An empty membership is a node waiting to join: it never campaigns and learns its
  // configuration from the leader's log or snapshot.
  if (auto err = snap.membership.validate(); !err.empty() && snap.membership != Membership{})
    throw std::invalid_argument("keel::Consensus: the log's snapshot has no usable membership (" + err +
                                "); a new cluster starts from a log holding its initial membership");
  if (hs.commit > log.lastIndex())
    throw std::invalid_argument("keel::Consensus: the log's commit index " + toString(hs.commit) +
                                " is outside its entries " + toString(snap.index) + ".." + toString(log.lastIndex()));
  // §7: a snapshot holds committed entries only. A node that installed a leader's snapshot and
  // stopped before its next hard state reached the disk has a commit index below it.
  term_ = hs.term;
  vote_ = hs.vote;
  log_.committed = std::max(hs.commit, snap.index);
  prevHardState_ = hs;  // as on disk: a corrected commit index goes out with the next Ready
  membership_ = snap.membership;
  applied_ = snap.index;
  // A state machine that kept its state across the restart: replay the membership entries up
  // to what it applied, so that the configuration is the one as of `applied`.
  Index applied = std::min(cfg_.applied, log_.committed);
  if (applied > applied_) {
    std::vector<Entry> es;
    log_.entries(applied_.next(), applied.next(), ~uint64_t{0}, es);
    for (const Entry& e : es) {
      Membership m;
      if (e.type == EntryType::Membership && Membership::decode(e.data.view(), m)) membership_ = std::move(m);
    }
    applied_ = applied;
  }
  resetPeers();
  for (Outbox* o : {&now_[0], &now_[1], &after_[0], &after_[1]}) o->expect(peers_.size());
  becomeFollower(term_, kNoNode);
}

Peer* Consensus::Impl::peer(NodeId id) {
  for (Peer& p : peers_)
    if (p.id == id) return &p;
  return nullptr;
}

void Consensus::Impl::resetPeers() {
  // Keep the peers that stay (with their progress), drop the others, add the newcomers; the
  // list stays sorted by id.
  std::erase_if(peers_, [&](const Peer& p) { return !membership_.contains(p.id); });
  peers_.reserve(membership_.voters.size() + membership_.outgoing.size() + membership_.learners.size());
  auto add = [&](NodeId id) {
    auto it = std::lower_bound(peers_.begin(), peers_.end(), id, [](const Peer& p, NodeId i) { return p.id < i; });
    if (it != peers_.end() && it->id == id) return;
    it = peers_.insert(it, Peer(id, cfg_.maxInflightMessages));
    it->next = log_.lastIndex().next();
    it->recentActive = true;  // a new member gets an election timeout's grace
  };
  for (const auto* list : {&membership_.voters, &membership_.outgoing, &membership_.learners})
    for (NodeId id : *list) add(id);
  for (Peer& p : peers_) {
    p.incoming = std::binary_search(membership_.voters.begin(), membership_.voters.end(), p.id);
    p.outgoing = std::binary_search(membership_.outgoing.begin(), membership_.outgoing.end(), p.id);
  }
}

void Consensus::Impl::resetRandomizedTimeout() {
  randomizedElectionTimeout_ = cfg_.electionTicks + uint32_t(rng_.next() % cfg_.electionTicks);
}

// ---------------------------------------------------------------------------------------------
// Role changes

void Consensus::Impl::becomeFollower(Term term, NodeId leader) {
  if (term != term_) {
    term_ = term;
    vote_ = kNoNode;
  }
  role_ = Role::Follower;
  leader_ = leader;
  electionElapsed_ = 0;
  heartbeatElapsed_ = 0;
  resetRandomizedTimeout();
  abortTransfer();
  reads_.clear();
  readsHead_ = 0;
  readsWaitingForCommit_.clear();
  readRoundSent_ = readRound_;
  broadcastPending_ = false;
  resetLease();
}

void Consensus::Impl::becomePreCandidate() {
  // §9.6 (diss.): a pre-vote changes neither term nor vote.
  role_ = Role::PreCandidate;
  leader_ = kNoNode;
  electionElapsed_ = 0;
  resetRandomizedTimeout();
  for (Peer& p : peers_) p.vote = Peer::Vote::None;
}

void Consensus::Impl::becomeCandidate() {
  // §5.2: "To begin an election, a follower increments its current term and transitions to
  // candidate state. It then votes for itself".
  becomeFollower(term_.next(), kNoNode);
  role_ = Role::Candidate;
  vote_ = cfg_.id;
  for (Peer& p : peers_) p.vote = Peer::Vote::None;
}

void Consensus::Impl::becomeLeader() {
  role_ = Role::Leader;
  leader_ = cfg_.id;
  electionElapsed_ = 0;
  heartbeatElapsed_ = 0;
  abortTransfer();
  uncommittedBytes_ = 0;
  readRound_ = readRoundSent_ = readRoundAcked_ = 0;
  resetLease();
  Index next = log_.lastIndex().next();
  for (Peer& p : peers_) {
    p.match = Index{};
    p.next = next;
    p.state = Progress::State::Probe;
    p.probeSent = false;
    p.pendingSnapshot = Index{};
    p.inflights.reset();
    p.recentActive = p.id == cfg_.id;  // followers must show up within an election timeout
    p.quietTicks = 0;
    p.readAck = 0;
  }
  self().match = log_.stableIndex();
  // §5.4.2 and §8: a leader commits entries of earlier terms only by committing one of its
  // own, so it appends a no-op at the start of its term. No membership change may be
  // proposed before that entry is applied (a leader appends no configuration entry before
  // committing one of its own term, diss. §4.1 as corrected in 2015).
  pendingMembershipIndex_ = appendLeaderEntry(EntryType::Normal, Bytes());
  broadcastAppend();
}

void Consensus::Impl::campaign(Campaign kind) {
  if (!promotable()) return;
  if (role_ == Role::Leader && kind != Campaign::Transfer) return;
  if (kind == Campaign::PreElection && !cfg_.preVote) kind = Campaign::Election;
  bool pre = kind == Campaign::PreElection;
  if (pre) {
    becomePreCandidate();
  } else {
    becomeCandidate();
  }
  // Votes requested in term `t`: the pre-vote asks about the term it would use.
  Term t = pre ? term_.next() : term_;
  poll(cfg_.id, true);
  if (role_ == Role::Leader || (pre && role_ != Role::PreCandidate)) return;  // won alone
  for (const Peer& p : peers_) {
    if (p.id == cfg_.id || !membership_.isVoter(p.id)) continue;
    Message& m = send(pre ? MessageType::PreVote : MessageType::Vote, p.id);
    m.term = t;
    m.index = log_.lastIndex();
    m.logTerm = log_.lastTerm();
    m.transfer = kind == Campaign::Transfer;
  }
}

void Consensus::Impl::poll(NodeId from, bool granted) {
  if (Peer* p = peer(from); p && p->vote == Peer::Vote::None)
    p->vote = granted ? Peer::Vote::Granted : Peer::Vote::Rejected;
  VoteResult r = Quorum::vote(peers_, membership_.joint(), [](const Peer& p) { return p.vote; });
  if (r == VoteResult::Won) {
    if (role_ == Role::PreCandidate) {
      campaign(Campaign::Election);
    } else {
      becomeLeader();
    }
  } else if (r == VoteResult::Lost) {
    becomeFollower(term_, kNoNode);
  }
}

// ---------------------------------------------------------------------------------------------
// Time

void Consensus::Impl::tick() {
  ticks_++;
  electionElapsed_++;
  if (role_ != Role::Leader) {
    if (promotable() && electionElapsed_ >= randomizedElectionTimeout_) {
      electionElapsed_ = 0;
      campaign(Campaign::PreElection);
    }
    return;
  }
  heartbeatElapsed_++;
  for (Peer& p : peers_) {
    if (p.state == Progress::State::Snapshot) p.snapshotTicks++;
    if (p.quietTicks < UINT32_MAX) p.quietTicks++;
  }
  if (electionElapsed_ >= cfg_.electionTicks) {
    electionElapsed_ = 0;
    // §6.2 (diss.): "a leader steps down if an election timeout elapses without a successful
    // round of heartbeats to a majority of its cluster".
    if (cfg_.checkQuorum) {
      VoteResult r = Quorum::vote(peers_, membership_.joint(), [&](const Peer& p) {
        return p.id == cfg_.id || p.recentActive ? Peer::Vote::Granted : Peer::Vote::Rejected;
      });
      for (Peer& p : peers_) p.recentActive = false;
      if (r != VoteResult::Won) {
        becomeFollower(term_, kNoNode);
        return;
      }
    }
    // §3.10 (diss.): a transfer that did not finish within an election timeout is abandoned.
    abortTransfer();
  }
  if (heartbeatElapsed_ >= cfg_.heartbeatTicks) {
    heartbeatElapsed_ = 0;
    // With leases every heartbeat is a round of its own, so that its acknowledgements renew
    // the lease from the moment it was sent.
    if (cfg_.readMode == ReadMode::Lease && readRound_ == readRoundSent_) ++readRound_;
    sendReadRound();
  }
  // Rounds older than a lease can no longer grant one.
  while (!leaseRounds_.empty() && leaseRounds_.front().tick + cfg_.leaseTicks() <= ticks_) leaseRounds_.pop_front();
}

// ---------------------------------------------------------------------------------------------
// Messages

void Consensus::Impl::step(const Message& m) {
  if (m.to != cfg_.id)
    throw std::invalid_argument("keel::Consensus::step: message for " + toString(m.to) + " delivered to " +
                                toString(cfg_.id));
  if (m.from == cfg_.id || !m.from) return;
  bool voteRequest = m.type == MessageType::Vote || m.type == MessageType::PreVote;

  if (m.term > term_) {
    if (voteRequest) {
      // §4.2.3 (diss.): a server that heard from a current leader within the minimum election
      // timeout does not grant a vote or raise its term (unless leadership is being
      // transferred to the candidate).
      bool inLease = cfg_.checkQuorum && leader_ && electionElapsed_ < cfg_.electionTicks;
      // With lease reads, a node that just started may have acknowledged a leader's heartbeat
      // right before it went down: it keeps that promise for an election timeout (§6.4.1).
      if (cfg_.readMode == ReadMode::Lease && ticks_ < cfg_.electionTicks) inLease = true;
      if (inLease && !m.transfer) return;
    }
    if (m.type == MessageType::PreVote) {
      // Not a reason to change our term.
    } else if (m.type == MessageType::PreVoteResponse && !m.reject) {
      // A grant carries the term we would campaign in; ours stays.
    } else if (m.type == MessageType::Append || m.type == MessageType::Heartbeat ||
               m.type == MessageType::Snapshot) {
      becomeFollower(m.term, m.from);
    } else {
      // §5.1: "If a server receives a request with a stale term ... If RPC request or
      // response contains term T > currentTerm: set currentTerm = T, convert to follower".
      // The election timer runs on (Figure 2 resets it only for the current leader's
      // AppendEntries and for a granted vote): otherwise candidates that cannot win (a stale
      // log, a removed server), without pre-vote, keep resetting the timers of the servers
      // that could, and no election ends (keel-sim --seed 2618 --read-mode lease --nodes 5).
      uint32_t elapsed = electionElapsed_;
      becomeFollower(m.term, kNoNode);
      electionElapsed_ = elapsed;
    }
  } else if (m.term < term_) {
    if ((cfg_.checkQuorum || cfg_.preVote) &&
        (m.type == MessageType::Append || m.type == MessageType::Heartbeat)) {
      // A deposed leader (or one cut off by a partition) learns our term from this answer and
      // steps down; otherwise, with pre-vote or check-quorum, it might never find out.
      Message& r = send(MessageType::AppendResponse, m.from);
      r.term = term_;
    } else if (m.type == MessageType::PreVote) {
      Message& r = send(MessageType::PreVoteResponse, m.from);
      r.term = term_;
      r.reject = true;
    }
    return;  // §5.1: a request with a stale term is rejected; a stale response is ignored
  }

  if (voteRequest) {
    handleVoteRequest(m);
    return;
  }
  switch (role_) {
    case Role::Leader: stepLeader(m); break;
    case Role::Candidate:
    case Role::PreCandidate: stepCandidate(m); break;
    case Role::Follower: stepFollower(m); break;
  }
}

void Consensus::Impl::handleVoteRequest(const Message& m) {
  bool pre = m.type == MessageType::PreVote;
  // §5.2: at most one vote per term, first come first served; a repeated request from the
  // candidate we voted for is granted again. A pre-vote for a later term commits to nothing.
  bool canVote = vote_ == m.from || (!vote_ && !leader_) || (pre && m.term > term_);
  // A node without any membership is a new machine (or one whose disk was wiped) waiting to be
  // added: it remembers no vote it may have cast before, so it votes only once a leader has
  // given it a configuration, and with it the current term. Otherwise a wiped node re-added
  // under its old id could elect a stale candidate (found by the nemesis tests).
  if (membership_.voters.empty()) canVote = false;
  bool upToDate = log_.isUpToDate(m.index, m.logTerm);  // §5.4.1
  KEEL_FAULT_IF(Fault::GrantAnyVote, { canVote = upToDate = true; });
  MessageType rt = pre ? MessageType::PreVoteResponse : MessageType::VoteResponse;
  Message& r = send(rt, m.from);
  if (canVote && upToDate) {
    r.term = m.term;
    if (!pre) {
      electionElapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
}

void Consensus::Impl::stepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::Append:
      electionElapsed_ = 0;
      leader_ = m.from;
      handleAppend(m);
      break;
    case MessageType::Heartbeat:
      electionElapsed_ = 0;
      leader_ = m.from;
      handleHeartbeat(m);
      break;
    case MessageType::Snapshot:
      electionElapsed_ = 0;
      leader_ = m.from;
      handleSnapshot(m);
      break;
    case MessageType::TimeoutNow:
      // §3.10 (diss.): the transfer target starts an election at once, skipping the pre-vote.
      campaign(Campaign::Transfer);
      break;
    case MessageType::ReadIndexResponse:
      if (!m.reject) {
        log_.committed = std::max(log_.committed, std::min(m.commit, log_.lastIndex()));
        readStates_[cur_].push_back(ReadState{m.index, m.context});
      }
      break;
    case MessageType::ReadIndex:
      // A follower that is asked to forward a read knows no better than to refuse it.
      {
        Message& r = send(MessageType::ReadIndexResponse, m.from);
        r.term = term_;
        r.context = m.context;
        r.reject = true;
      }
      break;
    default: break;  // responses meant for another role: stale
  }
}

void Consensus::Impl::stepCandidate(const Message& m) {
  switch (m.type) {
    case MessageType::Append:
    case MessageType::Heartbeat:
    case MessageType::Snapshot:
      // §5.2: "If the AppendEntries RPC is from another server claiming to be leader whose
      // term is at least as large as the candidate's current term, then the candidate
      // recognizes the leader as legitimate and returns to follower state."
      becomeFollower(m.term, m.from);
      stepFollower(m);
      break;
    case MessageType::PreVoteResponse:
      if (role_ == Role::PreCandidate) poll(m.from, !m.reject);
      break;
    case MessageType::VoteResponse:
      if (role_ == Role::Candidate) poll(m.from, !m.reject);
      break;
    default: break;
  }
}

void Consensus::Impl::handleAppend(const Message& m) {
  Message& r = send(MessageType::AppendResponse, m.from);
  r.term = term_;
  if (m.index < log_.committed) {
    // Already committed here: tell the leader where we are.
    r.index = log_.committed;
    return;
  }
  // §5.3: "Reply false if log doesn't contain an entry at prevLogIndex whose term matches
  // prevLogTerm".
  if (log_.matchTerm(m.index, m.logTerm)) {
    log_.appendFollower(m.entries);
    Index lastNew = m.index + m.entries.size();
    // §5.3: "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of last
    // new entry)".
    Index commit = std::min(m.commit, lastNew);
    if (commit > log_.committed) log_.committed = commit;
    r.index = lastNew;
    return;
  }
  // Fast back-off: the last entry whose term is at most the leader's prevLogTerm is the best
  // guess of where our logs agree (§5.3's optimisation, as etcd-io/raft does it).
  auto [hintIndex, hintTerm] = log_.findConflictByTerm(std::min(m.index, log_.lastIndex()), m.logTerm);
  r.reject = true;
  r.index = m.index;
  r.hintIndex = hintIndex;
  r.hintTerm = hintTerm;
}

void Consensus::Impl::handleHeartbeat(const Message& m) {
  // The leader sends min(its commit, our match), so this never passes what we hold.
  Index commit = std::min(m.commit, log_.lastIndex());
  if (commit > log_.committed) log_.committed = commit;
  Message& r = send(MessageType::HeartbeatResponse, m.from);
  r.term = term_;
  r.context = m.context;
}

void Consensus::Impl::handleSnapshot(const Message& m) {
  Message& r = send(MessageType::AppendResponse, m.from);
  r.term = term_;
  if (!m.snapshot) {
    r.index = log_.committed;
    return;
  }
  const SnapshotMeta& s = m.snapshot->meta;
  if (s.index <= log_.committed) {
    r.index = log_.committed;
    return;
  }
  if (log_.matchTerm(s.index, s.term)) {
    // §7: "If existing log entry has same index and term as snapshot's last included entry,
    // retain log entries following it and reply".
    log_.committed = s.index;
    r.index = log_.lastIndex();
    return;
  }
  // §7: "Discard the entire log ... Reset state machine using snapshot contents".
  log_.restore(m.snapshot);
  r.index = s.index;
}

// ---------------------------------------------------------------------------------------------
// Leader

void Consensus::Impl::stepLeader(const Message& m) {
  Peer* pr = peer(m.from);
  switch (m.type) {
    case MessageType::AppendResponse:
      if (pr) {
        pr->recentActive = true;
        pr->quietTicks = 0;
        handleAppendResponse(*pr, m);
      }
      break;
    case MessageType::HeartbeatResponse:
      if (!pr) break;
      pr->recentActive = true;
      pr->quietTicks = 0;
      pr->probeSent = false;
      // The answers to a full window of Appends may all have been lost (§5.5: the network
      // loses messages): free one slot so that one more Append goes out, whose answer shows
      // where the follower is (etcd-io/raft does the same). Without this a follower whose
      // answers were lost while the window was full was never sent anything again.
      if (pr->state == Progress::State::Replicate && pr->inflights.full()) pr->inflights.freeFirstOne();
      if (pr->state == Progress::State::Snapshot && pr->snapshotTicks >= 2 * cfg_.electionTicks) {
        pr->becomeProbe();  // the snapshot was lost or refused: try again from a probe
      }
      if (pr->match < log_.lastIndex()) sendAppend(*pr, true);
      if (m.context > pr->readAck) {
        pr->readAck = m.context;
        releaseReads();
      }
      break;
    case MessageType::ReadIndex:
      if (pr) readIndex(m.from, m.context);
      break;
    default: break;
  }
}

void Consensus::Impl::handleAppendResponse(Peer& pr, const Message& m) {
  if (m.reject) {
    Index hint = m.hintIndex;
    if (m.hintTerm > Term{}) hint = log_.findConflictByTerm(m.hintIndex, m.hintTerm).first;
    if (pr.maybeDecrTo(m.index, hint)) {
      if (pr.state == Progress::State::Replicate) pr.becomeProbe();
      sendAppend(pr, true);
    }
    return;
  }
  bool wasPaused = pr.paused();
  if (!pr.maybeUpdate(m.index)) {
    if (wasPaused && !pr.paused()) sendAppend(pr, false);
    return;
  }
  switch (pr.state) {
    case Progress::State::Probe: pr.becomeReplicate(); break;
    case Progress::State::Snapshot:
      if (pr.match >= pr.pendingSnapshot) pr.becomeProbe();
      break;
    case Progress::State::Replicate: pr.inflights.freeLE(m.index); break;
  }
  if (maybeCommit()) {
    startReadsWaitingForCommit();
  }
  // Keep the pipeline full (§10.2.2 diss.): send what the window now allows.
  while (pr.next <= log_.lastIndex() && sendAppend(pr, false)) {
  }
  if (pr.id == transferTarget_ && pr.match == log_.lastIndex()) {
    Message& t = send(MessageType::TimeoutNow, pr.id);
    t.term = term_;
  }
}

void Consensus::Impl::reportSnapshot(NodeId id, Index index, bool delivered) {
  if (role_ != Role::Leader) return;
  Peer* pr = peer(id);
  // The driver may have sent a newer snapshot than the one pending, never an older one: an
  // older one is a report from before (the pending one was never sent).
  if (!pr || pr->state != Progress::State::Snapshot || index < pr->pendingSnapshot) return;
  // A transfer can outlast the timeout that counts a snapshot as lost: a delivered one restarts
  // it, so that the answer is awaited instead of a second copy started. A failed one is tried
  // again after one election timeout rather than two, and not at once: a refusal would repeat.
  if (delivered) pr->snapshotTicks = 0;
  else pr->snapshotTicks = std::max(pr->snapshotTicks, cfg_.electionTicks);
}

Message& Consensus::Impl::send(MessageType type, NodeId to) {
  bool after = type == MessageType::AppendResponse || type == MessageType::Vote ||
               type == MessageType::VoteResponse;
  KEEL_FAULT_IF(Fault::AckBeforePersist, { after = false; });
  Message& m = (after ? after_[cur_] : now_[cur_]).add();
  m.type = type;
  m.from = cfg_.id;
  m.to = to;
  m.term = term_;
  return m;
}

bool Consensus::Impl::sendAppend(Peer& pr, bool allowEmpty) {
  if (pr.paused()) return false;
  Index prev = pr.next.prev();
  std::optional<Term> prevTerm = log_.term(prev);
  if (!prevTerm) {
    // §7: the entries the follower needs are compacted away: send the snapshot instead.
    if (!pr.recentActive) return false;
    auto snap = std::make_shared<Snapshot>(storage_.snapshot());
    Message& m = send(MessageType::Snapshot, pr.id);
    pr.becomeSnapshot(snap->meta.index);
    m.snapshot = std::move(snap);
    return false;
  }
  Index last = log_.lastIndex();
  if (pr.next > last && !allowEmpty && pr.state == Progress::State::Replicate) return false;
  Message& m = send(MessageType::Append, pr.id);
  m.index = prev;
  m.logTerm = *prevTerm;
  m.commit = log_.committed;
  log_.entries(pr.next, last.next(), cfg_.maxMessageBytes, m.entries);
  if (!m.entries.empty()) {
    Index sent = m.entries.back().index;
    if (pr.state == Progress::State::Replicate) {
      // Optimistically assume delivery: the pipeline of §10.2.2 (diss.).
      pr.next = sent.next();
      pr.inflights.add(sent);
    } else {
      pr.probeSent = true;
    }
  } else if (pr.state == Progress::State::Probe) {
    pr.probeSent = true;
  }
  return !m.entries.empty();
}

void Consensus::Impl::sendHeartbeat(Peer& pr, uint64_t context) {
  Message& m = send(MessageType::Heartbeat, pr.id);
  // Never tell a follower to commit past what it is known to hold.
  m.commit = std::min(pr.match, log_.committed);
  m.context = context;
}

void Consensus::Impl::broadcastAppend() {
  for (Peer& p : peers_)
    if (p.id != cfg_.id) sendAppend(p, false);
}

void Consensus::Impl::broadcastHeartbeat(uint64_t context) {
  for (Peer& p : peers_)
    if (p.id != cfg_.id) sendHeartbeat(p, context);
}

bool Consensus::Impl::maybeCommit() {
  // (A cluster of one, the leader alone: its own match is the quorum's.)
  Index q = peers_.size() == 1 ? peers_[0].match
                               : Index{Quorum::committed(peers_, membership_.joint(),
                                                         [](const Peer& p) { return p.match.value; })};
  if (q <= log_.committed) return false;
  // §5.4.2: "Raft never commits log entries from previous terms by counting replicas. Only
  // log entries from the leader's current term are committed by counting replicas".
  bool ownTerm = log_.term(q) == term_;
  KEEL_FAULT_IF(Fault::CommitPreviousTerm, { ownTerm = true; });
  if (!ownTerm) return false;
  log_.committed = q;
  return true;
}

Index Consensus::Impl::appendLeaderEntry(EntryType type, Bytes&& data) {
  uncommittedBytes_ += data.size();
  if (peers_.size() > 1) broadcastPending_ = true;  // a cluster of one has nobody to tell
  return log_.appendNext(term_, type, std::move(data));
}

// ---------------------------------------------------------------------------------------------
// Ready / advance

bool Consensus::Impl::hasReady() const {
  if (readyOutstanding_) return false;
  if (log_.hasUnstable() || log_.committed > applied_ || broadcastPending_ || now_[cur_].size() > nowSent_ ||
      after_[cur_].size() || !readStates_[cur_].empty() || readRoundDue())
    return true;
  return HardState{term_, vote_, log_.committed} != prevHardState_;
}

void Consensus::Impl::flushBatchedMessages() {
  if (role_ == Role::Leader) {
    if (broadcastPending_) broadcastAppend();  // one Append per follower for the whole batch
    if (readRoundDue()) sendReadRound();
  }
  broadcastPending_ = false;
}

std::span<const Message> Consensus::Impl::sendable() {
  flushBatchedMessages();
  std::span<const Message> all = now_[cur_].span();
  std::span<const Message> fresh = all.subspan(nowSent_);
  nowSent_ = all.size();
  return fresh;
}

std::span<const Entry> Consensus::Impl::applicable() {
  applicableBuf_.clear();
  // A leader of one commits what its outstanding Ready writes: those wait for the write.
  if (log_.committed <= applied_ || (readyOutstanding_ && ready_.committedAfterWrite)) return {};
  // A snapshot taken in since the last ready() covers them: it comes in the next Ready.
  if (applied_.next() < log_.firstIndex()) return {};
  log_.entries(applied_.next(), log_.committed.next(), kMaxCommittedBytesPerReady, applicableBuf_);
  handOutCommitted(applicableBuf_);
  return applicableBuf_;
}

void Consensus::Impl::handOutCommitted(std::span<const Entry> committed) {
  for (const Entry& e : committed) {
    applied_ = e.index;
    if (role_ == Role::Leader && e.term == term_)
      uncommittedBytes_ -= std::min<uint64_t>(uncommittedBytes_, e.data.size());
    if (e.type == EntryType::Membership) {
      Membership m;
      if (Membership::decode(e.data.view(), m)) applyMembership(m);
    }
  }
  // A leader elected after C_old,new was appended finds it applied before its no-op (or
  // applied it as a follower): applyMembership declined to leave it then (its no-op was
  // pending), so it leaves it once the no-op is applied (§6; diss. §4.3). Without this the
  // cluster stayed joint forever and refused every later change.
  if (membership_.joint()) leaveJointIfApplied();
}

const Ready& Consensus::Impl::ready() {
  if (readyOutstanding_) throw std::logic_error("keel::Consensus::ready: the previous Ready was not advanced");
  if (broadcastPending_ || readRoundDue()) flushBatchedMessages();
  ready_.hardState.reset();
  log_.handOff();
  if (role_ == Role::Leader && peers_.size() == 1) {
    // A cluster of one: nothing ever leaves this node, and the driver makes this Ready's
    // entries durable before it applies any of them, so they may count as replicated now.
    // (With any other member this would let a commit index escape before the write.)
    if (Index last = log_.lastIndex(); last > log_.committed) {
      peers_[0].match = last;
      if (maybeCommit()) startReadsWaitingForCommit();
    }
  }
  HardState hs{term_, vote_, log_.committed};
  if (hs != prevHardState_) ready_.hardState = hs;
  ready_.entries = log_.persistingEntries();
  ready_.snapshot = log_.persistingSnapshot();
  if (ready_.snapshot) {
    applied_ = ready_.snapshot->meta.index;
    applyMembership(ready_.snapshot->meta.membership);
  }
  committedBuf_.clear();
  ready_.committed = {};
  // Every other commit counts only durable copies (the leader's own once advance() saw them).
  ready_.committedAfterWrite = role_ == Role::Leader && peers_.size() == 1;
  if (log_.committed > applied_) {
    // Committed entries that this very Ready persists need no copy (a leader of one, or a
    // follower that hears of the commit with the entries).
    ready_.committed = log_.persistingSpan(applied_.next(), log_.committed.next());
    if (ready_.committed.empty()) {
      log_.entries(applied_.next(), log_.committed.next(), kMaxCommittedBytesPerReady, committedBuf_);
      ready_.committed = committedBuf_;
    }
    handOutCommitted(ready_.committed);
  }
  ready_.messages = now_[cur_].span().subspan(nowSent_);  // the rest went out via sendable()
  nowSent_ = 0;
  ready_.messagesAfterPersist = after_[cur_].span();
  ready_.readStates = readStates_[cur_];
  // §10.2.1 (diss.): a leader's own write need not be durable when its followers alone commit.
  ready_.syncOptional = role_ == Role::Leader && peers_.size() > 1 && !ready_.entries.empty() && !ready_.snapshot &&
                        !(ready_.hardState && ready_.hardState->mustPersistOver(prevHardState_)) &&
                        ready_.messagesAfterPersist.empty() && followersSuffice();
  cur_ ^= 1;
  readyOutstanding_ = true;
  return ready_;
}

void Consensus::Impl::advance(bool durable) {
  if (!readyOutstanding_) throw std::logic_error("keel::Consensus::advance: no Ready outstanding");
  if (!durable && !ready_.syncOptional)
    throw std::logic_error("keel::Consensus::advance: this Ready's writes must be durable (no syncOptional)");
  int out = cur_ ^ 1;
  bool wroteEntries = !ready_.entries.empty();
  if (ready_.hardState) prevHardState_ = *ready_.hardState;
  log_.persisted();
  now_[out].clear();
  after_[out].clear();
  readStates_[out].clear();
  readyOutstanding_ = false;
  // A cluster of one counted them in ready(). The sync of a Ready that wrote entries covers
  // every earlier write too; a Ready without entries may not have been synced at all (a commit
  // index alone is written without one), so it says nothing of writes left unsynced before.
  if (durable && wroteEntries && peers_.size() > 1) persisted(term_, log_.stableIndex());
}

void Consensus::Impl::persisted(Term term, Index index) {
  // The leader's own entries count towards a majority once they are durable (§10.2.1 diss.).
  // A leader only appends to its log, so what it synced in this term is still its log.
  if (role_ != Role::Leader || term != term_) return;
  Peer& me = self();
  index = std::min(index, log_.stableIndex());
  if (index > me.match) {
    me.match = index;
    if (maybeCommit()) startReadsWaitingForCommit();
  }
}

bool Consensus::Impl::followersSuffice() const {
  return Quorum::vote(peers_, membership_.joint(), [&](const Peer& p) {
           bool prompt = p.state == Progress::State::Replicate && p.quietTicks <= 2 * cfg_.heartbeatTicks;
           return p.id != cfg_.id && prompt ? Peer::Vote::Granted : Peer::Vote::Rejected;
         }) == VoteResult::Won;
}

// ---------------------------------------------------------------------------------------------
// The public face

Consensus::Consensus(const Config& config, const Log& log) : impl_(std::make_unique<Impl>(config, log)) {}
Consensus::~Consensus() = default;

void Consensus::tick() { impl_->tick(); }
void Consensus::step(const Message& m) { impl_->step(m); }
Result Consensus::propose(Bytes command) { return impl_->propose(std::move(command), EntryType::Normal); }
Result Consensus::proposeMembership(std::span<const MembershipChange> c) { return impl_->proposeMembership(c); }
Result Consensus::readIndex(uint64_t context) { return impl_->readIndex(impl_->cfg_.id, context); }
Result Consensus::transferLeadership(NodeId to) { return impl_->transferLeadership(to); }
void Consensus::campaign() { impl_->campaign(Impl::Campaign::PreElection); }
void Consensus::reportSnapshot(NodeId id, Index index, bool delivered) { impl_->reportSnapshot(id, index, delivered); }
bool Consensus::hasReady() const noexcept { return impl_->hasReady(); }
std::span<const Message> Consensus::sendable() { return impl_->sendable(); }
std::span<const Entry> Consensus::applicable() { return impl_->applicable(); }
const Ready& Consensus::ready() { return impl_->ready(); }
void Consensus::advance(bool durable) { impl_->advance(durable); }
void Consensus::persisted(Term term, Index index) { impl_->persisted(term, index); }

SnapshotMeta Consensus::snapshotMeta() const {
  SnapshotMeta m;
  m.index = impl_->applied_;
  m.term = *impl_->log_.term(impl_->applied_);
  m.membership = impl_->membership_;
  return m;
}

NodeId Consensus::id() const noexcept { return impl_->cfg_.id; }
Role Consensus::role() const noexcept { return impl_->role_; }
Term Consensus::term() const noexcept { return impl_->term_; }
NodeId Consensus::leader() const noexcept { return impl_->leader_; }
NodeId Consensus::vote() const noexcept { return impl_->vote_; }
Index Consensus::commitIndex() const noexcept { return impl_->log_.committed; }
Index Consensus::appliedIndex() const noexcept { return impl_->applied_; }
Index Consensus::lastIndex() const noexcept { return impl_->log_.lastIndex(); }
Term Consensus::lastTerm() const noexcept { return impl_->log_.lastTerm(); }
const Membership& Consensus::membership() const noexcept { return impl_->membership_; }
NodeId Consensus::transferTarget() const noexcept { return impl_->transferTarget_; }
bool Consensus::hasLease() const noexcept { return impl_->leaseHolds(); }

std::optional<Progress> Consensus::progress(NodeId id) const {
  if (impl_->role_ != Role::Leader) return std::nullopt;
  for (const Peer& p : impl_->peers_) {
    if (p.id != id) continue;
    return Progress{p.state, p.match, p.next, p.inflights.count(), p.recentActive};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Names and validation

const char* toString(Role r) noexcept {
  switch (r) {
    case Role::Follower: return "follower";
    case Role::PreCandidate: return "pre-candidate";
    case Role::Candidate: return "candidate";
    case Role::Leader: return "leader";
  }
  return "?";
}

const char* toString(Refusal r) noexcept {
  switch (r) {
    case Refusal::None: return "accepted";
    case Refusal::NotLeader: return "not the leader";
    case Refusal::TransferInProgress: return "leadership transfer in progress";
    case Refusal::TooLarge: return "entry too large";
    case Refusal::Dropped: return "dropped: too many uncommitted bytes";
    case Refusal::ChangePending: return "a membership change is pending";
    case Refusal::InvalidChange: return "invalid membership change";
    case Refusal::UnknownNode: return "unknown node";
  }
  return "?";
}

const char* toString(Progress::State s) noexcept {
  switch (s) {
    case Progress::State::Probe: return "probe";
    case Progress::State::Replicate: return "replicate";
    case Progress::State::Snapshot: return "snapshot";
  }
  return "?";
}

std::string Config::validate() const {
  if (!id) return "id must be a non-zero node id";
  if (electionTicks < 2) return "electionTicks must be at least 2";
  if (heartbeatTicks == 0) return "heartbeatTicks must be at least 1";
  if (heartbeatTicks >= electionTicks) return "heartbeatTicks must be less than electionTicks";
  if (maxInflightMessages == 0) return "maxInflightMessages must be at least 1";
  if (maxMessageBytes == 0) return "maxMessageBytes must be at least 1";
  if (readMode == ReadMode::Lease && !checkQuorum) return "lease reads require checkQuorum";
  if (maxClockDriftPercent > 1000) return "maxClockDriftPercent must be at most 1000";
  if (readMode == ReadMode::Lease && leaseTicks() < 1)
    return "lease reads need a lease of at least one tick: (electionTicks - 1) * 100 / (100 + "
           "maxClockDriftPercent) is below 1";
  return {};
}

uint32_t Config::leaseTicks() const {
  if (electionTicks < 1) return 0;
  return uint32_t(uint64_t(electionTicks - 1) * 100 / (100 + uint64_t(maxClockDriftPercent)));
}

}  // namespace keel
