#include "cluster.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace keel::testing {

// ---------------------------------------------------------------------------------------------
// InvariantChecker

void InvariantChecker::fail(const std::string& what) const { throw std::logic_error("Raft invariant violated: " + what); }

void InvariantChecker::observe(const std::vector<View>& nodes) {
  for (const View& v : nodes) {
    const MemoryLog& log = *v.log;
    if (!v.core) continue;
    const Consensus& c = *v.core;
    uint64_t id = v.id.value;
    // commit never moves back (a restart may start lower, from the durable commit)
    Index commit = c.commitIndex();
    if (auto it = commit_.find(id); it != commit_.end() && commit < it->second && commit < log.hardState().commit)
      fail("commit index of " + toString(v.id) + " moved back from " + toString(it->second) + " to " + toString(commit));
    commit_[id] = commit;
    if (c.appliedIndex() > commit) fail("applied passed commit on " + toString(v.id));

    // Committed entries as the node's durable log holds them, up to the durable commit index.
    // (The core's commit index may run ahead of its durable log between a step and the next
    // Ready: an Append that replaces a suffix and commits into it is persisted as a whole.)
    Index upTo = std::min(log.hardState().commit, log.lastIndex());
    for (Index i = log.firstIndex(); i <= upTo; i = i.next()) {
      Term t = log.term(i);
      auto [it, fresh] = committed_.emplace(i.value, t);
      if (!fresh && it->second != t)
        fail("two different entries committed at " + toString(i) + ": terms " + toString(it->second) + " and " +
             toString(t) + " (on " + toString(v.id) + ")");
      auto [by, first] = committedBy_.emplace(i.value, c.term());
      if (!first && c.term() < by->second) by->second = c.term();
    }

    if (c.role() != Role::Leader) {
      leaderLogs_.erase(id);
      continue;
    }
    // Election Safety: at most one leader per term.
    uint64_t term = c.term().value;
    auto [lt, fresh] = leaderOfTerm_.emplace(term, v.id);
    if (!fresh && lt->second != v.id)
      fail("two leaders in term " + std::to_string(term) + ": " + toString(lt->second) + " and " + toString(v.id));
    // Leader Append-Only: a leader never overwrites or deletes entries of its own log.
    std::vector<Term> terms;
    for (Index i = log.firstIndex(); i <= log.lastIndex(); i = i.next()) terms.push_back(log.term(i));
    auto& prev = leaderLogs_[id];
    // prev[k] is the term of entry k+1 as last seen; entries compacted since are not compared.
    size_t compacted = log.firstIndex().value - 1;
    if (leaderTerm_[id] == term && !prev.empty()) {
      if (terms.size() + compacted < prev.size()) fail("leader " + toString(v.id) + " lost entries of its log");
      for (size_t k = compacted; k < prev.size(); ++k)
        if (terms[k - compacted] != prev[k]) fail("leader " + toString(v.id) + " overwrote an entry");
    }
    prev.assign(compacted, Term{});
    prev.insert(prev.end(), terms.begin(), terms.end());
    leaderTerm_[id] = term;
    // Leader Completeness (§5.4): "if a log entry is committed in a given term, then that entry
    // will be present in the logs of the leaders for all higher-numbered terms" (that have not
    // compacted it). A deposed leader that does not know it yet may lack it.
    for (auto& [index, t] : committed_) {
      Index i{index};
      if (i < log.firstIndex()) continue;
      if (c.term() <= committedBy_[index]) continue;
      if (i > log.lastIndex() && i > c.lastIndex())
        fail("leader " + toString(v.id) + " of term " + std::to_string(term) + " lacks committed entry " + toString(i));
      if (i <= log.lastIndex() && log.term(i) != t)
        fail("leader " + toString(v.id) + " holds a different entry at committed index " + toString(i));
    }
  }
  // Log Matching: if two logs hold an entry with the same index and term, they are identical
  // in all entries up to it.
  for (size_t a = 0; a < nodes.size(); ++a) {
    for (size_t b = a + 1; b < nodes.size(); ++b) {
      const MemoryLog& x = *nodes[a].log;
      const MemoryLog& y = *nodes[b].log;
      Index lo = std::max(x.firstIndex(), y.firstIndex());
      Index hi = std::min(x.lastIndex(), y.lastIndex());
      bool matched = false;
      for (Index i = hi; i >= lo && i > Index{}; i = i.prev()) {
        bool same = x.term(i) == y.term(i);
        if (matched && !same)
          fail("logs of " + toString(nodes[a].id) + " and " + toString(nodes[b].id) + " match at a later index but differ at " +
               toString(i));
        matched = matched || same;
      }
    }
  }
}

