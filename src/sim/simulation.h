// keel-sim internal: the simulation engine's state, shared by simulator.c++ (events, nodes,
// clients, the run) and nemesis.c++ (the faults it injects). Not a public interface.
#pragma once

#include "simulator.h"

#include "invariants.h"
#include "sim-log.h"

#include <keel/check.h>
#include <keel/consensus.h>
#include <keel/kv.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace keel::sim::detail {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kTick = 10 * kMs;  // one tick of every node's clock
constexpr int kSpares = 2;           // nodes outside the first configuration

// xoshiro-free and portable: splitmix64, the same on every platform and standard library.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  int64_t range(int64_t lo, int64_t hi) { return lo + int64_t(below(uint64_t(hi - lo + 1))); }  // [lo, hi]
  bool chance(double p) { return double(next() >> 11) * (1.0 / 9007199254740992.0) < p; }
};

// One line of a node's recent history, rendered only for a failure report.
struct Trace {
  enum Kind : uint8_t { Recv, Send, Role, Crash, Restart, Pause, Resume, Propose, Sync, Apply, Install, Compact,
                        Membership, Transfer, Read, SlowDisk };
  Trace() = default;
  explicit Trace(Kind k, std::string t = {}) : kind(k), text(std::move(t)) {}
  Kind kind = Recv;
  int64_t time = 0;
  MessageType mtype = MessageType::Append;
  uint64_t peer = 0, term = 0, index = 0, commit = 0, n = 0;
  bool reject = false;
  std::string text;  // only for rare events
};

inline std::string fmtTime(int64_t t) {
  char b[32];
  std::snprintf(b, sizeof b, "%lld.%06lld", (long long)(t / 1'000'000'000), (long long)(t % 1'000'000'000 / 1000));
  return b;
}

inline std::string render(const Trace& t) {
  std::ostringstream o;
  o << fmtTime(t.time) << "  ";
  switch (t.kind) {
    case Trace::Recv:
    case Trace::Send:
      o << (t.kind == Trace::Recv ? "recv " : "send ") << toString(t.mtype) << (t.kind == Trace::Recv ? " from n" : " to n")
        << t.peer << " term=" << t.term << " index=" << t.index << " commit=" << t.commit;
      if (t.n) o << " entries=" << t.n;
      if (t.reject) o << " reject";
      break;
    case Trace::Role: o << "becomes " << t.text << " in term " << t.term; break;
    case Trace::Propose: o << "proposes " << t.text << " at index " << t.index << " term " << t.term; break;
    case Trace::Sync: o << (t.text.empty() ? "sync" : t.text) << " done: last index " << t.index << ", commit " << t.commit; break;
    case Trace::Apply: o << "applies " << t.n << " entries through " << t.index; break;
    case Trace::Install: o << "installs snapshot at " << t.index << " term " << t.term; break;
    case Trace::Compact: o << "compacts through " << t.index; break;
    default: o << t.text; break;
  }
  return o.str();
}

// Collects the chunks of KvStateMachine::snapshot.
class StringSink final : public SnapshotSink {
 public:
  explicit StringSink(size_t chunkBytes) : max_(chunkBytes) {}
  std::string out;
  void write(std::string_view chunk) override {
    // ChunkWriter flushes once a chunk reaches the size: the last record may overshoot it.
    if (chunk.size() > max_ + 4096) throw std::logic_error("keel-sim: a snapshot chunk far over snapshotChunkBytes");
    out.append(chunk);
  }

 private:
  size_t max_;
};

// A compaction written a slice at a time (KvStateMachine::beginSnapshot) while the node goes on
// applying entries; abandoned when the node crashes or installs a snapshot.
struct Compaction {
  SnapshotMeta meta;
  std::string expected;  // snapshot() of the state when it began: what the slices must add up to
  std::unique_ptr<StringSink> sink;
  std::unique_ptr<SnapshotJob> job;  // writes into *sink
};

struct Node {
  NodeId id;
  Config config;
  std::unique_ptr<SimLog> log;
  std::unique_ptr<Consensus> core;  // null while down
  KvStateMachine sm;
  int64_t clockSkewMs = 0;           // the node's wall clock runs this far ahead of simulated time
  Index smApplied;
  bool paused = false;
  bool retired = false;              // shut down for good (after healing: not a member)
  bool syncing = false;              // a Ready is outstanding, its writes in flight to disk
  bool syncDoneWhilePaused = false;
  // A leader wrote entries without a sync (Ready::syncOptional, diss. §10.2.1): a lazy sync is
  // due, and any write that is not deferred, or acknowledgement, waits for a sync of them.
  bool unsynced = false;
  bool lazySyncDue = false;
  const Ready* ready = nullptr;
  uint64_t epoch = 0;                // bumped by every crash: stale events of the old life lapse
  uint64_t leaderTermAtLastReady = 0;
  int64_t diskFactor = 1;
  std::vector<Message> held;         // delivered while paused
  uint64_t missedTicks = 0;          // ticks that passed while paused
  Role lastRole = Role::Follower;
  Term lastTerm;
  std::vector<Trace> trace;          // ring
  size_t traceNext = 0;
  std::unique_ptr<Compaction> compacting;  // a sliced compaction under way
  bool up() const { return core != nullptr; }
};

