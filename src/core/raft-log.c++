#include "raft-log.h"

#include <algorithm>
#include <stdexcept>

namespace keel {

RaftLog::RaftLog(const Log& storage)
    : storage_(storage), lastIndex_(storage.lastIndex()), lastTerm_(storage.term(lastIndex_)) {}

Index RaftLog::firstIndex() const {
  if (unstable_.snapshot) return unstable_.offset;
  if (persisting_.snapshot) return persisting_.offset;
  return storage_.firstIndex();
}

std::optional<Term> RaftLog::term(Index i) const {
  if (i >= lastIndex_) return i == lastIndex_ ? std::optional<Term>(lastTerm_) : std::nullopt;
  for (const Layer* l : {&unstable_, &persisting_}) {
    if (!active(*l)) continue;
    if (i >= l->offset) {
      if (i - l->offset < l->entries.size()) return l->entries[i - l->offset].term;
      return std::nullopt;  // past the end: this layer replaced everything from offset on
    }
    if (l->snapshot) {
      if (i == l->snapshot->meta.index) return l->snapshot->meta.term;
      return std::nullopt;
    }
  }
  if (i.next() < storage_.firstIndex() || i > storage_.lastIndex()) return std::nullopt;
  return storage_.term(i);
}

bool RaftLog::isUpToDate(Index idx, Term t) const {
  Term lt = lastTerm();
  return t > lt || (t == lt && idx >= lastIndex());
}

void RaftLog::entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const {
  if (lo >= hi) return;
  constexpr Index kNever{~uint64_t{0}};
  Index uOff = active(unstable_) ? unstable_.offset : kNever;
  Index pOff = active(persisting_) ? persisting_.offset : kNever;
  size_t start = out.size();
  uint64_t bytes = 0;
  auto full = [&] { return out.size() > start && bytes >= maxBytes; };
  auto take = [&](const Entry& e) {
    if (out.size() > start && bytes + e.data.size() > maxBytes) { bytes = maxBytes; return false; }
    bytes += e.data.size();
    out.push_back(e);
    return true;
  };
  Index i = lo;
  // From storage: below both layers.
  Index sEnd = std::min({hi, pOff, uOff});
  if (i < sEnd) {
    storage_.entries(i, sEnd, maxBytes, out);
    for (size_t k = start; k < out.size(); ++k) bytes += out[k].data.size();
    i = out.back().index.next();
    if (i < sEnd || bytes >= maxBytes) return;
  }
  // From persisting: below unstable.
  Index pEnd = std::min(hi, uOff);
  for (; i < pEnd && !full(); i = i.next())
    if (!take(persisting_.entries[i - persisting_.offset])) return;
  for (; i < hi && !full(); i = i.next())
    if (!take(unstable_.entries[i - unstable_.offset])) return;
}

std::pair<Index, Term> RaftLog::findConflictByTerm(Index i, Term t) const {
  if (i > lastIndex()) i = lastIndex();
  for (;;) {
    auto lt = term(i);
    if (!lt) return {i, Term{}};
    if (*lt <= t || i == Index{}) return {i, *lt};
    i = i.prev();
  }
}

void RaftLog::append(std::span<const Entry> es) {
  if (es.empty()) return;
  Index first = es.front().index;
  if (first < firstIndex() || first > lastIndex().next())
    throw std::logic_error("RaftLog::append: entries at " + toString(first) + " do not fit a log of " +
                           toString(firstIndex()) + ".." + toString(lastIndex()));
  if (first <= committed) throw std::logic_error("RaftLog::append: would overwrite committed entry " + toString(first));
  if (active(unstable_) && first >= unstable_.offset) {
    unstable_.entries.resize(first - unstable_.offset);
  } else {
    // Starts below the unstable layer (or there is none): it replaces the whole layer.
    unstable_.snapshot.reset();
    unstable_.entries.clear();
    unstable_.offset = first;
  }
  unstable_.entries.insert(unstable_.entries.end(), es.begin(), es.end());
  lastIndex_ = es.back().index;
  lastTerm_ = es.back().term;
}

std::optional<Index> RaftLog::appendFollower(std::span<const Entry> es) {
  // §5.3: "If an existing entry conflicts with a new one (same index but different terms),
  // delete the existing entry and all that follow it; append any new entries not already in
  // the log."
  for (size_t k = 0; k < es.size(); ++k) {
    if (!matchTerm(es[k].index, es[k].term)) {
      bool conflict = es[k].index <= lastIndex();
      append(es.subspan(k));
      if (conflict) return es[k].index;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

void RaftLog::restore(std::shared_ptr<const Snapshot> s) {
  committed = s->meta.index;
  lastIndex_ = s->meta.index;
  lastTerm_ = s->meta.term;
  unstable_.entries.clear();
  unstable_.offset = s->meta.index.next();
  unstable_.snapshot = std::move(s);
}

void RaftLog::handOff() {
  if (active(persisting_)) throw std::logic_error("RaftLog::handOff: a Ready is still outstanding");
  std::swap(persisting_, unstable_);
  clear(unstable_);
}

void RaftLog::persisted() { clear(persisting_); }

Index RaftLog::stableIndex() const {
  Index last = storage_.lastIndex();
  for (const Layer* l : {&persisting_, &unstable_}) {
    if (!active(*l)) continue;
    if (l->offset.prev() < last) last = l->offset.prev();
  }
  return last;
}

}  // namespace keel