void InvariantChecker::applied(NodeId id, const Entry& e) {
  Index& last = lastApplied_[id.value];
  if (e.index != last.next()) fail(toString(id) + " applied " + toString(e.index) + " after " + toString(last));
  last = e.index;
  auto [it, fresh] = appliedTerm_.emplace(e.index.value, e.term);
  if (!fresh && it->second != e.term)
    fail("State Machine Safety: " + toString(id) + " applied a different entry at " + toString(e.index));
}

void InvariantChecker::appliedSnapshot(NodeId id, Index index) { lastApplied_[id.value] = index; }

// ---------------------------------------------------------------------------------------------
// Cluster

namespace {
Membership votersUpTo(size_t n) {
  Membership m;
  for (size_t i = 1; i <= n; ++i) m.voters.push_back(NodeId{i});
  return m;
}
std::vector<NodeId> idsUpTo(size_t n) {
  std::vector<NodeId> v;
  for (size_t i = 1; i <= n; ++i) v.push_back(NodeId{i});
  return v;
}
}  // namespace

Cluster::Cluster(size_t n, std::function<void(Config&)> tweak) : Cluster(idsUpTo(n), votersUpTo(n), std::move(tweak)) {}

Cluster::Cluster(std::vector<NodeId> ids, Membership initial, std::function<void(Config&)> tweak) {
  for (NodeId id : ids) {
    Node& n = nodes_[id.value];
    n.config.id = id;
    n.config.seed = 42;
    if (tweak) tweak(n.config);
    // A joining node starts with an empty configuration it learns from the leader; MemoryLog
    // needs some valid membership to start from, so it gets the initial one but is not in it.
    n.log = std::make_unique<MemoryLog>(initial);
    n.core = std::make_unique<Consensus>(n.config, *n.log);
  }
}

Cluster::Node& Cluster::node(uint64_t id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) throw std::invalid_argument("no node " + std::to_string(id));
  return it->second;
}

std::vector<NodeId> Cluster::ids() const {
  std::vector<NodeId> v;
  for (auto& [id, n] : nodes_) v.push_back(NodeId{id});
  return v;
}

bool Cluster::allowed(const Message& m) const {
  if (cuts_.count({m.from.value, m.to.value})) return false;
  if (filter && !filter(m)) return false;
  return true;
}

void Cluster::processReady(Node& n, std::vector<Message>& out) {
  Consensus& c = *n.core;
  while (c.hasReady()) {
    const Ready& rd = c.ready();
    for (const Message& m : rd.messages) out.push_back(m);
    if (rd.snapshot) {
      n.log->installSnapshot(*rd.snapshot);
      n.appliedIndex = rd.snapshot->meta.index;
      checker.appliedSnapshot(n.config.id, n.appliedIndex);
    }
    if (rd.hardState) n.log->setHardState(*rd.hardState);
    n.log->append(rd.entries);
    n.log->sync();
    for (const Message& m : rd.messagesAfterPersist) out.push_back(m);
    for (const Entry& e : rd.committed) {
      checker.applied(n.config.id, e);
      n.applied.push_back(e);
      n.appliedIndex = e.index;
    }
    for (const ReadState& r : rd.readStates) n.reads.push_back(r);
    c.advance();
  }
}

bool Cluster::round() {
  std::vector<Message> out;
  for (auto& [id, n] : nodes_)
    if (n.core) processReady(n, out);
  bool any = !out.empty();
  for (const Message& m : out) {
    if (holdMessages) {
      held.push_back(m);
      continue;
    }
    deliver(m);
  }
  check();
  return any;
}

void Cluster::deliver(const Message& m) {
  if (!allowed(m)) return;
  auto it = nodes_.find(m.to.value);
  if (it == nodes_.end() || !it->second.core) return;
  if (recordTranscript) transcript.push_back(m.toString());
  it->second.core->step(m);
}

size_t Cluster::pump(size_t maxRounds) {
  size_t r = 0;
  while (r < maxRounds && round()) ++r;
  if (r == maxRounds) throw std::runtime_error("Cluster::pump: still busy after " + std::to_string(maxRounds) + " rounds");
  return r;
}

void Cluster::tick(uint64_t id, size_t times) {
  for (size_t i = 0; i < times; ++i)
    if (node(id).core) node(id).core->tick();
}

