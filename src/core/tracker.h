// keel internal: what a leader tracks per member, and the quorum arithmetic of (joint)
// configurations.
#pragma once

#include <keel/consensus.h>

#include <cstdint>
#include <vector>

namespace keel {

// A ring of the last index of each Append in flight to one follower: the flow-control window
// of the Replicate state. Allocated once, when the peer is added.
class Inflights {
 public:
  explicit Inflights(uint32_t capacity) : ring_(capacity ? capacity : 1) {}
  bool full() const { return count_ == ring_.size(); }
  uint32_t count() const { return count_; }
  void add(Index last) {
    ring_[(start_ + count_) % ring_.size()] = last;
    ++count_;
  }
  // Frees every Append whose last index is <= `to`.
  void freeLE(Index to) {
    while (count_ > 0 && ring_[start_] <= to) {
      start_ = (start_ + 1) % ring_.size();
      --count_;
    }
  }
  // Frees the oldest Append, whatever its index.
  void freeFirstOne() {
    if (count_ == 0) return;
    start_ = (start_ + 1) % ring_.size();
    --count_;
  }
  void reset() { start_ = count_ = 0; }

 private:
  std::vector<Index> ring_;
  uint32_t start_ = 0;
  uint32_t count_ = 0;
};

struct Peer {
  Peer(NodeId id, uint32_t maxInflight) : id(id), inflights(maxInflight) {}
  NodeId id;
  Progress::State state = Progress::State::Probe;
  Index match;
  Index next;
  bool probeSent = false;       // Probe: an Append is out; wait for its answer or a heartbeat
  Index pendingSnapshot;        // Snapshot: the index of the snapshot sent
  uint32_t snapshotTicks = 0;   // Snapshot: ticks since it was sent
  bool recentActive = false;    // heard from within the last election timeout (§6.2)
  uint64_t readAck = 0;         // highest read round acknowledged
  enum class Vote : uint8_t { None, Granted, Rejected } vote = Vote::None;
  Inflights inflights;

  bool paused() const;
  void becomeProbe();
  void becomeReplicate();
  void becomeSnapshot(Index snapshotIndex);
  // An acknowledgement of `index`: true if it told us something new.
  bool maybeUpdate(Index index);
  // A rejection of the Append at `rejected`, with the follower's hint: true if not stale.
  bool maybeDecrTo(Index rejected, Index hint);
};

enum class VoteResult : uint8_t { Pending, Won, Lost };

// The quorum arithmetic. A joint configuration needs both majorities (§6).
class Quorum {
 public:
  // The highest value a majority of `voters` has reached; `valueOf(id)` gives each voter's.
  template <typename F>
  static uint64_t committed(const std::vector<NodeId>& voters, F&& valueOf);
  template <typename F>
  static uint64_t committed(const Membership& m, F&& valueOf) {
    uint64_t in = committed(m.voters, valueOf);
    return m.joint() ? std::min(in, committed(m.outgoing, valueOf)) : in;
  }
  template <typename F>
  static VoteResult vote(const std::vector<NodeId>& voters, F&& voteOf);
  template <typename F>
  static VoteResult vote(const Membership& m, F&& voteOf) {
    VoteResult in = vote(m.voters, voteOf);
    if (!m.joint()) return in;
    VoteResult out = vote(m.outgoing, voteOf);
    if (in == out) return in;
    if (in == VoteResult::Lost || out == VoteResult::Lost) return VoteResult::Lost;
    return VoteResult::Pending;
  }
};

template <typename F>
uint64_t Quorum::committed(const std::vector<NodeId>& voters, F&& valueOf) {
  size_t n = voters.size();
  if (n == 0) return ~uint64_t{0};  // an empty half of a joint config constrains nothing
  uint64_t stack[16];
  std::vector<uint64_t> heap;
  uint64_t* v = stack;
  if (n > 16) { heap.resize(n); v = heap.data(); }
  for (size_t i = 0; i < n; ++i) v[i] = valueOf(voters[i]);
  // The (n/2+1)-th largest value is reached by a majority. Insertion sort: n is small.
  for (size_t i = 1; i < n; ++i)
    for (size_t j = i; j > 0 && v[j - 1] < v[j]; --j) std::swap(v[j - 1], v[j]);
  return v[n / 2];
}

template <typename F>
VoteResult Quorum::vote(const std::vector<NodeId>& voters, F&& voteOf) {
  if (voters.empty()) return VoteResult::Won;
  size_t granted = 0, missing = 0;
  for (NodeId id : voters) {
    switch (voteOf(id)) {
      case Peer::Vote::Granted: ++granted; break;
      case Peer::Vote::None: ++missing; break;
      case Peer::Vote::Rejected: break;
    }
  }
  size_t q = voters.size() / 2 + 1;
  if (granted >= q) return VoteResult::Won;
  if (granted + missing >= q) return VoteResult::Pending;
  return VoteResult::Lost;
}

}  // namespace keel
