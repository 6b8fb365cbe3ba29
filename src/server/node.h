// keel internal: Node, one member of a cluster served on one kj::EventLoop thread.
//
// A Node owns the consensus module, the log and the peer connections, and borrows the state
// machine (which must outlive it). Everything runs on the thread that created it, except the
// log's disk syncs (SegmentedLog's I/O thread), whose completions come back to the loop
// through a cross-thread fulfiller.
//
// The Ready loop (include/keel/consensus.h): `process()` takes a Ready, sends its messages at
// once (the leader replicates while its own sync is in flight, dissertation §10.2.1), writes
// the log, starts an asynchronous sync and returns. When the sync completes `finishReady()`
// sends messagesAfterPersist, applies, answers reads and advances. While a sync is in flight
// proposals, messages and ticks accumulate in the core: the next Ready carries them all, so one
// append and one fsync serve many proposals (group commit). A leader whose followers alone form
// a quorum does not wait for its own sync at all (Ready::syncOptional): it syncs lazily.
#pragma once

#include <keel/consensus.h>
#include <keel/log.h>
#include <keel/state-machine.h>

#include "buffered-stream.h"
#include "histogram.h"
#include "tls.h"
#include "options.h"
#include "wire.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/compat/http.h>
#include <kj/mutex.h>
#include <kj/timer.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace keel {
class SegmentedLog;
class FileSystem;
}

namespace keel::server {

// Rewrites a command before the leader proposes it (KV: stamps the logical clock).
using CommandStamper = std::function<void(uint8_t* data, size_t size, uint64_t clockMs)>;

class Node final {
 public:
  Node(const Options& options, kj::AsyncIoContext& io, StateMachine& sm,
       CommandStamper stamper = nullptr);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Opens the listeners and starts the timers. The promise resolves when shutdown() is called
  // and the node has stopped (pending syncs finished, connections closed).
  kj::Promise<void> run();
  void shutdown();
  // Reads the --tls-* files again (keel-server does on SIGHUP), with the checks of the start: new
  // connections, accepted or to peers, use them; those made before keep what they handshook
  // with. Files that fail a check change nothing; the log and /metrics say so.
  void reloadTls();
  // Handshakes as the accepting side of a connection to --listen, or to --redis-listen with
  // --redis-tls (needs --tls-*), with the files in use, within the peer timeout. A handshake
  // that fails or times out yields nullptr; it is counted in /metrics and logged (at most once
  // every 5 s).
  kj::Promise<kj::Maybe<kj::Own<kj::AsyncIoStream>>> acceptTls(kj::Own<kj::AsyncIoStream> stream);

  // ---- Used by the RPC service objects (service.c++) ----
  struct ProposeOutcome {
    wire::Status status = wire::Status::OK;
    std::string result;
    NodeId leader;
  };
  kj::Promise<ProposeOutcome> propose(kj::Array<kj::byte> command, uint32_t timeoutMs);
  kj::Promise<ProposeOutcome> query(kj::Array<kj::byte> query, bool linearizable, uint32_t timeoutMs);
  // Linearizable reads that arrived together (one Keel.batch) share one ReadIndex (§6.4: a
  // read index taken after a read arrived serves it) and one waiter; outcomes in their order.
  kj::Promise<std::vector<ProposeOutcome>> queryMany(std::vector<kj::Array<kj::byte>> queries, uint32_t timeoutMs);
  kj::Promise<ProposeOutcome> changeMembership(wire::ChangeKind kind, NodeId node,
                                               std::string address, uint32_t timeoutMs);
  kj::Promise<ProposeOutcome> transferLeadership(NodeId to, uint32_t timeoutMs);
  // Snapshots the state machine now (if it applied anything since the last one) and resolves
  // with the snapshot's index once the snapshot is on stable storage.
  kj::Promise<uint64_t> takeSnapshot();
  void fillStatus(wire::NodeStatus::Builder out);
  std::string statusJson();
  std::string metricsText();

