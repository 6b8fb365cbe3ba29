#include <keel/memory-log.h>

#include <stdexcept>

namespace keel {

MemoryLog::MemoryLog(Membership initial) { snapshot_.meta.membership = std::move(initial); }

Term MemoryLog::term(Index i) const {
  Index snap = snapshot_.meta.index;
  if (i == snap) return snapshot_.meta.term;
  if (i < snap || i > lastIndex()) throw std::out_of_range("MemoryLog::term: index " + toString(i) + " not in log");
  return entries_[i - snap - 1].term;
}

void MemoryLog::entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const {
  if (lo < firstIndex() || hi > lastIndex().next() || lo > hi)
    throw std::out_of_range("MemoryLog::entries: range not in log");
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; i = i.next()) {
    const Entry& e = entries_[i - firstIndex()];
    bytes += e.data.size();
    if (bytes > maxBytes && i != lo) break;
    out.push_back(e);
  }
}

void MemoryLog::append(std::span<const Entry> es) {
  if (es.empty()) return;
  Index first = es.front().index;
  if (first < firstIndex() || first > lastIndex().next())
    throw std::invalid_argument("MemoryLog::append: entries start at " + toString(first) +
                                ", the log holds " + toString(firstIndex()) + ".." + toString(lastIndex()));
  if (first <= lastIndex()) entries_.resize(first - firstIndex());  // a conflicting suffix goes
  entries_.insert(entries_.end(), es.begin(), es.end());
}

void MemoryLog::installSnapshot(const Snapshot& s) {
  snapshot_ = s;
  entries_.clear();
}

void MemoryLog::compact(const Snapshot& s) {
  Index i = s.meta.index;
  if (i < snapshot_.meta.index || i > lastIndex())
    throw std::invalid_argument("MemoryLog::compact: snapshot index outside the log");
  entries_.erase(entries_.begin(), entries_.begin() + (i - snapshot_.meta.index));
  snapshot_ = s;
}

}  // namespace keel
