// keel: the Log interface: where a node keeps its Raft state.
//
// A Log holds the persistent state of Raft's Figure 2: the current term and vote (HardState),
// the entries, and the latest snapshot that replaced a prefix of them (§7). The core reads it;
// the driver (the server, a test, the simulator) writes it, following the core's Ready:
//
//   1. setHardState / append / installSnapshot with what the Ready says,
//   2. sync() (or an asynchronous equivalent) before any of Ready::messagesAfterPersist is sent
//      and before Consensus::advance(). This is the durability contract: a node must never
//      grant a vote, acknowledge an entry or report a term that its storage could forget.
//
// Indices: entries are contiguous. firstIndex() is snapshotMeta().index + 1 and lastIndex() is
// the index of the last entry, or snapshotMeta().index when there are none. term() answers for
// every index in [firstIndex() - 1, lastIndex()] (the snapshot's own index included).
//
// HardState::commit may lag on stable storage: a node that restarts with an older commit index
// learns the rest from the leader. Term and vote may not: they must be durable before any
// message of messagesAfterPersist leaves.
//
// A Log is single-threaded unless an implementation says otherwise. Errors of the storage
// itself (a failed write or sync, a corrupt record found by a read) are not expected outcomes:
// implementations end the process or throw, never return a partial result; the read side may
// therefore throw too (SegmentedLog reads from disk and verifies checksums).
//
// Implementations with asynchronous durability (SegmentedLog::syncAsync) let a server keep its
// event loop running during the sync; the core does not care how, only that advance() comes
// after the writes are durable.
#pragma once

#include <keel/types.h>

#include <span>
#include <vector>

namespace keel {

class Log {
 public:
  virtual ~Log() = default;

  // ---- Read side (the core calls these; they must be cheap) ----
  virtual HardState hardState() const = 0;
  virtual Index firstIndex() const = 0;
  virtual Index lastIndex() const = 0;
  // The term of the entry at `i`, for firstIndex() - 1 <= i <= lastIndex().
  virtual Term term(Index i) const = 0;
  // Appends to `out` the entries [lo, hi), stopping before the total payload passes maxBytes
  // but always giving at least one entry when lo < hi. Requires firstIndex() <= lo <= hi <=
  // lastIndex() + 1.
  virtual void entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const = 0;
  virtual SnapshotMeta snapshotMeta() const = 0;
  // The latest snapshot with its data (the leader sends it to a follower that is too far behind).
  virtual Snapshot snapshot() const = 0;

  // ---- Write side (the driver calls these) ----
  virtual void setHardState(const HardState& hs) = 0;
  // Appends entries, which are contiguous and start at or before lastIndex() + 1 and after
  // firstIndex() - 1. Existing entries from entries[0].index on are replaced (the Raft rule for
  // a conflicting suffix, §5.3).
  virtual void append(std::span<const Entry> entries) = 0;
  // Replaces the whole log by a snapshot received from the leader: every entry goes. (The §7
  // rule that keeps the entries after a snapshot the log already holds is the core's: it
  // never asks for an install in that case.)
  virtual void installSnapshot(const Snapshot& snapshot) = 0;
  // Keeps `snapshot` (taken locally of applied state) and drops the entries it covers.
  // Requires firstIndex() - 1 <= snapshot.meta.index <= lastIndex().
  virtual void compact(const Snapshot& snapshot) = 0;
  // Makes everything written so far durable.
  virtual void sync() = 0;
};

}  // namespace keel
