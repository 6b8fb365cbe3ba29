// keel-sim: SimLog, a Log that models durability.
//
// Writes go to the "current" log at once (the core reads what it asked to write, as from an OS
// page cache) and are queued; sync() makes the queue durable. crash() throws away what was not
// synced: the log restarts as its durable part, or, when tearing, as the durable part plus a
// prefix of the queued writes (the last write to the entries cut in the middle), which is
// what a disk may keep of writes that were in flight. A write is a unit except the entries
// of an append, which can tear.
//
// Every write also feeds the simulator's safety checks: Log Matching through Invariants
// (each entry is registered with the hash of its log's prefix) and Leader Append-Only (a node
// that is the leader of a term must not overwrite or remove entries, see setWriter).
#pragma once

#include "invariants.h"

#include <keel/memory-log.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace keel::sim {

class SimLog final : public Log {
 public:
  SimLog(NodeId id, Membership initial, Invariants& invariants);

  HardState hardState() const override { return cur_.hardState(); }
  Index firstIndex() const override { return cur_.firstIndex(); }
  Index lastIndex() const override { return cur_.lastIndex(); }
  Term term(Index i) const override { return cur_.term(i); }
  void entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const override {
    cur_.entries(lo, hi, maxBytes, out);
  }
  SnapshotMeta snapshotMeta() const override { return cur_.snapshotMeta(); }
  Snapshot snapshot() const override { return cur_.snapshot(); }

  void setHardState(const HardState& hs) override;
  void append(std::span<const Entry> entries) override;
  void installSnapshot(const Snapshot& snapshot) override;
  // Only with no entries or snapshot unsynced (the simulator compacts between Readies); a
  // queued hard state (a new commit index alone) becomes durable first.
  void compact(const Snapshot& snapshot) override;
  // Makes every queued write durable.
  void sync() override;

  // Who writes next: `leaderTerm` is the term in which the writer has been the leader since
  // before its previous batch of writes (0 when it is not). Such a leader may only append.
  void setWriter(uint64_t leaderTerm) { strictLeaderTerm_ = leaderTerm; }

  bool unsynced() const { return !pending_.empty(); }
  // Loses what was not synced. `keep(n)` returns how many of n queued writes (counting each
  // entry of an append as one) survive: 0 loses them all.
  void crash(const std::function<size_t(size_t)>& keep);
  // The defect "forget the vote on restart": the durable hard state loses its vote.
  void forgetVote();

  const MemoryLog& memory() const { return cur_; }
  const MemoryLog& durable() const { return durable_; }

 private:
  struct Write {
    enum class Kind : uint8_t { HardState, Entries, Snapshot } kind;
    HardState hs;
    std::vector<Entry> entries;
    Snapshot snapshot;
  };
  void track(std::span<const Entry> es);
  void retrack();

  NodeId id_;
  Invariants& inv_;
  MemoryLog cur_;
  MemoryLog durable_;
  std::vector<Write> pending_;
  uint64_t strictLeaderTerm_ = 0;
  // hashes_[k]: the Log Matching hash of the prefix of cur_ through index firstIndex()-1+k.
  std::vector<uint64_t> hashes_;
};

}  // namespace keel::sim