void Cluster::tickAll(size_t times) {
  for (size_t i = 0; i < times; ++i)
    for (auto& [id, n] : nodes_)
      if (n.core) n.core->tick();
}

void Cluster::elect(uint64_t id) {
  node(id).core->campaign();
  pump();
  if (node(id).core->role() != Role::Leader)
    throw std::runtime_error("Cluster::elect: node " + std::to_string(id) + " did not become leader (it is " +
                             toString(node(id).core->role()) + " in term " + toString(node(id).core->term()) + ")");
}

NodeId Cluster::electByTimeout(size_t maxTicks) {
  for (size_t t = 0; t < maxTicks; ++t) {
    tickAll();
    pump();
    if (NodeId l = leader()) return l;
  }
  return kNoNode;
}

NodeId Cluster::leader() {
  NodeId best;
  Term bestTerm;
  for (auto& [id, n] : nodes_) {
    if (n.core && n.core->role() == Role::Leader && n.core->term() >= bestTerm) {
      best = NodeId{id};
      bestTerm = n.core->term();
    }
  }
  return best;
}

Result Cluster::propose(uint64_t id, std::string_view data) { return node(id).core->propose(Bytes(data)); }

void Cluster::isolate(uint64_t id) {
  for (auto& [other, n] : nodes_) {
    if (other == id) continue;
    cuts_.insert({id, other});
    cuts_.insert({other, id});
  }
}

void Cluster::cut(uint64_t from, uint64_t to) { cuts_.insert({from, to}); }
void Cluster::heal() { cuts_.clear(); }

void Cluster::crash(uint64_t id) { node(id).core.reset(); }

void Cluster::restart(uint64_t id) {
  Node& n = node(id);
  n.core.reset();
  n.config.applied = Index{};
  n.applied.clear();
  n.appliedIndex = n.log->snapshotMeta().index;
  checker.appliedSnapshot(n.config.id, n.appliedIndex);
  n.core = std::make_unique<Consensus>(n.config, *n.log);
}

void Cluster::wipe(uint64_t id) {
  Node& n = node(id);
  n.core.reset();
  n.log = std::make_unique<MemoryLog>();
  n.config.applied = Index{};
  n.applied.clear();
  n.appliedIndex = Index{};
  checker.appliedSnapshot(n.config.id, Index{});
  n.core = std::make_unique<Consensus>(n.config, *n.log);
}

void Cluster::compact(uint64_t id) {
  Node& n = node(id);
  Snapshot s;
  s.meta = n.core->snapshotMeta();
  s.data = Bytes("state@" + std::to_string(s.meta.index.value));
  n.log->compact(s);
}

void Cluster::check() {
  std::vector<InvariantChecker::View> views;
  for (auto& [id, n] : nodes_) views.push_back({NodeId{id}, n.core.get(), n.log.get()});
  try {
    checker.observe(views);
  } catch (const std::logic_error& e) {
    throw std::logic_error(std::string(e.what()) + "\n" + describe());
  }
}

std::string Cluster::describe(size_t lastMessages) const {
  std::ostringstream s;
  s << "cluster state:\n";
  for (auto& [id, n] : nodes_) {
    s << "  n" << id;
    if (!n.core) {
      s << " down";
    } else {
      const Consensus& c = *n.core;
      s << " " << toString(c.role()) << " " << toString(c.term()) << " vote=" << toString(c.vote())
        << " leader=" << toString(c.leader()) << " commit=" << toString(c.commitIndex())
        << " applied=" << toString(c.appliedIndex()) << " " << c.membership().toString();
    }
    s << " log:";
    const MemoryLog& log = *n.log;
    if (log.firstIndex() > Index{1}) s << " [snapshot " << toString(log.snapshotMeta().index) << "]";
    for (Index i = log.firstIndex(); i <= log.lastIndex(); i = i.next()) s << " " << log.term(i).value;
    s << "\n";
  }
  if (!transcript.empty()) {
    size_t from = transcript.size() > lastMessages ? transcript.size() - lastMessages : 0;
    s << "last " << transcript.size() - from << " of " << transcript.size() << " messages delivered:\n";
    for (size_t i = from; i < transcript.size(); ++i) s << "  " << transcript[i] << "\n";
  } else {
    s << "(set recordTranscript for the messages delivered)\n";
  }
  return s.str();
}

std::vector<std::string> dataOf(const std::vector<Entry>& es) {
  std::vector<std::string> v;
  for (const Entry& e : es)
    if (e.type == EntryType::Normal && !e.data.empty()) v.push_back(e.data.str());
  return v;
}

}  // namespace keel::testing
