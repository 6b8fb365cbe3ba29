// keel tests: an in-process cluster of consensus modules with a controllable network, and the
// checker of Raft's safety properties that runs after every round of message delivery.
//
// The network is a FIFO queue delivered by pump(): each round takes every live node's Ready,
// persists it to the node's MemoryLog, applies its committed entries, advances it, then
// delivers the round's messages through the filters. Nothing here reads a clock.
#pragma once

#include <keel/consensus.h>
#include <keel/memory-log.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace keel::testing {

// Raft's safety properties (Figure 3 of the paper), checked across the whole history of a
// cluster: call observe() after every step of the cluster; it throws std::logic_error with a
// description at the first violation.
class InvariantChecker {
 public:
  struct View {
    NodeId id;
    const Consensus* core;  // null while the node is down
    const MemoryLog* log;
  };
  void observe(const std::vector<View>& nodes);
  // A node applied entry e (State Machine Safety: no two nodes apply different entries at an
  // index) or a snapshot up to `index`.
  void applied(NodeId id, const Entry& e);
  void appliedSnapshot(NodeId id, Index index);
  size_t committedEntries() const { return committed_.size(); }

 private:
  [[noreturn]] void fail(const std::string& what) const;
  std::map<uint64_t, NodeId> leaderOfTerm_;              // Election Safety
  std::map<uint64_t, std::vector<Term>> leaderLogs_;     // Leader Append-Only, per node
  std::map<uint64_t, uint64_t> leaderTerm_;              // the term each node last led in
  std::map<uint64_t, Index> commit_;                     // commit never moves back
  std::map<uint64_t, Term> committed_;                   // index -> term of committed entries
  // index -> a term no earlier than the one in which the entry was committed: the lowest
  // current term of a node seen holding it as committed (a node learns of a commit in its
  // own term, from the leader of that term, or it committed it itself).
  std::map<uint64_t, Term> committedBy_;
  std::map<uint64_t, Term> appliedTerm_;                 // index -> term applied anywhere
  std::map<uint64_t, Index> lastApplied_;                // applied in order, per node
};

class Cluster {
 public:
  struct Node {
    Config config;
    std::unique_ptr<MemoryLog> log;
    std::unique_ptr<Consensus> core;  // null while down
    std::vector<Entry> applied;       // every entry applied since the last (re)start
    std::vector<ReadState> reads;     // read states handed out
    Index appliedIndex;
  };

  // Nodes 1..n, all voters, with `tweak` applied to every node's Config.
  explicit Cluster(size_t n, std::function<void(Config&)> tweak = {});
  // Nodes `ids`, starting from `initial` (ids not in it start empty: they join later).
  Cluster(std::vector<NodeId> ids, Membership initial, std::function<void(Config&)> tweak = {});

  Consensus& operator[](uint64_t id) { return *node(id).core; }
  Node& node(uint64_t id);
  std::vector<NodeId> ids() const;

  // ---- Driving ----
  // Rounds until nothing is left to do (at most maxRounds); returns the rounds taken.
  size_t pump(size_t maxRounds = 10000);
  // One round: readies, then delivery of what they produced. False when nothing happened.
  bool round();
  void tick(uint64_t id, size_t times = 1);
  void tickAll(size_t times = 1);
  // node `id` campaigns and the cluster pumps; requires that it becomes the leader.
  void elect(uint64_t id);
  // Ticks every node and pumps until some node leads (at most maxTicks ticks).
  NodeId electByTimeout(size_t maxTicks = 1000);
  NodeId leader();  // the live leader of the highest term, or none
  Result propose(uint64_t id, std::string_view data);

  // ---- Faults ----
  void isolate(uint64_t id);                  // drop everything to and from id
  void cut(uint64_t from, uint64_t to);       // drop messages one way
  void cutBoth(uint64_t a, uint64_t b) { cut(a, b); cut(b, a); }
  void heal();                                // undo isolate/cut
  // Extra filter: return false to drop a message.
  std::function<bool(const Message&)> filter;
  // Hold messages instead of delivering them (for reordering and duplication tests).
  bool holdMessages = false;
  std::vector<Message> held;
  void deliver(const Message& m);             // steps m into its destination if up
  void crash(uint64_t id);                    // lose the core; the log survives (it was synced)
  void restart(uint64_t id);
  // Node id becomes a new machine with an empty log that knows no membership (it waits to
  // be added to the cluster).
  void wipe(uint64_t id);
  // Takes a snapshot of node id's applied state and compacts its log up to it.
  void compact(uint64_t id);

  // ---- Observation ----
  std::vector<std::string> transcript;        // every message delivered, in order
  bool recordTranscript = false;
  InvariantChecker checker;
  // Runs the checker; a violation's exception also describes every node and the last
  // messages of the transcript.
  void check();
  // Every node's role, term, commit, membership and log terms, and the last messages delivered.
  std::string describe(size_t lastMessages = 40) const;

 private:
  void processReady(Node& n, std::vector<Message>& out);
  bool allowed(const Message& m) const;
  std::map<uint64_t, Node> nodes_;
  std::set<std::pair<uint64_t, uint64_t>> cuts_;
};

// Entries' data as strings, for assertions.
std::vector<std::string> dataOf(const std::vector<Entry>& es);

}  // namespace keel::testing