struct Client {
  // AwaitRegister: a RegisterSession command is in the log, not yet applied.
  enum class Phase : uint8_t { Idle, Sending, AwaitRegister, AwaitApply, AwaitReadState, AwaitReadApply };
  uint64_t process = 0;
  Phase phase = Phase::Idle;
  uint64_t gen = 0;  // invalidates timers
  // The operation.
  checker::Function f = checker::Function::Read;
  std::string key, value;
  std::optional<std::string> expected;
  checker::History::Handle handle = 0;
  // The client's session in KvStateMachine (0: none yet, or it expired): registered through the
  // log before the first write. Every write (put, cas, delete) takes the next seq; it
  // acknowledges every earlier one (ack = seq: at most one write is outstanding, and one given
  // up as info is acknowledged too, so that it answers Duplicate instead of applying late).
  uint64_t session = 0;
  uint64_t seq = 0;
  int64_t invoked = 0, deadline = 0, attemptDeadline = 0;
  bool maybeApplied = false;  // some proposal of it was accepted and is not known to be lost
  // Writes: every accepted proposal of the operation (a retry re-proposes the same session and
  // seq, which the state machine applies at most once and answers from its reply cache).
  struct Watch {
    uint64_t node;
    Index index;
    Term term;
  };
  std::vector<Watch> watches;
  uint64_t watchSession = 0;         // the session of the watched copies
  std::vector<Watch> registrations;  // accepted RegisterSession proposals not yet applied
  // Where it waits.
  uint64_t target = 0;  // the node it believes leads
  uint64_t waitNode = 0, waitEpoch = 0;
  Index waitIndex;
  Term waitTerm;
  uint64_t readContext = 0;
};

struct Event {
  enum Kind : uint8_t {
    Tick, Deliver, SyncDone, ClientTimer, Nemesis, Restart, Resume, DiskNormal, Heal, CrashNow,
    SnapshotReport,  // the transport tells the sender how a snapshot's transfer ended (msg, delivered)
    CompactStep,     // the next slice of a node's sliced compaction
    LazySync,        // a leader syncs the entries it wrote without a sync
  };
  int64_t time;
  uint64_t seq;
  Kind kind;
  uint64_t node = 0;
  uint64_t epoch = 0;
  Message msg;
  bool delivered = false;  // SnapshotReport
};
struct Later {
  bool operator()(const Event& a, const Event& b) const { return a.time != b.time ? a.time > b.time : a.seq > b.seq; }
};

inline std::string snapshotOf(const KvStateMachine& sm, size_t chunkBytes) {
  StringSink sink(chunkBytes);
  sm.snapshot(sink);
  return std::move(sink.out);
}

class LivenessFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Simulation {
 public:
  explicit Simulation(const Options& o);
  Result run();

 private:
  // Events
  void schedule(int64_t at, Event::Kind k, uint64_t node = 0, uint64_t epoch = 0, Message* m = nullptr,
                bool delivered = false);
  void dispatch(Event& e);
  void observe();

  // Nodes
  Node& node(uint64_t id) { return nodes_[id - 1]; }
  void start(Node& n);
  void crash(Node& n);
  void restart(Node& n);
  void processReadies(Node& n);
  // synced: the Ready's writes wait for a sync (else they stay queued: a new commit alone).
  void finishReady(Node& n, bool synced = true, bool durable = true);
  // Syncs what a leader wrote without a sync and tells its core (Consensus::persisted).
  void syncLeaderWrites(Node& n);
  void traceSync(Node& n, std::string what = {});
  // The state machine takes a Ready's snapshot (if any), then its committed entries.
  void applyReady(Node& n, const Ready& rd);
  void applyAll(Node& n, std::span<const Entry> committed);
  void apply(Node& n, const Entry& e);
  void deliver(Message& m);
  void send(const Message& m);
  // A snapshot message arrived (or was lost): its sender hears of it a moment later.
  void reportSnapshot(const Message& m, bool delivered);
  // Stores a finished snapshot of `n` in its log and drops what it covers.
  void compact(Node& n, Snapshot s);
  void compactStep(Node& n);
  void trace(Node& n, Trace t);
  uint64_t clockMs(const Node& n) const { return uint64_t(std::max<int64_t>(0, now_ / kMs + n.clockSkewMs)); }
  void traceRole(Node& n);
  uint64_t leaderId();

  // Clients
  void startOp(Client& c);
  void attempt(Client& c);
  void complete(Client& c, checker::Outcome outcome, std::optional<std::string> readValue = std::nullopt);
  void clientTimer(Client& c);
  void arm(Client& c, int64_t at);
  void readReady(Node& n, const ReadState& rs);
  std::optional<std::string> read(const Node& n, const std::string& key);
  void applied(Client& c, const Entry& e, const std::string& reply);
  void checkReplicas();
  void serveReads(Node& n);

  // Nemesis
  void nemesis();
  void partition();
  void heal();
  void healAll();
  void retireRemoved();
  void membershipChange();

  std::string report();

  Options o_;
  Rng rng_;
  Result res_;
  int64_t now_ = 0;
  uint64_t seq_ = 0;
  std::vector<Event> queue_;
  std::vector<Node> nodes_;
  std::vector<Client> clients_;
  Invariants inv_;
  checker::History history_;
  uint64_t nextProcess_ = 1;
  uint64_t nextValue_ = 1;
  uint64_t nextContext_ = 1;
  std::vector<std::optional<std::string>> lastWritten_;  // per key, for CAS expectations
  // Network
  std::vector<std::vector<bool>> blocked_;  // [from][to], 1-based
  bool partitioned_ = false;
  double loss_ = 0, dup_ = 0, longDelay_ = 0;
  // Phases
  bool healed_ = false;
  int64_t healTime_ = 0;
  bool stopIssuing_ = false;
  double crashAfterAck_ = 0;
  double crashNewLeader_ = 0;
  double crashAfterVote_ = 0;
  KvStateMachine::Options kvOptions_;  // the same on every node
  int64_t maxSkewMs_ = 0;
  std::string configText_;
};


}  // namespace keel::sim::detail
