// keel-sim: Raft's safety properties (Figure 3 of the paper), checked after every event of a
// simulation, incrementally so that a check costs O(nodes) per event plus O(1) per entry.
//
//   Election Safety       at most one leader per term.
//   Leader Append-Only    a leader never overwrites or deletes entries in its log (checked by
//                         SimLog on every write, see sim-log.h).
//   Log Matching          two entries with the same index and term have identical logs up to
//                         them: every entry ever written anywhere is registered with a hash of
//                         the terms of its log's prefix; a second entry (index, term) with
//                         another prefix hash is a violation (stronger than the pairwise check:
//                         it also compares logs that never coexisted).
//   Leader Completeness   a leader of term T holds every entry committed by a leader of an
//                         earlier term (the commit term of an index is the term of the first
//                         node seen with a commit index reaching it).
//   State Machine Safety  no two nodes apply different entries at one index; each node applies
//                         in order.
//   commit monotonic      a node's commit index never moves back (a restart starts from the
//                         durable commit); committed entries are never different on two nodes.
//   applied within commit a node never applies past its commit index.
//   leader commit rule    a leader moves its commit index only to an entry of its own term
//                         (§5.4.2; an entry of an earlier term commits only with a later one):
//                         checked by the simulator on every Ready of a leader.
// A violation throws SafetyViolation with a sentence saying what happened.
#pragma once

#include <keel/consensus.h>
#include <keel/memory-log.h>

#include <map>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace keel::sim {

class SafetyViolation : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

class Invariants {
 public:
  struct View {
    NodeId id;
    const Consensus* core;  // null while the node is down
    const MemoryLog* log;   // what the node's storage holds, unsynced writes included
    // The storage holds the core's whole log (no Ready outstanding). Else the core may hold
    // entries that replace some of the storage's, and the checks that read the log wait.
    bool settled = true;
  };

  // After every event.
  void observe(const std::vector<View>& nodes);
  // Log Matching: `prefix` is the hash of the terms of the entries before `index` in the log
  // that now holds (index, term). Returns the hash of the prefix through this entry.
  uint64_t registerEntry(NodeId who, Index index, Term term, uint64_t prefix);
  // The prefix hash through (index, term) for a snapshot's last entry (0 for index 0).
  uint64_t prefixHashOf(Index index, Term term);
  // State Machine Safety.
  void applied(NodeId id, const Entry& e);
  void appliedSnapshot(NodeId id, Index index);
  // The node restarted from its durable log.
  void restarted(NodeId id, Index durableCommit, Index snapshotIndex);

  uint64_t committedEntries() const { return committed_.size() - 1; }
  uint64_t terms() const { return leaderOfTerm_.size(); }

 private:
  struct PerNode {
    Index lastCommit;
    Index checked;       // entries up to here were compared with the committed ones
    Index lastApplied;
    uint64_t leadTerm = 0;
    Index verified;      // Leader Completeness: checked through this index for leadTerm
  };
  struct Key {
    uint64_t index, term;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept { return size_t(k.index * 0x9e3779b97f4a7c15ull ^ k.term); }
  };
  static constexpr uint64_t kUnknown = ~uint64_t{0};
  std::unordered_map<Key, uint64_t, KeyHash> entries_;
  std::map<uint64_t, NodeId> leaderOfTerm_;
  std::map<uint64_t, PerNode> nodes_;
  std::vector<uint64_t> committed_{0};    // index -> term of the committed entry
  std::vector<uint64_t> commitTerm_{0};   // index -> term in which it was first seen committed
  std::vector<uint64_t> appliedTerm_{0};  // index -> term of the entry applied there
};

}  // namespace keel::sim
