// keel-sim: the simulation engine. See simulator.h for what a run does; simulation.h holds the
// engine's state and nemesis.c++ the faults it injects.
#include "simulation.h"

#include <fstream>

namespace keel::sim {
namespace detail {

// ---------------------------------------------------------------------------------------------

Simulation::Simulation(const Options& o) : o_(o), rng_{o.seed * 0x2545f4914f6cdd1dull + 0x1234567} {
  int n = o_.nodes ? o_.nodes : int(3 + 2 * rng_.below(3));
  if (n != 3 && n != 5 && n != 7) throw std::invalid_argument("keel-sim: a cluster has 3, 5 or 7 nodes");
  static const uint32_t kMixes[] = {
      kNetwork | kPartitions | kTransfers | kSnapshots,
      kCrashes | kTornWrites | kSlowDisk | kSnapshots | kNetwork,
      kMembership | kTransfers | kSnapshots | kCrashes | kPartitions,
      kPauses | kSlowDisk | kPartitions | kNetwork | kCrashes,
      kAllFaults,
  };
  uint32_t mix = o_.faults ? o_.faults : kMixes[rng_.below(5)];
  o_.faults = mix;
  res_.seed = o_.seed;
  res_.nodes = n;
  res_.faults = mix;

  // The configuration of the cores varies with the seed too.
  bool preVote = rng_.chance(0.75);
  bool checkQuorum = rng_.chance(0.75);
  static const uint64_t kMessageBytes[] = {1, 64, 1 << 20};
  uint64_t maxMessageBytes = kMessageBytes[rng_.below(3)];
  static const uint32_t kInflight[] = {1, 4, 256};
  uint32_t maxInflight = kInflight[rng_.below(3)];
  // Crashes at the moments that matter most: right after a node acknowledged entries or
  // granted a vote (the probability per acknowledgement, when crashes are on).
  static const double kCrashAfterAck[] = {0, 0.005, 0.02};
  crashAfterAck_ = (mix & kCrashes) ? kCrashAfterAck[rng_.below(3)] : 0;
  crashAfterVote_ = crashAfterAck_ > 0 ? 0.3 : 0;  // votes are rare: crash after many of them
  // ... and right after a node became the leader (before or while it replicates its first
  // entries: the schedules of Figure 8 of the Raft paper).
  static const double kCrashNewLeader[] = {0, 0.1, 0.3};
  crashNewLeader_ = (mix & kCrashes) ? kCrashNewLeader[rng_.below(3)] : 0;
  // The key-value state machine: sessions that expire within a run (by the logical clock the
  // leaders stamp into commands, from their own wall clocks, which disagree by up to
  // maxSkewMs_), a cap on sessions, and snapshots written in small or large chunks.
  static const uint64_t kSessionTimeoutMs[] = {500, 2000, 10 * 60 * 1000};
  kvOptions_.sessionTimeoutMs = kSessionTimeoutMs[rng_.below(3)];
  if (o_.sessionTimeoutMs) kvOptions_.sessionTimeoutMs = o_.sessionTimeoutMs;
  kvOptions_.maxSessions = rng_.chance(0.5) ? uint64_t(o_.clients) + 2 : 100000;
  static const size_t kChunkBytes[] = {16, 512, 64 * 1024};
  kvOptions_.snapshotChunkBytes = kChunkBytes[rng_.below(3)];
  static const int64_t kMaxSkewMs[] = {0, 100, 1500};
  maxSkewMs_ = kMaxSkewMs[rng_.below(3)];

  Membership initial;
  for (int i = 1; i <= n; ++i) initial.voters.push_back(NodeId{uint64_t(i)});
  int total = n + kSpares;
  nodes_.resize(total);
  for (int i = 0; i < total; ++i) {
    Node& nd = nodes_[i];
    nd.id = NodeId{uint64_t(i + 1)};
    nd.config.id = nd.id;
    nd.config.electionTicks = 10;
    nd.config.heartbeatTicks = 2;
    nd.config.preVote = preVote;
    nd.config.checkQuorum = checkQuorum;
    nd.config.maxMessageBytes = maxMessageBytes;
    nd.config.maxInflightMessages = maxInflight;
    nd.config.faults = o_.coreFaults;
    if (o_.configure) o_.configure(nd.config);
    if (i == 0)
      configText_ = std::string("preVote=") + (nd.config.preVote ? "on" : "off") + " checkQuorum=" +
                    (nd.config.checkQuorum ? "on" : "off") + " maxMessageBytes=" + std::to_string(nd.config.maxMessageBytes) +
                    " maxInflight=" + std::to_string(nd.config.maxInflightMessages) + " crashAfterAck=" +
                    std::to_string(crashAfterAck_) + " crashNewLeader=" + std::to_string(crashNewLeader_) +
                    " sessionTimeoutMs=" + std::to_string(kvOptions_.sessionTimeoutMs) + " maxSessions=" +
                    std::to_string(kvOptions_.maxSessions) + " snapshotChunkBytes=" +
                    std::to_string(kvOptions_.snapshotChunkBytes) + " maxClockSkewMs=" + std::to_string(maxSkewMs_) +
                    (nd.config.readMode == ReadMode::Lease ? " readMode=lease" : "");
    nd.sm = KvStateMachine(kvOptions_);
    nd.clockSkewMs = rng_.range(0, maxSkewMs_);
    nd.log = std::make_unique<SimLog>(nd.id, initial, inv_);
    nd.trace.resize(size_t(std::max(1, o_.traceDepth)));
    start(nd);
    // Clocks of different phases.
    schedule(rng_.range(1, kTick), Event::Tick, nd.id.value);
  }
  blocked_.assign(total + 1, std::vector<bool>(total + 1, false));
  lastWritten_.resize(o_.keys);
  clients_.resize(o_.clients);
  for (Client& c : clients_) {
    c.process = nextProcess_++;
    c.target = 1 + rng_.below(n);
    arm(c, rng_.range(0, 20 * kMs));
  }
  schedule(rng_.range(100 * kMs, 300 * kMs), Event::Nemesis);
}

void Simulation::schedule(int64_t at, Event::Kind k, uint64_t node, uint64_t epoch, Message* m, bool delivered) {
  Event e;
  e.delivered = delivered;
  e.time = at;
  e.seq = seq_++;
  e.kind = k;
  e.node = node;
  e.epoch = epoch;
  if (m) e.msg = std::move(*m);
  queue_.push_back(std::move(e));
  std::push_heap(queue_.begin(), queue_.end(), Later{});
}

void Simulation::trace(Node& n, Trace t) {
  t.time = now_;
  n.trace[n.traceNext % n.trace.size()] = std::move(t);
  ++n.traceNext;
}

void Simulation::traceRole(Node& n) {
  if (!n.up()) return;
  if (n.core->role() != n.lastRole || n.core->term() != n.lastTerm) {
    n.lastRole = n.core->role();
    n.lastTerm = n.core->term();
    Trace t(Trace::Role);
    t.term = n.lastTerm.value;
    t.text = toString(n.lastRole);
    trace(n, std::move(t));
    if (n.lastRole == Role::Leader && crashNewLeader_ > 0 && !healed_ && rng_.chance(crashNewLeader_))
      schedule(now_ + rng_.range(0, 10 * kMs), Event::CrashNow, n.id.value, n.epoch);
  }
}

uint64_t Simulation::leaderId() {
  uint64_t best = 0;
  Term bestTerm;
  for (Node& n : nodes_)
    if (n.up() && !n.paused && n.core->role() == Role::Leader && n.core->term() >= bestTerm) {
      best = n.id.value;
      bestTerm = n.core->term();
    }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Nodes

void Simulation::start(Node& n) {
  n.config.seed = rng_.next();
  n.core = std::make_unique<Consensus>(n.config, *n.log);
  n.lastRole = n.core->role();
  n.lastTerm = n.core->term();
}

void Simulation::crash(Node& n) {
  if (!n.up()) return;
  res_.crashes++;
  n.core.reset();
  n.compacting.reset();
  bool tear = (o_.faults & kTornWrites) && rng_.chance(0.5);
  n.log->crash([&](size_t units) -> size_t { return tear ? size_t(rng_.below(units + 1)) : 0; });
  n.epoch++;
  n.syncing = false;
  n.syncDoneWhilePaused = false;
  n.unsynced = false;
  n.lazySyncDue = false;
  n.ready = nullptr;
  n.paused = false;
  n.held.clear();
  n.missedTicks = 0;
  n.leaderTermAtLastReady = 0;
  Trace t(Trace::Crash);
  t.text = tear ? "crashes (tearing unsynced writes)" : "crashes (losing unsynced writes)";
  trace(n, std::move(t));
}

void Simulation::restart(Node& n) {
  if (n.up() || n.retired) return;
  if (o_.defects & kForgetVote) n.log->forgetVote();
  Snapshot s = n.log->snapshot();
  n.sm = KvStateMachine(kvOptions_);
  if (!s.data.empty() && !n.sm.restore(s.data.view())) throw std::logic_error("keel-sim: a snapshot did not restore");
  n.smApplied = s.meta.index;
  n.config.applied = s.meta.index;
  inv_.restarted(n.id, n.log->hardState().commit, s.meta.index);
  start(n);
  Trace t(Trace::Restart);
  t.text = "restarts: term " + std::to_string(n.core->term().value) + ", vote n" + std::to_string(n.core->vote().value) +
           ", commit " + std::to_string(n.core->commitIndex().value) + ", log " +
           std::to_string(n.log->firstIndex().value) + ".." + std::to_string(n.log->lastIndex().value);
  trace(n, std::move(t));
  processReadies(n);
}

void Simulation::processReadies(Node& n) {
  if (n.up() && !n.paused && n.syncing) {
    // As the server does while its write is in flight: Appends of new proposals leave, and
    // entries a quorum has on disk are applied.
    for (const Message& m : n.core->sendable()) send(m);
    std::span<const Entry> committed = n.core->applicable();
    applyAll(n, committed);
    if (!committed.empty()) serveReads(n);
  }
  while (n.up() && !n.paused && !n.syncing && n.core->hasReady()) {
    Consensus& c = *n.core;
    const Ready& rd = c.ready();
    bool leader = c.role() == Role::Leader;
    if (leader && n.leaderTermAtLastReady != c.term().value && crashNewLeader_ > 0 && !healed_ &&
        rng_.chance(crashNewLeader_ / 2)) {
      // The new leader writes its first entries and dies before it sends anything: it alone
      // holds its no-op (the schedule of Figure 8 of the Raft paper).
      if (rd.snapshot) n.log->installSnapshot(*rd.snapshot);
      n.log->append(rd.entries);
      if (rd.hardState) n.log->setHardState(*rd.hardState);
      n.log->sync();
      crash(n);
      schedule(now_ + (rng_.chance(0.5) ? rng_.range(100'000, 5 * kMs) : rng_.range(5 * kMs, 300 * kMs)),
               Event::Restart, n.id.value, n.epoch);
      return;
    }
    uint64_t strict = leader && n.leaderTermAtLastReady == c.term().value ? c.term().value : 0;
    n.leaderTermAtLastReady = leader ? c.term().value : 0;
    for (const Message& m : rd.messages) send(m);
    n.log->setWriter(strict);
    HardState was = n.log->hardState();
    if (rd.snapshot) n.log->installSnapshot(*rd.snapshot);
    n.log->append(rd.entries);
    if (rd.hardState) n.log->setHardState(*rd.hardState);
    n.log->setWriter(0);
    // As in the server: a new commit index alone is written without a sync; entries, a
    // snapshot, a new term or vote wait for one, and so does any acknowledgement or vote after
    // a leader's writes that were not synced (an ex-leader's).
    bool mustSync = rd.snapshot || !rd.entries.empty() || (rd.hardState && rd.hardState->mustPersistOver(was)) ||
                    (n.unsynced && !rd.messagesAfterPersist.empty());
    // A leader whose followers alone form a quorum may leave its own write unsynced
    // (§10.2.1); it syncs it lazily, as keel-server does.
    bool defer = rd.syncOptional && rng_.chance(0.7);
    if (defer) {
      n.unsynced = true;
      if (!n.lazySyncDue) {
        n.lazySyncDue = true;
        schedule(now_ + rng_.range(100'000, 5 * kMs) * n.diskFactor, Event::LazySync, n.id.value, n.epoch);
      }
    }
    if (strict && rd.hardState && rd.hardState->commit > n.log->durable().hardState().commit) {
      // §5.4.2 (Figure 2, "Rules for Servers: Leaders"): a leader moves its commit index only
      // to an entry of its current term; earlier entries commit with it, never by counting.
      Index ci = rd.hardState->commit;
      if (ci >= n.log->firstIndex() && ci <= n.log->lastIndex() && n.log->term(ci) != c.term())
        throw SafetyViolation("§5.4.2: leader n" + std::to_string(n.id.value) + " of term " +
                              std::to_string(c.term().value) + " committed entry " + std::to_string(ci.value) +
                              " of term " + std::to_string(n.log->term(ci).value) + " by counting replicas");
    }
    n.ready = &rd;
    // Entries a quorum has on disk go before this node's own write, as in the server.
    if (!rd.committedAfterWrite) applyReady(n, rd);
    if (defer) {
      finishReady(n, false, false);
      continue;
    }
    if (mustSync && n.log->unsynced()) {
      n.syncing = true;
      int64_t delay = rng_.range(200'000, 2 * kMs) * n.diskFactor;
      schedule(now_ + delay, Event::SyncDone, n.id.value, n.epoch);
      return;
    }
    finishReady(n, mustSync);
  }
}

void Simulation::finishReady(Node& n, bool synced, bool durable) {
  Consensus& c = *n.core;
  const Ready& rd = *n.ready;
  if (synced) {
    n.log->sync();
    n.unsynced = false;
  }
  if (synced && (rd.hardState || !rd.entries.empty())) traceSync(n);
  for (const Message& m : rd.messagesAfterPersist) send(m);
  if (rd.committedAfterWrite) applyReady(n, rd);
  for (const ReadState& rs : rd.readStates) readReady(n, rs);
  n.ready = nullptr;
  n.syncing = false;
  c.advance(durable);
  serveReads(n);
}

void Simulation::traceSync(Node& n, std::string what) {
  Trace t(Trace::Sync, std::move(what));
  t.index = n.log->lastIndex().value;
  t.commit = n.log->hardState().commit.value;
  trace(n, std::move(t));
}

void Simulation::syncLeaderWrites(Node& n) {
  if (!(o_.defects & kLazySyncWithoutSync)) n.log->sync();
  n.unsynced = false;
  traceSync(n, "lazy sync");
  n.core->persisted(n.core->term(), n.log->lastIndex());
}

void Simulation::applyReady(Node& n, const Ready& rd) {
  if (rd.snapshot) {
    const Snapshot& s = *rd.snapshot;
    n.compacting.reset();  // of the state this snapshot replaces
    n.sm = KvStateMachine(kvOptions_);
    if (!s.data.empty() && !n.sm.restore(s.data.view())) throw std::logic_error("keel-sim: a snapshot did not restore");
    n.smApplied = s.meta.index;
    inv_.appliedSnapshot(n.id, s.meta.index);
    res_.snapshotInstalls++;
    Trace t(Trace::Install);
    t.index = s.meta.index.value;
    t.term = s.meta.term.value;
    trace(n, std::move(t));
  }
  applyAll(n, rd.committed);
}

void Simulation::applyAll(Node& n, std::span<const Entry> committed) {
  for (const Entry& e : committed) apply(n, e);
  if (!committed.empty()) {
    Trace t(Trace::Apply);
    t.n = committed.size();
    t.index = committed.back().index.value;
    trace(n, std::move(t));
  }
}

void Simulation::apply(Node& n, const Entry& e) {
  inv_.applied(n.id, e);
  n.smApplied = e.index;
  std::string reply;
  if (e.type == EntryType::Normal && !e.data.empty()) reply = n.sm.apply(e.index, e.data.view());
  for (Client& c : clients_)
    if (!c.watches.empty() || !c.registrations.empty()) applied(c, e, reply);
}

// A node applied entry e with reply `reply`: what it tells client c about its proposals.
//
// The first node to apply a watched index tells the client, whichever node took the proposal:
// every node applies the same entry there and computes the same reply (State Machine Safety,
// and a deterministic state machine; checkReplicas checks the latter). A copy proposed to a
// node that then left the cluster or skipped the index by installing a snapshot still gets
// its answer. (So when a copy answers SessionExpired at index j, every copy at an index below
// j has been answered already: the first node to apply j applied them first, or installed a
// snapshot made by a node that did.)
void Simulation::applied(Client& c, const Entry& e, const std::string& reply) {
  // Another entry at a watched index means ours (index, term) never commits (Log Matching).
  auto find = [&](std::vector<Client::Watch>& ws) -> std::optional<bool> {  // nullopt: not watched; true: ours
    for (size_t k = 0; k < ws.size(); ++k) {
      if (ws[k].index != e.index) continue;
      bool ours = e.term == ws[k].term;
      ws.erase(ws.begin() + long(k));
      return ours;
    }
    return std::nullopt;
  };
  auto retrySoon = [&]() {
    c.phase = Client::Phase::Sending;
    arm(c, now_ + rng_.range(1 * kMs, 5 * kMs));
  };
  if (auto ours = find(c.registrations)) {
    if (*ours) {
      kv::Reply r;
      if (!kv::decodeReply(kv::Op::RegisterSession, reply, r) || !r.ok())
        throw std::logic_error("keel-sim: RegisterSession answered " + std::string(kv::toString(r.status)));
      c.session = r.client;
      c.registrations.clear();  // the others, if they apply, leave sessions nobody uses
      res_.registrations++;
      if (c.phase == Client::Phase::AwaitRegister) retrySoon();
    } else if (c.registrations.empty() && c.phase == Client::Phase::AwaitRegister) {
      retrySoon();
    }
    return;
  }
  auto ours = find(c.watches);
  if (!ours) return;
  if (*ours) {
    kv::Op op = c.f == checker::Function::Cas ? kv::Op::Cas : c.f == checker::Function::Delete ? kv::Op::Delete : kv::Op::Put;
    kv::Reply r;
    if (!kv::decodeReply(op, reply, r)) throw std::logic_error("keel-sim: an unreadable reply to a " + std::string(checker::name(c.f)));
    switch (r.status) {
      case kv::Status::Ok: complete(c, checker::Outcome::Ok); return;
      case kv::Status::NotFound:  // a delete of a missing key: the key is absent all the same
        if (op == kv::Op::Delete) {
          complete(c, checker::Outcome::Ok);
          return;
        }
        break;
      case kv::Status::CompareFailed:
        // The reply cached when the command first applied: the CAS certainly did not apply
        // (a later copy answers the same, or SessionExpired once the session is gone).
        if (op == kv::Op::Cas) {
          complete(c, checker::Outcome::Fail);
          return;
        }
        break;
      case kv::Status::SessionExpired:
        // This copy did not apply. Another copy may have applied before the session expired
        // (its reply is gone with the session): while any other copy is unresolved, wait for
        // it; when none is left, every copy is known not to have applied, and the client
        // registers a new session and proposes the write again.
        res_.sessionsExpired++;
        c.session = 0;  // ids are entry indices: an expired session never comes back
        // Copies later in the log carry the same session: none of them can apply either.
        std::erase_if(c.watches, [&](const Client::Watch& w) { return w.index > e.index; });
        if (c.watches.empty()) {
          c.maybeApplied = false;
          if (c.phase == Client::Phase::AwaitApply) retrySoon();
        }
        return;
      default: break;
    }
    throw std::logic_error("keel-sim: a " + std::string(checker::name(c.f)) + " answered " + kv::toString(r.status));
  }
  if (c.watches.empty()) {
    c.maybeApplied = false;
    if (c.phase == Client::Phase::AwaitApply) retrySoon();
  }
}

void Simulation::send(const Message& m) {
  res_.messages++;
  if (crashAfterAck_ > 0 && !healed_ && !m.reject &&
      ((m.type == MessageType::AppendResponse && rng_.chance(crashAfterAck_)) ||
       (m.type == MessageType::VoteResponse && rng_.chance(crashAfterVote_)))) {
    // Crash the sender a moment later (it goes on with this Ready first) and restart it soon.
    schedule(now_ + rng_.range(0, 1 * kMs), Event::CrashNow, m.from.value, node(m.from.value).epoch);
  }
  if (loss_ > 0 && rng_.chance(loss_)) {
    res_.dropped++;
    reportSnapshot(m, false);
    return;
  }
  int64_t held = 0;
  if ((o_.faults & kHeldReads) && !healed_ &&
      (m.type == MessageType::ReadIndex || m.type == MessageType::ReadIndexResponse)) {
    held = rng_.range(100 * kMs, 1000 * kMs);  // 1-10 election timeouts
    res_.heldReads++;
  }
  int copies = dup_ > 0 && rng_.chance(dup_) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    int64_t delay = held + rng_.range(500'000, 3 * kMs);
    if (longDelay_ > 0 && rng_.chance(longDelay_)) delay += rng_.range(5 * kMs, 150 * kMs);
    Message copy = m;
    schedule(now_ + delay, Event::Deliver, m.to.value, 0, &copy);
  }
}

void Simulation::deliver(Message& m) {
  if (m.to.value == 0 || m.to.value > nodes_.size()) return;
  Node& n = node(m.to.value);
  if (!n.up() || blocked_[m.from.value][m.to.value]) {
    res_.dropped++;
    reportSnapshot(m, false);
    return;
  }
  if (n.paused) {
    n.held.push_back(std::move(m));
    return;
  }
  Trace t(Trace::Recv);
  t.mtype = m.type;
  t.peer = m.from.value;
  t.term = m.term.value;
  t.index = m.index.value;
  t.commit = m.commit.value;
  t.n = m.entries.size();
  t.reject = m.reject;
  trace(n, std::move(t));
  n.core->step(m);
  reportSnapshot(m, true);
  processReadies(n);
}

void Simulation::compact(Node& n, Snapshot s) {
  if (n.unsynced) syncLeaderWrites(n);  // SimLog compacts only what is synced
  n.log->compact(s);
  res_.compactions++;
  Trace t(Trace::Compact);
  t.index = s.meta.index.value;
  trace(n, std::move(t));
}

void Simulation::compactStep(Node& n) {
  Compaction& c = *n.compacting;
  // A paused node does nothing; the log takes the snapshot between Readies, as the nemesis's
  // own compactions do.
  if (n.paused || !c.job->step(size_t(rng_.range(1, 64))) || n.syncing) {
    schedule(now_ + rng_.range(100'000, 10 * kMs), Event::CompactStep, n.id.value, n.epoch);
    return;
  }
  std::unique_ptr<Compaction> done = std::move(n.compacting);
  done->job.reset();
  if (done->sink->out != done->expected)
    throw SafetyViolation("n" + std::to_string(n.id.value) + ": a snapshot written in slices differs from the state at " +
                          toString(done->meta.index) + ", when it began");
  compact(n, Snapshot{done->meta, Bytes(done->sink->out)});
  res_.slicedCompactions++;
}

void Simulation::reportSnapshot(const Message& m, bool delivered) {
  // keel-server tells the core how each snapshot transfer ended (Consensus::reportSnapshot);
  // the simulated transport does too, 1 ms later (no random draw: seeds keep their runs until
  // a snapshot is sent).
  if (m.type != MessageType::Snapshot || !m.snapshot || m.from.value == 0 || m.from.value > nodes_.size()) return;
  Message report;
  report.from = m.from;
  report.to = m.to;
  report.index = m.snapshot->meta.index;
  schedule(now_ + kMs, Event::SnapshotReport, m.from.value, node(m.from.value).epoch, &report, delivered);
}

// ---------------------------------------------------------------------------------------------
// Clients

void Simulation::arm(Client& c, int64_t at) {
  ++c.gen;
  schedule(at, Event::ClientTimer, uint64_t(&c - clients_.data()), c.gen);
}

void Simulation::startOp(Client& c) {
  if (stopIssuing_) return;
  int k = int(rng_.below(uint64_t(o_.keys)));
  c.key = "k" + std::to_string(k);
  c.invoked = now_;
  c.deadline = now_ + o_.opTimeout;
  c.maybeApplied = false;
  c.watches.clear();
  c.expected.reset();
  // Clients do not all follow the leader: some start at any node (which redirects them).
  if (rng_.chance(0.25)) c.target = 1 + rng_.below(nodes_.size());
  uint64_t dice = rng_.below(10);
  if (dice < 4) {
    c.f = checker::Function::Read;
    c.handle = history_.invokeRead(c.process, c.key, now_);
  } else if (dice < 7) {
    c.f = checker::Function::Write;
    c.value = "v" + std::to_string(nextValue_++);
    c.handle = history_.invokeWrite(c.process, c.key, c.value, now_);
    lastWritten_[k] = c.value;
  } else if (dice < 9) {
    c.f = checker::Function::Cas;
    c.value = "v" + std::to_string(nextValue_++);
    c.expected = lastWritten_[k];
    c.handle = history_.invokeCas(c.process, c.key, c.expected, c.value, now_);
    lastWritten_[k] = c.value;
  } else {
    c.f = checker::Function::Delete;
    c.value.clear();
    c.handle = history_.invokeDelete(c.process, c.key, now_);
    lastWritten_[k].reset();
  }
  if (c.f != checker::Function::Read) c.seq++;
  c.phase = Client::Phase::Sending;
  attempt(c);
}

void Simulation::attempt(Client& c) {
  if (now_ >= c.deadline) {
    // Reads changed nothing; a write that was never appended certainly did not apply.
    complete(c, c.f != checker::Function::Read && c.maybeApplied ? checker::Outcome::Info
                 : c.f == checker::Function::Read               ? checker::Outcome::Info
                                                                : checker::Outcome::Fail);
    return;
  }
  Node& n = node(c.target);
  if (!n.up() || n.paused) {
    // Connection refused (or no answer): try another node.
    c.target = 1 + rng_.below(nodes_.size());
    arm(c, now_ + rng_.range(2 * kMs, 20 * kMs));
    return;
  }
  Consensus& core = *n.core;
  auto redirect = [&](const keel::Result& r) {
    c.target = r.leader ? r.leader.value : 1 + rng_.below(nodes_.size());
    arm(c, std::min(c.deadline, now_ + (r.leader ? rng_.range(1 * kMs, 5 * kMs) : rng_.range(10 * kMs, 30 * kMs))));
  };
  if (c.f == checker::Function::Read) {
    if (o_.defects & kStaleReads) {
      complete(c, checker::Outcome::Ok, read(n, c.key));
      return;
    }
    c.readContext = nextContext_++;
    keel::Result r = core.readIndex(c.readContext);
    if (!r.ok()) {
      redirect(r);
      return;
    }
    c.phase = Client::Phase::AwaitReadState;
    c.waitNode = n.id.value;
    c.waitEpoch = n.epoch;
    c.attemptDeadline = now_ + 150 * kMs;
    arm(c, std::min(c.deadline, c.attemptDeadline));
    Trace t(Trace::Read);
    t.text = "read " + c.key + " for p" + std::to_string(c.process) + " (context " + std::to_string(c.readContext) + ")";
    trace(n, std::move(t));
    processReadies(n);
    return;
  }
  // A write needs a session: register one through the log first (and again once it expired,
  // but only when no copy of the write can still apply under the old one).
  bool registering = c.session == 0;
  if (!c.watches.empty() && c.session != c.watchSession) {
    c.phase = Client::Phase::AwaitApply;
    arm(c, std::min(c.deadline, now_ + 300 * kMs));
    return;
  }
  kv::SessionRef session{c.session, c.seq, c.seq};
  std::string cmd = registering                         ? kv::encodeRegisterSession()
                    : c.f == checker::Function::Write  ? kv::encodePut(session, c.key, c.value)
                    : c.f == checker::Function::Delete ? kv::encodeDelete(session, c.key)
                    : kv::encodeCas(session, c.key, c.expected ? std::optional<std::string_view>(*c.expected) : std::nullopt,
                                    std::string_view(c.value));
  // The leader stamps its wall clock (here: the simulated time plus the node's skew).
  kv::stampClock(reinterpret_cast<uint8_t*>(cmd.data()), cmd.size(), clockMs(n));
  keel::Result r = core.propose(Bytes(cmd));
  if (!r.ok()) {
    if (r.refusal == Refusal::NotLeader) {
      redirect(r);
    } else {
      arm(c, std::min(c.deadline, now_ + rng_.range(5 * kMs, 20 * kMs)));
    }
    return;
  }
  if (registering) {
    c.phase = Client::Phase::AwaitRegister;
    c.registrations.push_back({n.id.value, r.index, r.term});
  } else {
    c.maybeApplied = true;
    c.phase = Client::Phase::AwaitApply;
    // The defect: wait for the last copy only, so SessionExpired looks like "never applied".
    if (o_.defects & kRetryExpiredWrites) c.watches.clear();
    c.watches.push_back({n.id.value, r.index, r.term});
    c.watchSession = c.session;
  }
  // No answer for a while (the node lost leadership, was removed, crashed): propose again
  // elsewhere; the session makes the retry apply at most once.
  arm(c, std::min(c.deadline, now_ + 300 * kMs));
  Trace t(Trace::Propose);
  t.index = r.index.value;
  t.term = r.term.value;
  t.text = registering ? "register-session for p" + std::to_string(c.process)
                       : std::string(checker::name(c.f)) + " " + c.key + "=" + c.value + " for p" +
                             std::to_string(c.process) + " (session " + std::to_string(c.session) + " seq " +
                             std::to_string(c.seq) + ")";
  trace(n, std::move(t));
  processReadies(n);
}

void Simulation::complete(Client& c, checker::Outcome outcome, std::optional<std::string> readValue) {
  history_.complete(c.handle, outcome, now_, std::move(readValue));
  switch (outcome) {
    case checker::Outcome::Ok: res_.opsOk++; break;
    case checker::Outcome::Fail: res_.opsFail++; break;
    case checker::Outcome::Info: res_.opsInfo++; break;
  }
  bool timedOut = outcome == checker::Outcome::Info || (outcome == checker::Outcome::Fail && now_ >= c.deadline);
  if (healed_ && c.invoked >= healTime_ && timedOut) {
    throw LivenessFailure("liveness: client p" + std::to_string(c.process) + "'s " + std::string(checker::name(c.f)) +
                          " of " + c.key + ", invoked at " + fmtTime(c.invoked) + " after everything healed at " +
                          fmtTime(healTime_) + ", did not complete within " + fmtTime(o_.opTimeout) + " s");
  }
  if (outcome == checker::Outcome::Info) c.process = nextProcess_++;
  c.watches.clear();
  c.phase = Client::Phase::Idle;
  arm(c, now_ + rng_.range(2 * kMs, 30 * kMs));
}

void Simulation::clientTimer(Client& c) {
  switch (c.phase) {
    case Client::Phase::Idle: startOp(c); break;
    case Client::Phase::Sending: attempt(c); break;
    case Client::Phase::AwaitRegister:
    case Client::Phase::AwaitApply:
      if (c.phase == Client::Phase::AwaitApply && now_ >= c.deadline) {
        complete(c, checker::Outcome::Info);
      } else {
        c.phase = Client::Phase::Sending;
        if (uint64_t l = leaderId()) {
          c.target = l;
        } else {
          c.target = 1 + rng_.below(nodes_.size());
        }
        attempt(c);
      }
      break;
    case Client::Phase::AwaitReadState:
    case Client::Phase::AwaitReadApply:
      // The read round was lost (a lost message, a new leader): ask again, perhaps elsewhere.
      c.phase = Client::Phase::Sending;
      if (uint64_t l = leaderId(); l && rng_.chance(0.5)) {
        // Like a client library that refreshes its list of the cluster's members.
        const auto& voters = node(l).core->membership().voters;
        c.target = voters[rng_.below(voters.size())].value;
      } else {
        c.target = 1 + (c.target + rng_.below(nodes_.size() - 1)) % nodes_.size();  // another node
      }
      attempt(c);
      break;
  }
}

void Simulation::readReady(Node& n, const ReadState& rs) {
  for (Client& c : clients_) {
    if (c.phase != Client::Phase::AwaitReadState || c.waitNode != n.id.value || c.waitEpoch != n.epoch ||
        c.readContext != rs.context)
      continue;
    c.waitIndex = rs.index;
    c.phase = Client::Phase::AwaitReadApply;
  }
}

// A read of the node's local state machine (after ReadIndex, unless the defect says otherwise).
std::optional<std::string> Simulation::read(const Node& n, const std::string& key) {
  kv::Reply r;
  if (!kv::decodeReply(kv::Op::Get, n.sm.query(kv::encodeGet(key)), r) ||
      (r.status != kv::Status::Ok && r.status != kv::Status::NotFound))
    throw std::logic_error("keel-sim: a get of " + key + " answered " + kv::toString(r.status));
  if (r.ok()) return std::move(r.value);
  return std::nullopt;
}

void Simulation::serveReads(Node& n) {
  for (Client& c : clients_) {
    if (c.phase != Client::Phase::AwaitReadApply || c.waitNode != n.id.value || c.waitEpoch != n.epoch) continue;
    if (n.smApplied < c.waitIndex) continue;
    complete(c, checker::Outcome::Ok, read(n, c.key));
  }
}

// ---------------------------------------------------------------------------------------------
// The loop

void Simulation::dispatch(Event& e) {
  switch (e.kind) {
    case Event::Tick: {
      Node& n = node(e.node);
      schedule(now_ + kTick, Event::Tick, e.node);
      if (n.up() && n.paused) ++n.missedTicks;
      if (!n.up() || n.paused) return;
      n.core->tick();
      processReadies(n);
      if (healed_) retireRemoved();
      break;
    }
    case Event::Deliver: deliver(e.msg); break;
    case Event::SyncDone: {
      Node& n = node(e.node);
      if (e.epoch != n.epoch || !n.syncing) return;
      if (n.paused) {
        n.syncDoneWhilePaused = true;
        return;
      }
      finishReady(n);
      processReadies(n);
      break;
    }
    case Event::ClientTimer: {
      Client& c = clients_[e.node];
      if (e.epoch != c.gen) return;
      clientTimer(c);
      break;
    }
    case Event::Nemesis:
      if (!healed_) nemesis();
      break;
    case Event::Restart: {
      Node& n = node(e.node);
      if (e.epoch == n.epoch) restart(n);
      break;
    }
    case Event::Resume: {
      Node& n = node(e.node);
      if (e.epoch != n.epoch || !n.paused) return;
      n.paused = false;
      trace(n, Trace(Trace::Resume, "resumes"));
      // Lease reads: a leader catches up on the ticks it missed before anything else, as
      // keel-server does (its lease is measured in ticks, which must keep up with time).
      for (; n.missedTicks > 0; --n.missedTicks)
        if (n.config.readMode == ReadMode::Lease && n.core->role() == Role::Leader) n.core->tick();
      if (n.syncDoneWhilePaused) {
        n.syncDoneWhilePaused = false;
        finishReady(n);
      }
      std::vector<Message> held;
      held.swap(n.held);
      processReadies(n);
      for (Message& m : held) {
        if (!n.up() || n.paused) break;
        deliver(m);
      }
      break;
    }
    case Event::DiskNormal: node(e.node).diskFactor = 1; break;
    case Event::LazySync: {
      Node& n = node(e.node);
      if (e.epoch != n.epoch || !n.up()) return;
      if (n.paused) {  // a paused process syncs nothing
        schedule(now_ + kMs, Event::LazySync, n.id.value, n.epoch);
        return;
      }
      n.lazySyncDue = false;
      if (!n.unsynced) return;
      syncLeaderWrites(n);
      processReadies(n);
      break;
    }
    case Event::CrashNow: {
      Node& n = node(e.node);
      if (e.epoch != n.epoch || !n.up() || healed_) return;
      crash(n);
      schedule(now_ + (rng_.chance(0.5) ? rng_.range(100'000, 5 * kMs) : rng_.range(5 * kMs, 300 * kMs)), Event::Restart,
               n.id.value, n.epoch);
      break;
    }
    case Event::Heal: healAll(); break;
    case Event::CompactStep: {
      Node& n = node(e.node);
      if (e.epoch != n.epoch || !n.up() || !n.compacting) return;
      compactStep(n);
      break;
    }
    case Event::SnapshotReport: {
      Node& n = node(e.node);
      if (e.epoch != n.epoch || !n.up() || n.paused) return;
      n.core->reportSnapshot(e.msg.to, e.msg.index, e.delivered);
      ++res_.snapshotReports;
      processReadies(n);
      break;
    }
  }
}

// At the end: nodes that applied the same prefix of the log hold the same state (data,
// sessions, cached replies, clock), byte for byte: the state machine is deterministic and
// snapshots carry all of it.
void Simulation::checkReplicas() {
  std::map<uint64_t, std::pair<uint64_t, std::string>> byApplied;  // applied index -> (node, state)
  for (Node& n : nodes_) {
    if (!n.up()) continue;
    n.compacting.reset();
    std::string state = snapshotOf(n.sm, kvOptions_.snapshotChunkBytes);
    auto [it, first] = byApplied.try_emplace(n.smApplied.value, n.id.value, state);
    if (!first && it->second.second != state)
      throw SafetyViolation("state machines: n" + std::to_string(it->second.first) + " and n" +
                            std::to_string(n.id.value) + " applied through " + std::to_string(n.smApplied.value) +
                            " and hold different states");
  }
}

void Simulation::observe() {
  static thread_local std::vector<Invariants::View> views;
  views.clear();
  for (Node& n : nodes_) {
    views.push_back({n.id, n.core.get(), &n.log->memory(), !n.syncing});
    traceRole(n);
  }
  inv_.observe(views);
}

Result Simulation::run() {
  try {
    bool healScheduled = false;
    int64_t end = 0;
    while (!queue_.empty()) {
      std::pop_heap(queue_.begin(), queue_.end(), Later{});
      Event e = std::move(queue_.back());
      queue_.pop_back();
      now_ = e.time;
      if (!healScheduled && res_.events >= o_.events) {
        healScheduled = true;
        Event h;
        h.kind = Event::Heal;
        dispatch(h);
        observe();
        end = now_ + o_.livenessTime;
      }
      if (healed_ && !stopIssuing_ && now_ >= end) stopIssuing_ = true;
      if (stopIssuing_) {
        bool idle = std::all_of(clients_.begin(), clients_.end(), [](const Client& c) { return c.phase == Client::Phase::Idle; });
        if (idle) break;
        if (now_ > end + 2 * o_.opTimeout) throw LivenessFailure("liveness: clients still busy long after the end");
      }
      res_.events++;
      dispatch(e);
      observe();
    }
    checkReplicas();
  } catch (const SafetyViolation& v) {
    res_.ok = false;
    res_.failure = std::string("safety: ") + v.what();
  } catch (const LivenessFailure& v) {
    res_.ok = false;
    res_.failure = v.what();
  } catch (const std::exception& x) {
    res_.ok = false;
    res_.failure = std::string("exception: ") + x.what();
  }
  res_.simTime = now_;
  res_.committed = inv_.committedEntries();
  res_.terms = inv_.terms();
  if (res_.ok && o_.checkHistory) {
    checker::CheckOptions co;
    co.timeout = std::chrono::seconds(20);
    checker::CheckResult cr = checker::check(history_, co);
    if (cr.verdict == checker::Verdict::NotLinearizable) {
      res_.ok = false;
      res_.failure = "linearizability: the history is not linearizable\n" + checker::render(cr);
    } else if (cr.verdict == checker::Verdict::Unknown) {
      res_.ok = false;
      res_.failure = "linearizability: the checker gave up (unknown)";
    }
  }
  if (!o_.historyPath.empty()) {
    std::ofstream out(o_.historyPath);
    history_.writeJsonLines(out);
  }
  if (!res_.ok) res_.report = report();
  return res_;
}

std::string Simulation::report() {
  std::ostringstream o;
  o << "keel-sim --seed " << o_.seed << ": FAILED at " << fmtTime(now_) << " s, event " << res_.events << "\n";
  o << "  " << res_.nodes << " nodes, faults " << faultNames(o_.faults) << ", " << configText_ << "\n";
  o << "  " << res_.failure << "\n";
  for (Node& n : nodes_) {
    o << "\n  n" << n.id.value << ": ";
    if (!n.up()) {
      o << "down";
    } else {
      const Consensus& c = *n.core;
      o << toString(c.role()) << (n.paused ? " (paused)" : "") << ", term " << c.term().value << ", vote n" << c.vote().value
        << ", commit " << c.commitIndex().value << ", applied " << c.appliedIndex().value << ", last "
        << c.lastIndex().value << ", members " << c.membership().toString();
    }
    o << "; log " << n.log->firstIndex().value << ".." << n.log->lastIndex().value << " (durable through "
      << n.log->durable().lastIndex().value << ")\n";
    size_t count = std::min(n.traceNext, n.trace.size());
    for (size_t i = n.traceNext - count; i < n.traceNext; ++i) o << "    " << render(n.trace[i % n.trace.size()]) << "\n";
  }
  return o.str();
}

}  // namespace detail

using detail::Simulation;
using detail::fmtTime;


// ---------------------------------------------------------------------------------------------

namespace {
const std::pair<uint32_t, const char*> kFaultNames[] = {
    {kNetwork, "network"},   {kPartitions, "partitions"}, {kCrashes, "crashes"},
    {kTornWrites, "torn"},   {kPauses, "pauses"},         {kSlowDisk, "slow-disk"},
    {kMembership, "membership"}, {kTransfers, "transfers"}, {kSnapshots, "snapshots"},
    {kHeldReads, "held-reads"},
};
}

std::optional<uint32_t> parseFaults(const std::string& names) {
  if (names == "all") return kAllFaults;
  uint32_t out = 0;
  std::stringstream s(names);
  std::string item;
  while (std::getline(s, item, ',')) {
    bool found = false;
    for (auto& [bit, name] : kFaultNames)
      if (item == name) out |= bit, found = true;
    if (!found) return std::nullopt;
  }
  return out;
}

std::string faultNames(uint32_t faults) {
  if (faults == kAllFaults) return "all";
  std::string out;
  for (auto& [bit, name] : kFaultNames)
    if (faults & bit) out += (out.empty() ? "" : ",") + std::string(name);
  return out.empty() ? "none" : out;
}

std::string Result::summary() const {
  std::ostringstream o;
  o << "seed " << seed << ": " << (ok ? "ok" : "FAILED") << "  nodes=" << nodes << " faults=" << faultNames(faults)
    << " events=" << events << " time=" << fmtTime(simTime) << "s ops=" << opsOk << "/" << opsFail << "/" << opsInfo
    << " (ok/fail/info) committed=" << committed << " terms=" << terms << " crashes=" << crashes
    << " partitions=" << partitions << " membership=" << membershipChanges << " transfers=" << transfers
    << " compactions=" << compactions << " (sliced " << slicedCompactions << ") installs=" << snapshotInstalls << " reports=" << snapshotReports
    << " sessions=" << registrations << " expired=" << sessionsExpired << " held-reads=" << heldReads;
  return o.str();
}

Result run(const Options& options) {
  Simulation s(options);
  return s.run();
}

}  // namespace keel::sim