  // Incoming peer traffic: checks the origin; returns a refusal sentence or "".
  std::string checkOrigin(wire::Origin::Reader origin, const char* what, bool quiet = false);
  // `asks`, when given, is set when a message expects an answer (expectsAnswer).
  std::string deliver(wire::Origin::Reader origin, capnp::List<wire::Message>::Reader messages,
                      bool* asks = nullptr);
  // The return of a deliver call from `from` that asked for replies (repliesInReturn) and
  // brought a request: resolves with this node's next answers to `from`, or with none
  // (peers.c++).
  kj::Promise<std::vector<Message>> holdReturn(NodeId from);
  // A snapshot fully received from a peer.
  // `restore`: the state machine's state parsed from it as it arrived (finished and checked),
  // or nullptr.
  void deliverSnapshot(Message m, Bytes data, std::unique_ptr<SnapshotRestore> restore);
  std::string addressOf(NodeId id) const;
  NodeId leader() const { return core_->leader(); }
  uint64_t maxMessageBytes() const { return options_.maxMessageBytes; }
  const Options& options() const { return options_; }
  capnp::ReaderOptions readerOptions() const;
  void log(const std::string& line) const;

 private:
  struct Peer;
  // A request waiting for its entry to apply or its read to be safe. Deadlines are checked on
  // every tick (expireRequests), not by a timer per request: a request times out within one
  // tick of its deadline.
  struct Waiter {
    Index index;
    Term term;
    kj::TimePoint deadline = kj::origin<kj::TimePoint>();
    kj::Own<kj::PromiseFulfiller<ProposeOutcome>> fulfiller;
    kj::TimePoint proposed = kj::origin<kj::TimePoint>();
    void fail(ProposeOutcome out) { fulfiller->fulfill(kj::mv(out)); }
  };
  struct ReadWaiter {
    std::vector<kj::Array<kj::byte>> queries;  // answered together, in order
    kj::TimePoint deadline = kj::origin<kj::TimePoint>();
    Index index;  // set once the reads are safe
    bool ready = false;
    kj::Own<kj::PromiseFulfiller<std::vector<ProposeOutcome>>> fulfiller;
    void fail(ProposeOutcome out) { fulfiller->fulfill(std::vector<ProposeOutcome>(queries.size(), out)); }
  };

  // ---- The Ready loop (node.c++) ----
  void kick();
  void process();
  // `durable`: the Ready's writes were synced (else it was syncOptional and left unsynced).
  void finishReady(bool durable = true);
  // Syncs what this leader wrote without a sync, and tells the core once it is durable.
  void lazySync();
  void countSync(std::chrono::steady_clock::time_point start);
  void applyCommitted(std::span<const Entry> committed);
  void serveReads();
  // The state machine's answers to queries, read now.
  ProposeOutcome answer(kj::ArrayPtr<const kj::byte> query);
  std::vector<ProposeOutcome> answer(const std::vector<kj::Array<kj::byte>>& queries);
  void maybeCompact(bool force);
  // A snapshot written a slice at a time (StateMachine::beginSnapshot): one slice per pass of
  // the event loop, so that requests are served in between.
  struct SnapshotInProgress;
  void continueSnapshot();
  void finishSnapshot(Snapshot snap, std::chrono::steady_clock::time_point started, uint64_t slices);
  void releaseFreeMemory();
  kj::Promise<void> tickLoop();
  // Lease reads: a leader's ticks must keep up with its clock (include/keel/config.h), so one
  // whose loop stalled ticks for the time it missed, here and before every read.
  void catchUpTicks();
  // Logs that a tick due at `due` (real monotonic time) ran late (rate-limited).
  void warnIfLate(kj::TimePoint due);
  // This node's monotonic clock: the real one, or with --unsafe-test-clock-rate R one that runs
  // R times as fast (the nemesis's clock skew); realDuration() turns its durations into real
  // time for the timer.
  kj::TimePoint clockNow() const;
  kj::Duration realDuration(kj::Duration d) const;
  kj::Promise<void> waitDurable(uint64_t seq);
  kj::TimePoint deadline(uint32_t timeoutMs) const;
  void expireRequests();
  kj::Promise<ProposeOutcome> forward(kj::Array<kj::byte> command, uint32_t timeoutMs);

