// keel internal: RaftLog, the core's view of its log.
//
// The durable Log (read-only here) is overlaid by two in-memory layers, newest on top:
//   unstable:   entries (and possibly a received snapshot) not yet handed to the driver;
//   persisting: what the outstanding Ready asked the driver to write.
// A layer that starts at `offset` replaces everything from `offset` on in the layers below;
// a layer holding a snapshot hides the layers below entirely. ready() moves unstable into
// persisting (a swap, no copies) and advance() drops persisting, which the driver has written
// to the Log by then. This lets the node take new entries while the driver writes the last
// batch, without ever handing out a span that later changes.
#pragma once

#include <keel/log.h>

#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace keel {

class RaftLog {
 public:
  explicit RaftLog(const Log& storage);

  Index firstIndex() const;
  // The last entry (or the snapshot's, without entries): kept up to date by every change, since
  // the core asks for it on nearly every message.
  Index lastIndex() const { return lastIndex_; }
  Term lastTerm() const { return lastTerm_; }
  // The term of entry i, or nullopt if it is compacted away or past the end.
  std::optional<Term> term(Index i) const;
  bool matchTerm(Index i, Term t) const {
    auto x = term(i);
    return x && *x == t;
  }
  // §5.4.1: is a log ending at (lastIndex, lastTerm) at least as up-to-date as ours?
  bool isUpToDate(Index lastIndex, Term lastTerm) const;
  // Entries [lo, hi) appended to `out`, at most maxBytes of payload (but at least one entry).
  // Requires firstIndex() <= lo <= hi <= lastIndex() + 1.
  void entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const;

  // The last index whose term is at most `t`, searching down from `i` (the fast back-off of
  // etcd-io/raft; see Consensus). Returns (index, term); stops at compacted entries.
  std::pair<Index, Term> findConflictByTerm(Index i, Term t) const;

  // Appends entries whose first index is in [firstIndex(), lastIndex() + 1], replacing any
  // suffix from there on.
  void append(std::span<const Entry> entries);
  // The leader's path: appends one entry just past the end and returns its index.
  Index appendNext(Term term, EntryType type, Bytes&& data) {
    Index index = lastIndex_.next();
    if (!active(unstable_)) unstable_.offset = index;
    unstable_.entries.push_back(Entry{term, index, type, std::move(data)});
    lastIndex_ = index;
    lastTerm_ = term;
    return index;
  }
  // The follower's AppendEntries rule (§5.3): skips entries already present with the same
  // term, truncates at the first conflict and appends the rest. Returns the index of the first
  // conflicting entry, or none.
  std::optional<Index> appendFollower(std::span<const Entry> entries);
  // Replaces the whole log by a received snapshot (§7).
  void restore(std::shared_ptr<const Snapshot> snapshot);

  Index committed;

  // ---- The Ready handoff ----
  bool hasUnstable() const { return active(unstable_); }
  // Moves unstable into persisting; requires nothing persisting.
  void handOff();
  std::span<const Entry> persistingEntries() const { return persisting_.entries; }
  // The entries [lo, hi) when they all lie in the persisting layer (no copy), else empty.
  std::span<const Entry> persistingSpan(Index lo, Index hi) const {
    if (lo >= hi || persisting_.entries.empty() || lo < persisting_.offset || hi.prev() > persisting_.last() ||
        (active(unstable_) && hi > unstable_.offset))
      return {};
    return std::span<const Entry>(persisting_.entries).subspan(lo - persisting_.offset, hi - lo);
  }
  const Snapshot* persistingSnapshot() const { return persisting_.snapshot.get(); }
  // The driver has written persisting; drop it.
  void persisted();
  // The last index known to be in the durable Log (for the leader's own match).
  Index stableIndex() const;

 private:
  struct Layer {
    std::shared_ptr<const Snapshot> snapshot;  // when set, offset == snapshot index + 1
    Index offset;
    std::vector<Entry> entries;
    Index last() const { return offset + entries.size() - 1; }
  };
  static bool active(const Layer& l) { return l.snapshot || !l.entries.empty(); }
  void clear(Layer& l) { l.snapshot.reset(); l.entries.clear(); l.offset = Index{}; }

  const Log& storage_;
  Layer persisting_;
  Layer unstable_;
  Index lastIndex_;
  Term lastTerm_;
};

}  // namespace keel
