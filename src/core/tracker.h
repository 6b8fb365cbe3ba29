// keel internal: what a leader tracks per member, and the quorum arithmetic of (joint)
// configurations.
#pragma once

#include <keel/consensus.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace keel {

// A ring of the last index of each Append in flight to one follower: the flow-control window
// of the Replicate state. Allocated once, when the peer is added.
class Inflights {
 public:
  explicit Inflights(uint32_t capacity) : capacity_(capacity ? capacity : 1) {}
  bool full() const { return count_ == capacity_; }
  uint32_t count() const { return count_; }
  void add(Index last) {
    if (count_ == ring_.size()) grow();
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
  // The ring grows on demand up to the capacity (most followers never need the whole window).
  void grow() {
    std::vector<Index> bigger(std::min<size_t>(capacity_, std::max<size_t>(4, ring_.size() * 2)));
    for (uint32_t i = 0; i < count_; ++i) bigger[i] = ring_[(start_ + i) % ring_.size()];
    ring_ = std::move(bigger);
    start_ = 0;
  }
  uint32_t capacity_;
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
  uint32_t quietTicks = 0;      // the leader's ticks since it last heard from this peer
  uint64_t readAck = 0;         // highest read round acknowledged
  enum class Vote : uint8_t { None, Granted, Rejected } vote = Vote::None;
  bool incoming = false;        // a voter of the (incoming) configuration
  bool outgoing = false;        // a voter of the outgoing configuration (joint consensus)
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

// The quorum arithmetic over the peers' flags `incoming` and `outgoing` (their membership in
// the voters and, during a joint configuration, the outgoing voters). A joint configuration
// needs a majority of both (§6).
class Quorum {
 public:
  // The highest value a majority has reached; valueOf(peer) gives each voter's.
  template <typename F>
  static uint64_t committed(const std::vector<Peer>& peers, bool joint, F&& valueOf) {
    uint64_t in = committedHalf(peers, &Peer::incoming, valueOf);
    return joint ? std::min(in, committedHalf(peers, &Peer::outgoing, valueOf)) : in;
  }
  // The outcome of an election; voteOf(peer) gives each voter's vote.
  template <typename F>
  static VoteResult vote(const std::vector<Peer>& peers, bool joint, F&& voteOf) {
    VoteResult in = voteHalf(peers, &Peer::incoming, voteOf);
    if (!joint) return in;
    VoteResult out = voteHalf(peers, &Peer::outgoing, voteOf);
    if (in == out) return in;
    if (in == VoteResult::Lost || out == VoteResult::Lost) return VoteResult::Lost;
    return VoteResult::Pending;
  }

 private:
  template <typename F>
  static uint64_t committedHalf(const std::vector<Peer>& peers, bool Peer::*member, F& valueOf) {
    uint64_t stack[16];
    std::vector<uint64_t> heap;
    uint64_t* v = stack;
    if (peers.size() > 16) {
      heap.resize(peers.size());
      v = heap.data();
    }
    size_t n = 0;
    for (const Peer& p : peers)
      if (p.*member) v[n++] = valueOf(p);
    if (n == 0) return ~uint64_t{0};  // an empty half constrains nothing
    // The (n/2+1)-th largest value is reached by a majority. Insertion sort: n is small.
    for (size_t i = 1; i < n; ++i)
      for (size_t j = i; j > 0 && v[j - 1] < v[j]; --j) std::swap(v[j - 1], v[j]);
    return v[n / 2];
  }
  template <typename F>
  static VoteResult voteHalf(const std::vector<Peer>& peers, bool Peer::*member, F& voteOf) {
    size_t voters = 0, granted = 0, missing = 0;
    for (const Peer& p : peers) {
      if (!(p.*member)) continue;
      ++voters;
      switch (voteOf(p)) {
        case Peer::Vote::Granted: ++granted; break;
        case Peer::Vote::None: ++missing; break;
        case Peer::Vote::Rejected: break;
      }
    }
    if (voters == 0) return VoteResult::Won;
    size_t q = voters / 2 + 1;
    if (granted >= q) return VoteResult::Won;
    if (granted + missing >= q) return VoteResult::Pending;
    return VoteResult::Lost;
  }
};

}  // namespace keel