  // ---- Peers (peers.c++) ----
  Peer& peer(NodeId id);
  void send(const Message& m);
  void flush(Peer& p);
  // Messages from a peer, in a call or in the return of ours: steps them (error: a refusal).
  std::string stepFrom(NodeId from, capnp::List<wire::Message>::Reader messages, bool* asks = nullptr);
  // Returns of peers' calls held for replies: each is let go (empty) once this node has no
  // write in progress whose completion could produce a reply, or after a tick.
  void releaseHeldSoon();
  void releaseHeld(bool all);
  void connect(Peer& p);
  // A peer waiting out its reconnect backoff is tried at once: it was just (re)added with an
  // address, or it called us, so it is up.
  void connectNow(NodeId id);
  void disconnected(Peer& p, const kj::Exception& e);
  // Drops connections whose calls went unanswered too long (peerTimeoutMs), and introduces
  // this node on idle ones: see peers.c++.
  void checkPeers();
  void introduce(Peer& p);
  // Who is calling: every call to a peer carries this node's origin (docs/rpc.md, "Origin").
  void fillOrigin(wire::Origin::Builder origin, const Peer& p) const;
  uint64_t peerTimeoutMs() const;
  void sendSnapshot(Peer& p, const Message& m);
  kj::Promise<void> acceptLoop(kj::ConnectionReceiver& listener);
  // Serves an accepted connection (after its TLS handshake, with --tls-*).
  void adopt(kj::Own<kj::AsyncIoStream> stream);
  kj::Promise<void> serveHttp();

  Options options_;
  kj::AsyncIoContext& io_;
  kj::Timer& timer_;
  StateMachine& sm_;
  CommandStamper stamper_;
  std::unique_ptr<FileSystem> slowDisk_;  // --unsafe-test-sync-delay-ms (outlives the log)
  std::unique_ptr<Log> logOwner_;
  Log* log_ = nullptr;
  SegmentedLog* segmented_ = nullptr;  // log_ when durable
  // What the core reads when the log is durable: log_, except that snapshot() leaves out the
  // bytes (the core only puts them in a message; sendSnapshot streams them from the log).
  std::unique_ptr<Log> coreView_;
  // The state parsed from the last snapshot received, applied instead of a restore() when the
  // core installs that snapshot (same index and term: the same state, §5.4.3).
  struct ReceivedRestore {
    Index index;
    Term term;
    std::unique_ptr<SnapshotRestore> restore;
  } received_;
  std::unique_ptr<Consensus> core_;
  std::mt19937_64 rng_;
  kj::TimePoint lastTick_ = kj::origin<kj::TimePoint>();  // the moment the latest tick stands for (monotonic clock)

  kj::TimePoint clockStart_ = kj::systemPreciseMonotonicClock().now();
  Ready current_;
  bool scheduled_ = false;
  bool syncing_ = false;
  // A follower syncs a batch of at most this many bytes on the loop (SegmentedLog::syncHere);
  // a larger one (large values, catching up) goes to the I/O thread, so that the next one is
  // received while it is written.
  static constexpr uint64_t kSyncHereBytes = 64 << 10;
  bool lastSyncSlow_ = false;  // the last sync took longer than a tick: the next is not synced here
  // A leader's writes that its followers alone commit (Ready::syncOptional, diss. §10.2.1) are
  // synced lazily, --leader-sync-delay-ms after the first of them, off the path of any commit. Counted
  // here, with how many of them the latest sync started covers and the latest completed sync
  // covered. While some are not synced, a Ready with messagesAfterPersist syncs first: an
  // ex-leader acknowledges nothing of its log, and votes for no one, before they are durable.
  uint64_t deferred_ = 0, deferredSyncing_ = 0, deferredSynced_ = 0;
  bool lazySyncArmed_ = false;
  Role loggedRole_ = Role::Follower;  // the role and term last logged (process())
  Term loggedTerm_{};
  kj::TimePoint lastLateWarning_ = kj::origin<kj::TimePoint>();  // warnIfLate()
  bool stopping_ = false;
  kj::Own<kj::PromiseFulfiller<void>> stopped_;
  kj::Own<kj::TaskSet> tasks_;

  // Durable completions from the log's I/O thread.
  struct DurableState {
    // The highest seq the log's callback reported. SegmentedLog calls the callback before it
    // publishes durableSeq(), so a waiter registered between the two would miss both.
    uint64_t reported = 0;
    // The Ready's sync and a lazy one may both be awaited: (seq, fulfiller).
    std::vector<std::pair<uint64_t, kj::Own<kj::CrossThreadPromiseFulfiller<void>>>> waiting;
  };
  kj::MutexGuarded<DurableState> durable_;

