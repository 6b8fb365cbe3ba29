#include "invariants.h"

#include <algorithm>
#include <string>

namespace keel::sim {

namespace {
[[noreturn]] void fail(const std::string& what) { throw SafetyViolation(what); }
std::string n(NodeId id) { return "n" + std::to_string(id.value); }
std::string at(Index i) { return std::to_string(i.value); }

uint64_t mix(uint64_t h, uint64_t index, uint64_t term) {
  uint64_t x = h ^ (index * 0x9e3779b97f4a7c15ull) ^ (term * 0xc2b2ae3d27d4eb4full);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  return x;
}
}  // namespace

uint64_t Invariants::registerEntry(NodeId who, Index index, Term term, uint64_t prefix) {
  uint64_t h = mix(prefix, index.value, term.value);
  auto [it, fresh] = entries_.emplace(Key{index.value, term.value}, h);
  if (!fresh && it->second != h)
    fail("Log Matching: " + n(who) + " holds entry " + at(index) + " of term " + std::to_string(term.value) +
         " after a log prefix that differs from another log's holding the same entry");
  return h;
}

uint64_t Invariants::prefixHashOf(Index index, Term term) {
  if (index == Index{}) return 0;
  auto it = entries_.find(Key{index.value, term.value});
  if (it != entries_.end()) return it->second;
  // Never written anywhere (cannot happen: every entry passes through some SimLog): give it
  // a hash of its own.
  uint64_t h = mix(0x5eed, index.value, term.value);
  entries_.emplace(Key{index.value, term.value}, h);
  return h;
}

void Invariants::applied(NodeId id, const Entry& e) {
  PerNode& p = nodes_[id.value];
  if (e.index != p.lastApplied.next())
    fail("State Machine Safety: " + n(id) + " applied entry " + at(e.index) + " after " + at(p.lastApplied));
  p.lastApplied = e.index;
  if (appliedTerm_.size() <= e.index.value) appliedTerm_.resize(e.index.value + 1, kUnknown);
  uint64_t& t = appliedTerm_[e.index.value];
  if (t == kUnknown) {
    t = e.term.value;
  } else if (t != e.term.value) {
    fail("State Machine Safety: " + n(id) + " applied entry " + at(e.index) + " of term " +
         std::to_string(e.term.value) + " where another node applied one of term " + std::to_string(t));
  }
}

void Invariants::appliedSnapshot(NodeId id, Index index) { nodes_[id.value].lastApplied = index; }

void Invariants::restarted(NodeId id, Index durableCommit, Index snapshotIndex) {
  PerNode& p = nodes_[id.value];
  p.lastCommit = durableCommit;
  p.checked = snapshotIndex;
  p.lastApplied = snapshotIndex;
  p.leadTerm = 0;
}

void Invariants::observe(const std::vector<View>& views) {
  for (const View& v : views) {
    if (!v.core) continue;
    const Consensus& c = *v.core;
    const MemoryLog& log = *v.log;
    PerNode& p = nodes_[v.id.value];
    Index commit = c.commitIndex();
    if (commit < p.lastCommit)
      fail("commit index of " + n(v.id) + " moved back from " + at(p.lastCommit) + " to " + at(commit));
    p.lastCommit = commit;
    if (c.appliedIndex() > commit)
      fail(n(v.id) + " applied through " + at(c.appliedIndex()) + " past its commit index " + at(commit));

    // Committed entries are the same everywhere; the first node seen committing an index
    // gives it its commit term.
    Index upTo = v.settled ? std::min(commit, log.lastIndex()) : Index{};
    for (Index i = std::max(p.checked.next(), log.firstIndex()); i <= upTo; i = i.next()) {
      uint64_t t = log.term(i).value;
      if (committed_.size() <= i.value) {
        committed_.resize(i.value + 1, kUnknown);
        commitTerm_.resize(i.value + 1, kUnknown);
      }
      if (committed_[i.value] == kUnknown) {
        committed_[i.value] = t;
        commitTerm_[i.value] = c.term().value;
      } else if (committed_[i.value] != t) {
        fail("two different entries committed at " + at(i) + ": terms " + std::to_string(committed_[i.value]) +
             " and " + std::to_string(t) + " (on " + n(v.id) + ")");
      }
    }
    if (upTo > p.checked) p.checked = upTo;

    if (c.role() != Role::Leader) {
      p.leadTerm = 0;
      continue;
    }
    // Election Safety.
    uint64_t term = c.term().value;
    auto [lt, fresh] = leaderOfTerm_.emplace(term, v.id);
    if (!fresh && lt->second != v.id)
      fail("Election Safety: two leaders in term " + std::to_string(term) + ": " + n(lt->second) + " and " + n(v.id));
    // Leader Completeness, for the entries committed by leaders of earlier terms.
    if (p.leadTerm != term) {
      p.leadTerm = term;
      p.verified = Index{};
    }
    if (!v.settled) continue;
    for (Index i = p.verified.next(); i.value < committed_.size(); i = i.next()) {
      if (committed_[i.value] == kUnknown || commitTerm_[i.value] >= term) break;
      if (i >= log.firstIndex()) {
        if (i > log.lastIndex()) {
          if (c.lastIndex() < i)
            fail("Leader Completeness: leader " + n(v.id) + " of term " + std::to_string(term) +
                 " lacks committed entry " + at(i));
          break;  // not yet written to its storage; checked at a later event
        }
        if (log.term(i).value != committed_[i.value])
          fail("Leader Completeness: leader " + n(v.id) + " of term " + std::to_string(term) +
               " holds a different entry at committed index " + at(i));
      }
      p.verified = i;
    }
  }
}

}  // namespace keel::sim
