#include "sim-log.h"

#include <string>

namespace keel::sim {

SimLog::SimLog(NodeId id, Membership initial, Invariants& invariants)
    : id_(id), inv_(invariants), cur_(initial), durable_(initial) {
  hashes_.push_back(0);
}

void SimLog::setHardState(const HardState& hs) {
  cur_.setHardState(hs);
  pending_.push_back(Write{Write::Kind::HardState, hs, {}, {}});
}

void SimLog::track(std::span<const Entry> es) {
  Index base = cur_.firstIndex().prev();
  Index first = es.front().index;
  if (strictLeaderTerm_ && first <= cur_.lastIndex())
    throw SafetyViolation("Leader Append-Only: leader n" + std::to_string(id_.value) + " of term " +
                          std::to_string(strictLeaderTerm_) + " overwrites its log from index " +
                          std::to_string(first.value) + " (its last index is " + std::to_string(cur_.lastIndex().value) + ")");
  hashes_.resize(first - base);
  for (const Entry& e : es) hashes_.push_back(inv_.registerEntry(id_, e.index, e.term, hashes_.back()));
}

void SimLog::append(std::span<const Entry> es) {
  if (es.empty()) return;
  // Validate before tracking so that a bad append leaves everything as it was.
  Index first = es.front().index;
  if (first < cur_.firstIndex() || first > cur_.lastIndex().next())
    throw std::invalid_argument("SimLog::append: entries do not fit the log");
  track(es);
  cur_.append(es);
  pending_.push_back(Write{Write::Kind::Entries, {}, std::vector<Entry>(es.begin(), es.end()), {}});
}

void SimLog::installSnapshot(const Snapshot& s) {
  if (strictLeaderTerm_)
    throw SafetyViolation("Leader Append-Only: leader n" + std::to_string(id_.value) + " replaces its log by a snapshot");
  cur_.installSnapshot(s);
  hashes_.assign(1, inv_.prefixHashOf(s.meta.index, s.meta.term));
  pending_.push_back(Write{Write::Kind::Snapshot, {}, {}, s});
}

void SimLog::compact(const Snapshot& s) {
  for (const Write& w : pending_)
    if (w.kind != Write::Kind::HardState) throw std::logic_error("SimLog::compact with unsynced writes");
  sync();  // commit indexes written without a sync; the compaction is written after them
  Index oldBase = cur_.firstIndex().prev();
  cur_.compact(s);
  durable_.compact(s);
  hashes_.erase(hashes_.begin(), hashes_.begin() + (s.meta.index - oldBase));
}

namespace {
void applyTo(MemoryLog& log, const auto& w, size_t entries) {
  using K = std::remove_cvref_t<decltype(w.kind)>;
  switch (w.kind) {
    case K::HardState: log.setHardState(w.hs); break;
    case K::Entries: log.append(std::span<const Entry>(w.entries.data(), entries)); break;
    case K::Snapshot: {
      log.installSnapshot(w.snapshot);
      // The snapshot is of committed state: the durable commit covers it.
      HardState hs = log.hardState();
      if (hs.commit < w.snapshot.meta.index) {
        hs.commit = w.snapshot.meta.index;
        log.setHardState(hs);
      }
      break;
    }
  }
}
}  // namespace

void SimLog::sync() {
  for (const Write& w : pending_) applyTo(durable_, w, w.entries.size());
  pending_.clear();
}

void SimLog::crash(const std::function<size_t(size_t)>& keepOf) {
  size_t units = 0;
  for (const Write& w : pending_) units += w.kind == Write::Kind::Entries ? w.entries.size() : 1;
  size_t keep = units && keepOf ? keepOf(units) : 0;
  for (const Write& w : pending_) {
    if (keep == 0) break;
    size_t n = w.kind == Write::Kind::Entries ? std::min(keep, w.entries.size()) : 1;
    applyTo(durable_, w, n);
    keep -= n;
  }
  pending_.clear();
  // A commit index past the entries that survived cannot be: the hard state is written after
  // the entries of its batch, so it survives only with them.
  cur_ = durable_;
  retrack();
}

void SimLog::forgetVote() {
  HardState hs = durable_.hardState();
  hs.vote = kNoNode;
  durable_.setHardState(hs);
  cur_.setHardState(hs);
}

void SimLog::retrack() {
  SnapshotMeta s = cur_.snapshotMeta();
  hashes_.assign(1, inv_.prefixHashOf(s.index, s.term));
  std::vector<Entry> es;
  if (cur_.lastIndex() >= cur_.firstIndex()) cur_.entries(cur_.firstIndex(), cur_.lastIndex().next(), ~uint64_t{0}, es);
  for (const Entry& e : es) hashes_.push_back(inv_.registerEntry(id_, e.index, e.term, hashes_.back()));
}

}  // namespace keel::sim