  std::map<uint64_t, Waiter> waiters_;          // by log index
  std::map<uint64_t, ReadWaiter> reads_;        // by read context
  uint64_t nextRead_ = 1;
  std::map<NodeId, std::unique_ptr<Peer>> peers_;
  std::map<NodeId, std::string> addresses_;
  std::map<NodeId, std::chrono::steady_clock::time_point> lastRefusalLog_;
  std::unique_ptr<net::Tls> tls_;  // --tls-*: every connection of --listen, and to peers
  // What reloadTls() replaced: handshakes under way, and connects to peers, may still use it.
  std::vector<std::unique_ptr<net::Tls>> retiredTls_;
  uint64_t tlsReloads_ = 0, tlsReloadsFailed_ = 0;
  std::chrono::steady_clock::time_point lastTlsRefusalLog_;
  uint64_t tlsRefused_ = 0;  // handshakes refused or failed, for /metrics
  kj::Own<kj::ConnectionReceiver> listener_;
  kj::Own<kj::ConnectionReceiver> httpListener_;
  kj::Own<kj::HttpHeaderTable> httpHeaders_;
  kj::Own<kj::HttpService> httpService_;
  kj::Own<kj::HttpServer> httpServer_;
  // serveHttp(), held apart from tasks_ so that shutdown() can cancel it before the server goes
  // (destroying a listening HttpServer under its promise fails that promise).
  kj::Maybe<kj::Promise<void>> httpTask_;
  capnp::Capability::Client bootstrap_;
  struct Accepted;
  std::vector<kj::Own<Accepted>> accepted_;

  // Metrics.
  uint64_t proposals_ = 0;
  uint64_t applied_ = 0;
  // When to snapshot (maybeCompact): the bytes of the entries applied since the last snapshot,
  // and that snapshot's size.
  uint64_t appliedBytes_ = 0;
  uint64_t snapshotBytes_ = 0;
  std::unique_ptr<SnapshotInProgress> snapshotting_;  // abandoned when a snapshot is installed
  uint64_t snapshotJobs_ = 0;                          // tells a stale continuation from the job's
  uint64_t readsServed_ = 0;
  uint64_t ticks_ = 0;
  uint64_t refusedPeers_ = 0;
  uint64_t messagesInCalls_ = 0;    // messages sent to peers in our deliver calls
  uint64_t messagesInReturns_ = 0;  // and in the returns of theirs
  bool releaseScheduled_ = false;
  // --unsafe-test-ack-before-persist (tests only): ticks since start, the hard state not yet
  // handed to the log, and the lazy sync that writes both.
  uint64_t unsafeTestTicks_ = 0;
  std::optional<HardState> unsafeTestHardState_;
  void unsafeTestLazySync();
  LatencyHistogram fsyncs_;   // of the log's syncs
  LatencyHistogram commits_;  // of this leader's proposals, from propose() to the answer
  std::chrono::steady_clock::time_point syncStart_;

  friend class Service;
  friend class SinkImpl;
};

struct Node::Peer {
  NodeId id;
  enum class State { Idle, Connecting, Connected, Backoff } state = State::Idle;
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  kj::Maybe<wire::Node::Client> cap;
  std::deque<Message> queue;
  uint32_t inflight = 0;
  kj::TimePoint lastAnswer = kj::origin<kj::TimePoint>();  // last reply, or the first call after none in flight
  kj::TimePoint lastCall = kj::origin<kj::TimePoint>();    // last deliver call sent
  uint32_t backoffMs = 0;
  uint64_t generation = 0;
  bool flushScheduled = false;
  bool snapshotInFlight = false;
  // Returns of the peer's latest deliver calls that asked for replies (repliesInReturn), oldest
  // first, held until this node has answers for the peer or nothing more to say (peers.c++).
  struct Held {
    kj::Own<kj::PromiseFulfiller<std::vector<Message>>> fulfiller;
    kj::TimePoint since;
  };
  std::deque<Held> held;

  void release(kj::TaskSet& tasks) {
    // The RPC system may be on the stack (we can be inside one of its callbacks): destroy it
    // later, in order (rpc, network, stream).
    cap = nullptr;
    if (rpc || network || stream) {
      tasks.add(kj::evalLater([r = kj::mv(rpc), n = kj::mv(network), s = kj::mv(stream)]() mutable {
        r = nullptr;
        n = nullptr;
        s = nullptr;
      }));
    }
  }
};

struct Node::Accepted {
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  Accepted(kj::Own<kj::AsyncIoStream> s, capnp::ReaderOptions ro, capnp::Capability::Client bootstrap,
           size_t flowLimit)
      : stream(net::buffered(kj::mv(s))),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, ro),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {
    rpc.setFlowLimit(flowLimit);
  }
};

// The bootstrap capability served to every connection.
capnp::Capability::Client makeService(Node& node);

}  // namespace keel::server
