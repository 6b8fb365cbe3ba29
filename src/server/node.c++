// keel: Node, the Ready loop (see node.h), the client-facing operations and the timers.
#include "node.h"

#include <keel/memory-log.h>
#include <keel/segmented-log.h>

#include <cstdio>
#include <ctime>
#include <thread>
#ifdef __GLIBC__
#include <malloc.h>
#endif

// jemalloc's control interface, when keel-server is linked with it (weak: absent otherwise).
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace keel::server {

namespace {

uint64_t wallMs() {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

// Collects a snapshot in one buffer, allocated for the size it is expected to have: its bytes
// are copied once, and pages of the allowance it does not use are never touched.
struct ChunkSink final : SnapshotSink {
  explicit ChunkSink(size_t expected) : buf(Bytes::uninitialized(std::max<size_t>(expected, 4096))) {}
  Bytes buf;
  size_t size = 0;
  void write(std::string_view chunk) override {
    if (size + chunk.size() > buf.size()) {
      Bytes larger = Bytes::uninitialized(std::max(buf.size() * 2, size + chunk.size()));
      memcpy(larger.mutableData(), buf.data(), size);
      buf = std::move(larger);
    }
    memcpy(buf.mutableData() + size, chunk.data(), chunk.size());
    size += chunk.size();
  }
  Bytes take() {
    buf.shrink(size);
    return std::move(buf);
  }
};

// The durable log as the core sees it: every call goes to the log, but snapshot() returns
// the metadata only. The core reads the snapshot just to send it to a follower (§7), and the
// transport streams the bytes from the log itself (Node::sendSnapshot), so no copy of the
// whole state is made for each send.
class CoreLogView final : public Log {
 public:
  explicit CoreLogView(Log& log) : log_(log) {}
  HardState hardState() const override { return log_.hardState(); }
  Index firstIndex() const override { return log_.firstIndex(); }
  Index lastIndex() const override { return log_.lastIndex(); }
  Term term(Index i) const override { return log_.term(i); }
  void entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const override {
    log_.entries(lo, hi, maxBytes, out);
  }
  SnapshotMeta snapshotMeta() const override { return log_.snapshotMeta(); }
  Snapshot snapshot() const override { return Snapshot{log_.snapshotMeta(), Bytes()}; }
  void setHardState(const HardState& hs) override { log_.setHardState(hs); }
  void append(std::span<const Entry> entries) override { log_.append(entries); }
  void installSnapshot(const Snapshot& snapshot) override { log_.installSnapshot(snapshot); }
  void compact(const Snapshot& snapshot) override { log_.compact(snapshot); }
  void sync() override { log_.sync(); }

 private:
  Log& log_;
};

// --unsafe-test-sync-delay-ms: the real file layer, with every file sync taking longer.
class SlowSyncFileSystem final : public FileSystem {
 public:
  explicit SlowSyncFileSystem(uint32_t delayMs) : delay_(delayMs) {}
  std::unique_ptr<File> open(const std::string& path, bool create) override {
    return std::make_unique<SlowFile>(posix_.open(path, create), delay_);
  }
  // Direct writes are never synced through their own handle (the buffered one is).
  std::unique_ptr<File> openDirect(const std::string& path) override { return posix_.openDirect(path); }
  bool exists(const std::string& path) override { return posix_.exists(path); }
  void rename(const std::string& from, const std::string& to) override { posix_.rename(from, to); }
  void remove(const std::string& path) override { posix_.remove(path); }
  void makeDir(const std::string& path) override { posix_.makeDir(path); }
  void syncDir(const std::string& path) override { posix_.syncDir(path); }
  std::vector<std::string> list(const std::string& path) override { return posix_.list(path); }

 private:
  struct SlowFile final : File {
    SlowFile(std::unique_ptr<File> f, std::chrono::milliseconds d) : inner(std::move(f)), delay(d) {}
    size_t pread(void* buf, size_t size, uint64_t offset) const override { return inner->pread(buf, size, offset); }
    void pwrite(const void* buf, size_t size, uint64_t offset) override { inner->pwrite(buf, size, offset); }
    void truncate(uint64_t size) override { inner->truncate(size); }
    uint64_t size() const override { return inner->size(); }
    void willNeed(uint64_t offset, uint64_t size) override { inner->willNeed(offset, size); }
    void startWriteback(uint64_t offset, uint64_t size) override { inner->startWriteback(offset, size); }
    Bytes map(uint64_t offset, uint64_t size) override { return inner->map(offset, size); }
    void sync() override {
      std::this_thread::sleep_for(delay);
      inner->sync();
    }
    std::unique_ptr<File> inner;
    std::chrono::milliseconds delay;
  };
  FileSystem& posix_ = posixFileSystem();
  std::chrono::milliseconds delay_;
};

class TaskErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    std::fprintf(stderr, "keel-server: task failed: %s\n", e.getDescription().cStr());
  }
};
TaskErrors taskErrors;

}  // namespace

struct Node::SnapshotInProgress {
  SnapshotInProgress(SnapshotMeta m, size_t expectedBytes, std::chrono::steady_clock::time_point t)
      : meta(std::move(m)), sink(expectedBytes), started(t) {}
  SnapshotMeta meta;
  ChunkSink sink;
  std::unique_ptr<SnapshotJob> job;  // writes into `sink`
  std::chrono::steady_clock::time_point started;
  uint64_t slices = 0;
};

Node::Node(const Options& options, kj::AsyncIoContext& io, StateMachine& sm, CommandStamper stamper)
    : options_(options),
      io_(io),
      timer_(io.provider->getTimer()),
      sm_(sm),
      stamper_(std::move(stamper)),
      rng_(options.id * 0x9e3779b97f4a7c15ull ^ uint64_t(std::time(nullptr))),
      tasks_(kj::heap<kj::TaskSet>(taskErrors)),
      bootstrap_(nullptr) {
  if (options_.tls.enabled()) {
    std::string error;
    tls_ = net::Tls::load(options_.tls, net::Tls::Role::Node, error);
    if (!tls_) throw std::runtime_error(error);
  }
  for (auto& [id, addr] : options_.peers) addresses_[NodeId{id}] = addr;
  if (options_.listen.empty()) options_.listen = options_.peers.at(options_.id);
  addresses_[NodeId{options_.id}] = options_.listen;

  // A new cluster starts from its voters; a joining node starts with no membership at all (it
  // never campaigns) and takes its configuration from the leader's log or snapshot.
  Membership initial;
  if (!options_.join)
    for (auto& [id, addr] : options_.peers) initial.voters.push_back(NodeId{id});

  if (options_.memoryLog) {
    logOwner_ = std::make_unique<MemoryLog>(initial);
  } else {
    SegmentedLog::Options lo;
    lo.initialMembership = initial;
    // --unsafe-test-ack-before-persist (tests only): appends stay in the log's user-space write
    // buffer until the lazy sync in tickLoop(), so kill -9 drops them.
    if (options_.unsafeTestAckBeforePersist) lo.writeBufferBytes = 1ull << 30;
    if (options_.unsafeTestSyncDelayMs) {
      slowDisk_ = std::make_unique<SlowSyncFileSystem>(options_.unsafeTestSyncDelayMs);
      lo.fs = slowDisk_.get();
    }
    auto seg = std::make_unique<SegmentedLog>(options_.dataDir, lo);
    segmented_ = seg.get();
    segmented_->onDurable([this](uint64_t seq) {
      // The log's I/O thread: hand the completion to the loop.
      auto lock = durable_.lockExclusive();
      if (seq > lock->reported) lock->reported = seq;
      std::erase_if(lock->waiting, [seq](auto& w) {
        if (w.first > seq) return false;
        w.second->fulfill();
        return true;
      });
    });
    logOwner_ = std::move(seg);
  }
  log_ = logOwner_.get();

  // Restart: the state machine starts from the log's snapshot; the core replays the rest. From
  // the durable log the snapshot streams from its file into the machine, 4 MiB at a time, when
  // the machine can restore that way (no copy of the whole snapshot in memory).
  SnapshotMeta snapMeta = log_->snapshotMeta();
  bool restored = false;
  if (segmented_ && snapMeta.index > Index{0}) {
    auto src = segmented_->snapshotReader();
    if (src->size() == 0) {
      restored = true;
    } else if (auto r = sm_.beginRestore()) {
      std::string chunk;
      for (uint64_t at = 0; at < src->size(); at += chunk.size()) {
        chunk.resize(size_t(std::min<uint64_t>(4 << 20, src->size() - at)));
        src->readInto(at, reinterpret_cast<uint8_t*>(chunk.data()), chunk.size());
        r->write(chunk);
      }
      if (r->finish()) {
        r->apply();
        restored = true;
      }
    }
  }
  if (!restored && snapMeta.index > Index{0}) {
    Snapshot snap = log_->snapshot();
    if (!snap.data.empty() && !sm_.restore(snap.data.view())) {
      throw std::runtime_error("the snapshot in " + options_.dataDir + " is not one of this state machine");
    }
  }
  applied_ = snapMeta.index.value;  // reads wait for applied_ >= their index
  snapshotBytes_ = segmented_ ? segmented_->snapshotSize() : log_->snapshot().data.size();
  Config cfg;
  cfg.id = NodeId{options_.id};
  cfg.electionTicks = options_.electionTicks;
  cfg.heartbeatTicks = options_.heartbeatTicks;
  cfg.checkQuorum = options_.checkQuorum;
  cfg.readMode = options_.readMode;
  cfg.maxClockDriftPercent = options_.maxClockDriftPercent;
  cfg.maxMessageBytes = std::min<uint64_t>(1 << 20, options_.maxMessageBytes / 4);
  cfg.maxEntryBytes = std::min<uint64_t>(1 << 20, options_.maxMessageBytes / 4);
  cfg.applied = snapMeta.index;
  cfg.seed = rng_();
  if (options_.unsafeTestAckBeforePersist) {
    // Tests only: acknowledgements leave before the persist (see Fault::AckBeforePersist).
    cfg.faults |= uint64_t{1} << static_cast<unsigned>(Fault::AckBeforePersist);
    log("UNSAFE TEST MODE: acknowledging writes before they are durable (--unsafe-test-ack-before-persist)");
  }
  if (options_.unsafeTestStaleReads) {
    log("UNSAFE TEST MODE: serving every read from local state (--unsafe-test-stale-reads)");
  }
  if (segmented_) coreView_ = std::make_unique<CoreLogView>(*log_);
  core_ = std::make_unique<Consensus>(cfg, coreView_ ? *coreView_ : *log_);
  if (cfg.readMode == ReadMode::Lease) {
    log("lease reads: a lease lasts " + std::to_string(cfg.leaseTicks()) + " ticks (" +
        std::to_string(cfg.leaseTicks() * options_.tickMs) + " ms) from the sending of a heartbeat round a quorum "
        "acknowledged; safe while no node's clock runs more than " + std::to_string(cfg.maxClockDriftPercent) +
        "% faster than another's");
  }
  log("started: " + core_->membership().toString() + ", log " + toString(log_->firstIndex()) + ".." +
      toString(log_->lastIndex()) + ", term " + std::to_string(core_->term().value) +
      (options_.memoryLog ? " (memory log: NOT durable)" : ""));
}

Node::~Node() {
  // Peers and listeners go first (they refer to the node), then the log (which waits for its
  // I/O thread).
  tasks_ = nullptr;
  accepted_.clear();
  peers_.clear();
  {
    auto lock = durable_.lockExclusive();
    lock->waiting.clear();
  }
  logOwner_.reset();
}

void Node::log(const std::string& line) const {
  if (options_.quiet) return;
  // Wall-clock time of day, to the millisecond (UTC), so that the logs of nodes line up.
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  std::fprintf(stderr, "%02d:%02d:%02d.%03ld keel-server n%llu: %s\n", t.tm_hour, t.tm_min, t.tm_sec,
               ts.tv_nsec / 1000000, (unsigned long long)options_.id, line.c_str());
}

capnp::ReaderOptions Node::readerOptions() const {
  capnp::ReaderOptions ro;
  ro.traversalLimitInWords = options_.maxMessageBytes / sizeof(capnp::word);
  return ro;
}

// ---- The Ready loop ----

void Node::kick() {
  if (scheduled_ || stopping_) return;
  scheduled_ = true;
  auto run = [this]() {
    scheduled_ = false;
    process();
  };
  // A follower syncs on this thread (process()): its Ready waits until every message already
  // read has been stepped (evalLast), so that one sync covers them all.
  tasks_->add(core_->role() == Role::Leader ? kj::evalLater(kj::mv(run)) : kj::evalLast(kj::mv(run)));
}

void Node::process() {
  if (stopping_) return;
  if (syncing_) {
    // Our own write is in flight: what needs nothing durable (the leader's Appends of new
    // proposals, heartbeats of read rounds) leaves now (diss. §10.2.1), and entries a quorum
    // has on disk are applied and answered now.
    for (const Message& m : core_->sendable()) send(m);
    std::span<const Entry> committed = core_->applicable();
    if (!committed.empty()) {
      applyCommitted(committed);
      serveReads();
    }
    return;
  }
  if (!core_->hasReady()) {
    releaseHeldSoon();
    return;
  }
  current_ = core_->ready();
  const Ready& rd = current_;
  if (core_->role() != loggedRole_ || core_->term() != loggedTerm_) {
    loggedRole_ = core_->role();
    loggedTerm_ = core_->term();
    log(std::string(toString(loggedRole_)) + " at term " + std::to_string(loggedTerm_.value));
  }
  // §10.2.1 (diss.): the leader's Appends go out before its own write is durable.
  for (const Message& m : rd.messages) send(m);
  bool wrote = false;
  if (rd.snapshot) {
    snapshotting_ = nullptr;  // of the state the leader's snapshot replaces
    log_->installSnapshot(*rd.snapshot);
    const SnapshotMeta& meta = rd.snapshot->meta;
    if (received_.restore && received_.index == meta.index && received_.term == meta.term) {
      received_.restore->apply();  // parsed while it streamed in
    } else if (!sm_.restore(rd.snapshot->data.view()) && !rd.snapshot->data.empty()) {
      log("FATAL: a snapshot from the leader is not one of this state machine");
      std::abort();
    }
    received_ = {};
    applied_ = rd.snapshot->meta.index.value;
    appliedBytes_ = 0;
    snapshotBytes_ = rd.snapshot->data.size();
    wrote = true;
  }
  // Entries a quorum has on disk are applied, and their clients answered, before this node's
  // own write (which may take an fsync): they need not wait for it.
  if (!rd.committedAfterWrite) applyCommitted(rd.committed);
  if (rd.hardState && options_.unsafeTestAckBeforePersist) {
    // Tests only: the hard state is written with the lazy sync, after the entries it covers.
    unsafeTestHardState_ = *rd.hardState;
  } else if (rd.hardState) {
    // A new commit index alone is written without a sync: a round trip through the log's I/O
    // thread for it would hold back the next batch.
    wrote = wrote || rd.hardState->mustPersistOver(log_->hardState());
    log_->setHardState(*rd.hardState);
  }
  if (!rd.entries.empty()) {
    log_->append(rd.entries);
    wrote = true;
  }
  if (rd.syncOptional && segmented_ && options_.leaderSyncDelayMs && !options_.unsafeTestAckBeforePersist) {
    // §10.2.1 (diss.): the followers alone can commit these entries, so the leader goes on
    // without syncing them; lazySync() makes them durable (and count) a little later.
    ++deferred_;
    if (!lazySyncArmed_) {
      lazySyncArmed_ = true;
      tasks_->add(timer_.afterDelay(options_.leaderSyncDelayMs * kj::MILLISECONDS).then([this]() {
        lazySyncArmed_ = false;
        lazySync();
      }));
    }
    finishReady(false);
    return;
  }
  // Writes left unsynced are synced before any acknowledgement or vote goes out.
  if (deferred_ != deferredSynced_ && !rd.messagesAfterPersist.empty()) wrote = true;
  if (!wrote) {
    finishReady();
    return;
  }
  if (options_.unsafeTestAckBeforePersist) {
    // Tests only: carry on as if the write were durable; tickLoop() syncs lazily.
    finishReady();
    return;
  }
  syncing_ = true;
  syncStart_ = std::chrono::steady_clock::now();
  deferredSyncing_ = deferred_;
  if (!segmented_) {
    log_->sync();
    finishReady();
    return;
  }
  // A follower's answer waits for its sync and it has nothing else to send meanwhile: a small
  // batch is synced on this thread (no wake-up of the log's I/O thread, and none of this loop
  // by it). A leader's sync stays on the I/O thread, overlapping its Appends' round trips (and
  // a quorum of followers can commit without it, §10.2.1). After a sync that took longer than a
  // tick (a slow or stalled disk) the next goes to the I/O thread, so that the loop goes on
  // answering heartbeats, reads and /status meanwhile.
  bool here = core_->role() != Role::Leader && !lastSyncSlow_;
  uint64_t seq = here ? segmented_->syncHere(kSyncHereBytes) : segmented_->syncAsync();
  if (segmented_->durableSeq() >= seq) {
    finishReady();
    return;
  }
  tasks_->add(waitDurable(seq).then([this]() {
    if (!stopping_) finishReady();
  }));
}

kj::Promise<void> Node::waitDurable(uint64_t seq) {
  auto lock = durable_.lockExclusive();
  if (lock->reported >= seq || segmented_->durableSeq() >= seq) return kj::READY_NOW;
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  lock->waiting.emplace_back(seq, kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

void Node::countSync(std::chrono::steady_clock::time_point start) {
  auto us = uint64_t(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
  fsyncs_.add(us);
  lastSyncSlow_ = us > options_.tickMs * 1000;
}

void Node::lazySync() {
  if (stopping_ || deferred_ == deferredSyncing_) return;  // a sync started since covers them
  deferredSyncing_ = deferred_;
  uint64_t covers = deferred_;
  Term term = core_->term();
  Index last = log_->lastIndex();  // every entry written so far: the sync covers them all
  auto start = std::chrono::steady_clock::now();
  tasks_->add(waitDurable(segmented_->syncAsync()).then([this, covers, term, last, start]() {
    if (stopping_) return;
    countSync(start);
    deferredSynced_ = std::max(deferredSynced_, covers);
    core_->persisted(term, last);  // ignored if this node no longer leads in `term`
    kick();
  }));
}

void Node::finishReady(bool durable) {
  if (syncing_) {
    syncing_ = false;
    deferredSynced_ = deferred_;  // none is deferred while a sync is in flight
    countSync(syncStart_);
  }
  const Ready& rd = current_;
  for (const Message& m : rd.messagesAfterPersist) send(m);
  if (rd.committedAfterWrite) applyCommitted(rd.committed);  // else applied in process()
  for (const ReadState& rs : rd.readStates) {
    auto it = reads_.find(rs.context);
    if (it != reads_.end()) {
      it->second.index = rs.index;
      it->second.ready = true;
    }
  }
  core_->advance(durable);
  current_ = Ready{};
  serveReads();
  maybeCompact(false);
  if (stopping_) return;
  kick();
  releaseHeldSoon();  // a peer's call held for what this write would produce has had it
}

void Node::applyCommitted(std::span<const Entry> committed) {
  for (const Entry& e : committed) {
    std::string result;
    if (e.type == EntryType::Normal && !e.data.empty()) {
      result = sm_.apply(e.index, e.data.view());
    }
    applied_ = e.index.value;
    appliedBytes_ += e.data.size();
    auto it = waiters_.find(e.index.value);
    if (it != waiters_.end()) {
      ProposeOutcome out;
      if (it->second.term == e.term) {
        out.result = std::move(result);
        commits_.add(uint64_t((timer_.now() - it->second.proposed) / kj::MICROSECONDS));
      } else {
        // Our entry was replaced by another leader's: it was never applied (§5.3).
        out.status = wire::Status::UNKNOWN_OUTCOME;
        out.leader = core_->leader();
      }
      it->second.fulfiller->fulfill(kj::mv(out));
      waiters_.erase(it);
    }
  }
  // Waiters below the applied index whose entries vanished in a snapshot install.
  while (!waiters_.empty() && waiters_.begin()->first <= applied_) {
    ProposeOutcome out;
    out.status = wire::Status::UNKNOWN_OUTCOME;
    waiters_.begin()->second.fulfiller->fulfill(kj::mv(out));
    waiters_.erase(waiters_.begin());
  }
}

void Node::serveReads() {
  for (auto it = reads_.begin(); it != reads_.end();) {
    ReadWaiter& r = it->second;
    if (r.ready && r.index.value <= applied_) {
      readsServed_ += r.queries.size();
      r.fulfiller->fulfill(answer(r.queries));
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
}

void Node::maybeCompact(bool force) {
  if (force) snapshotting_ = nullptr;  // `keel snapshot`: one of the state as it is now
  if (snapshotting_) return;
  // Called after every Ready: the counters decide before any metadata (and its membership) is
  // copied.
  uint64_t have = log_->firstIndex().value - 1;  // the index of the log's snapshot
  if (applied_ <= have) return;
  // Entries applied while this node's own write was in flight (Consensus::applicable()) may not
  // have reached its log yet: the snapshot waits for the Ready that hands them to it.
  if (applied_ > log_->lastIndex().value) return;
  if (!force) {
    if (applied_ - have < options_.snapshotEntries) return;
    // diss. §5.1: snapshotting costs the whole state each time, so wait until the log since the
    // last snapshot is a multiple of that snapshot's size; the cost per entry applied then
    // stays bounded however large the state grows.
    if (double(appliedBytes_) < options_.snapshotLogRatio * double(snapshotBytes_)) return;
  }
  SnapshotMeta meta = core_->snapshotMeta();
  if (meta.index.value != applied_) return;  // the state machine must be exactly at meta.index
  auto started = std::chrono::steady_clock::now();
  // The state grew by at most about what was applied since the last snapshot.
  auto s = std::make_unique<SnapshotInProgress>(meta, size_t(snapshotBytes_ + appliedBytes_ + (1 << 20)), started);
  appliedBytes_ = 0;  // from now on: what the next snapshot will have to outgrow
  if (!force) s->job = sm_.beginSnapshot(s->sink);
  if (!s->job) {
    sm_.snapshot(s->sink);
    finishSnapshot(Snapshot{meta, s->sink.take()}, started, 1);
    return;
  }
  snapshotting_ = std::move(s);
  ++snapshotJobs_;
  continueSnapshot();
}

void Node::continueSnapshot() {
  // About 1 ms of work per slice here (a large state costs some 5 ms per MiB, most of it
  // cache misses in the machine's tree).
  constexpr size_t kSliceBytes = 256 << 10;
  SnapshotInProgress& s = *snapshotting_;
  ++s.slices;
  if (!s.job->step(kSliceBytes)) {
    // The next slice once the loop has looked at its sockets again (a timer fires only then).
    tasks_->add(timer_.afterDelay(0 * kj::MILLISECONDS).then([this, job = snapshotJobs_]() {
      if (snapshotting_ && job == snapshotJobs_ && !stopping_) continueSnapshot();
    }));
    return;
  }
  std::unique_ptr<SnapshotInProgress> done = std::move(snapshotting_);
  done->job = nullptr;
  finishSnapshot(Snapshot{done->meta, done->sink.take()}, done->started, done->slices);
}

void Node::finishSnapshot(Snapshot snap, std::chrono::steady_clock::time_point started, uint64_t slices) {
  log_->compact(snap);
  snapshotBytes_ = snap.data.size();
  releaseFreeMemory();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  log("snapshot at " + toString(snap.meta.index) + " (" + std::to_string(snap.data.size()) + " bytes, " +
      std::to_string(ms.count()) + " ms in " + std::to_string(slices) + (slices == 1 ? " slice" : " slices") +
      "); log now " + toString(log_->firstIndex()) + ".." + toString(log_->lastIndex()));
}

void Node::releaseFreeMemory() {
  // A snapshot's chunks and bytes are freed in the middle of the heap, among the state
  // machine's records: give their pages back rather than keep a snapshot's worth of free
  // memory resident. keel-server links jemalloc (apps/CMakeLists.txt), whose arenas
  // malloc_trim does not touch: purge them through mallctl when it is there.
  if (mallctl) {
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // 4096: MALLCTL_ARENAS_ALL
    return;
  }
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

kj::Promise<uint64_t> Node::takeSnapshot() {
  maybeCompact(true);
  uint64_t index = log_->snapshotMeta().index.value;
  if (!segmented_) return index;
  // The log writes the snapshot on its I/O thread; a batch closed after it is durable once the
  // snapshot is. (waitDurable() serves the Ready loop alone, so this polls.)
  struct Poll {
    static kj::Promise<uint64_t> wait(Node& n, uint64_t seq, uint64_t index) {
      if (n.stopping_ || n.segmented_->durableSeq() >= seq) return index;
      return n.timer_.afterDelay(2 * kj::MILLISECONDS).then([&n, seq, index]() { return wait(n, seq, index); });
    }
  };
  return Poll::wait(*this, segmented_->syncAsync(), index);
}

kj::Promise<void> Node::tickLoop() {
  // One tick per --tick-ms at the earliest: a follower whose loop was late only ticks later
  // (its election timeout grows, which is safe). With lease reads a leader's next tick is due
  // one tick length after the moment its latest tick stands for, and it catches up on the ticks
  // it missed (catchUpTicks()).
  auto tick = options_.tickMs * kj::MILLISECONDS;
  auto delay = tick;
  if (options_.readMode == ReadMode::Lease && core_->role() == Role::Leader) {
    auto since = clockNow() - lastTick_;
    delay = since >= tick ? 0 * kj::MILLISECONDS : tick - since;
  }
  auto due = kj::systemPreciseMonotonicClock().now() + realDuration(delay);
  return timer_.afterDelay(realDuration(delay)).then([this, due]() -> kj::Promise<void> {
    if (stopping_) return kj::READY_NOW;
    warnIfLate(due);
    // --unsafe-test-ack-before-persist: the only syncs, about every 2 s.
    if (options_.unsafeTestAckBeforePersist && segmented_ &&
        ++unsafeTestTicks_ % std::max<uint64_t>(1, 2000 / options_.tickMs) == 0) {
      unsafeTestLazySync();
    }
    if (options_.readMode == ReadMode::Lease && core_->role() == Role::Leader) {
      catchUpTicks();
    } else {
      core_->tick();
      ++ticks_;
      lastTick_ = clockNow();
    }
    expireRequests();
    checkPeers();
    kick();
    // A snapshot's bytes, held until the log has written them, go as soon as it has.
    if (segmented_ && segmented_->releaseWritten()) releaseFreeMemory();
    return tickLoop();
  });
}

void Node::warnIfLate(kj::TimePoint due) {
  // A loop that runs late delays heartbeats and votes: worth a line (at most one per 5 s) once
  // it is half an election timeout late, the point at which followers start to campaign.
  auto now = kj::systemPreciseMonotonicClock().now();
  int64_t lateMs = (now - due) / kj::MILLISECONDS;  // the timer may fire a little early: negative
  int64_t electionMs = int64_t(options_.electionTicks) * int64_t(options_.tickMs);
  if (lateMs < std::max<int64_t>(100, electionMs / 2) || now - lastLateWarning_ < 5 * kj::SECONDS) return;
  lastLateWarning_ = now;
  log("the event loop ran " + std::to_string(lateMs) + " ms late (election timeout " + std::to_string(electionMs) +
      " ms): the machine is overloaded or a step took too long");
}

kj::TimePoint Node::clockNow() const {
  kj::TimePoint now = kj::systemPreciseMonotonicClock().now();
  if (options_.unsafeTestClockRate == 1.0) return now;
  auto elapsed = double((now - clockStart_) / kj::NANOSECONDS) * options_.unsafeTestClockRate;
  return clockStart_ + int64_t(elapsed) * kj::NANOSECONDS;
}

kj::Duration Node::realDuration(kj::Duration d) const {
  if (options_.unsafeTestClockRate == 1.0) return d;
  return int64_t(double(d / kj::NANOSECONDS) / options_.unsafeTestClockRate) * kj::NANOSECONDS;
}

void Node::catchUpTicks() {
  if (options_.readMode != ReadMode::Lease) return;
  auto tick = options_.tickMs * kj::MILLISECONDS;
  auto now = clockNow();
  // A leader counts every tick length that passed; once it stepped down, the rest is skipped
  // (a follower's late ticks are only late).
  while (core_->role() == Role::Leader && now - lastTick_ >= tick) {
    core_->tick();
    ++ticks_;
    lastTick_ += tick;
  }
}

void Node::unsafeTestLazySync() {
  // --unsafe-test-ack-before-persist: entries first, then the hard state that refers to them.
  segmented_->syncAsync();
  if (unsafeTestHardState_) {
    log_->setHardState(*unsafeTestHardState_);
    unsafeTestHardState_.reset();
    segmented_->syncAsync();
  }
}

// ---- Client operations ----

kj::TimePoint Node::deadline(uint32_t timeoutMs) const {
  return timer_.now() + (timeoutMs ? timeoutMs : options_.requestTimeoutMs) * kj::MILLISECONDS;
}

void Node::expireRequests() {
  kj::TimePoint now = timer_.now();
  auto expire = [now](auto& waiting) {
    for (auto it = waiting.begin(); it != waiting.end();) {
      if (it->second.deadline <= now) {
        it->second.fail(ProposeOutcome{wire::Status::TIMEOUT, "", NodeId{}});
        it = waiting.erase(it);
      } else {
        ++it;
      }
    }
  };
  expire(waiters_);
  expire(reads_);
}

kj::Promise<Node::ProposeOutcome> Node::propose(kj::Array<kj::byte> command, uint32_t timeoutMs) {
  if (stopping_) return ProposeOutcome{wire::Status::UNAVAILABLE, "", NodeId{}};
  if (core_->role() != Role::Leader) return forward(kj::mv(command), timeoutMs);
  Bytes data(command.begin(), command.size());
  if (stamper_) stamper_(data.mutableData(), data.size(), wallMs());
  Result r = core_->propose(std::move(data));
  if (!r.ok()) return ProposeOutcome{toWire(r.refusal), "", r.leader};
  ++proposals_;
  auto paf = kj::newPromiseAndFulfiller<ProposeOutcome>();
  waiters_[r.index.value] = Waiter{r.index, r.term, deadline(timeoutMs), kj::mv(paf.fulfiller), timer_.now()};
  kick();
  return kj::mv(paf.promise);
}

kj::Promise<Node::ProposeOutcome> Node::query(kj::Array<kj::byte> q, bool linearizable, uint32_t timeoutMs) {
  if (!linearizable) return answer(q);
  std::vector<kj::Array<kj::byte>> one;
  one.push_back(kj::mv(q));
  return queryMany(kj::mv(one), timeoutMs).then([](std::vector<ProposeOutcome> outs) { return kj::mv(outs[0]); });
}

kj::Promise<std::vector<Node::ProposeOutcome>> Node::queryMany(std::vector<kj::Array<kj::byte>> queries,
                                                              uint32_t timeoutMs) {
  auto paf = kj::newPromiseAndFulfiller<std::vector<ProposeOutcome>>();
  ReadWaiter w{kj::mv(queries), deadline(timeoutMs), Index{}, false, kj::mv(paf.fulfiller)};
  if (options_.unsafeTestStaleReads) {
    w.fulfiller->fulfill(answer(w.queries));  // tests only: served locally, without ReadIndex
    return kj::mv(paf.promise);
  }
  if (stopping_) {
    w.fail(ProposeOutcome{wire::Status::UNAVAILABLE, "", NodeId{}});
    return kj::mv(paf.promise);
  }
  catchUpTicks();  // lease reads: the lease is measured in ticks that must be up to date
  uint64_t ctx = nextRead_++;
  Result r = core_->readIndex(ctx);
  if (!r.ok()) {
    ProposeOutcome out{toWire(r.refusal), "", r.leader};
    if (r.refusal == Refusal::NotLeader && !r.leader) out.status = wire::Status::UNAVAILABLE;
    w.fail(out);
    return kj::mv(paf.promise);
  }
  reads_.emplace(ctx, kj::mv(w));
  kick();
  return kj::mv(paf.promise);
}

Node::ProposeOutcome Node::answer(kj::ArrayPtr<const kj::byte> query) {
  ProposeOutcome out;
  out.result = sm_.query(std::string_view(reinterpret_cast<const char*>(query.begin()), query.size()));
  return out;
}

std::vector<Node::ProposeOutcome> Node::answer(const std::vector<kj::Array<kj::byte>>& queries) {
  std::vector<ProposeOutcome> outs;
  outs.reserve(queries.size());
  for (const auto& q : queries) outs.push_back(answer(q));
  return outs;
}

kj::Promise<Node::ProposeOutcome> Node::changeMembership(wire::ChangeKind kind, NodeId node,
                                                         std::string address, uint32_t timeoutMs) {
  if (core_->role() != Role::Leader) {
    return ProposeOutcome{core_->leader() ? wire::Status::NOT_LEADER : wire::Status::UNAVAILABLE, "",
                          core_->leader()};
  }
  if (!address.empty()) {
    addresses_[node] = address;
    connectNow(node);
  }
  MembershipChange c;
  c.node = node;
  c.kind = kind == wire::ChangeKind::ADD_LEARNER ? MembershipChange::Kind::AddLearner
           : kind == wire::ChangeKind::ADD_VOTER ? MembershipChange::Kind::AddVoter
                                                 : MembershipChange::Kind::Remove;
  Result r = core_->proposeMembership(std::span<const MembershipChange>(&c, 1));
  if (!r.ok()) return ProposeOutcome{toWire(r.refusal), "", r.leader};
  log("membership change proposed at " + toString(r.index) + ": " +
      (c.kind == MembershipChange::Kind::Remove ? "remove n" : "add n") + std::to_string(node.value));
  auto paf = kj::newPromiseAndFulfiller<ProposeOutcome>();
  waiters_[r.index.value] = Waiter{r.index, r.term, deadline(timeoutMs), kj::mv(paf.fulfiller), timer_.now()};
  kick();
  return kj::mv(paf.promise);
}

kj::Promise<Node::ProposeOutcome> Node::transferLeadership(NodeId to, uint32_t timeoutMs) {
  if (core_->role() != Role::Leader) {
    return ProposeOutcome{core_->leader() ? wire::Status::NOT_LEADER : wire::Status::UNAVAILABLE, "",
                          core_->leader()};
  }
  if (!to) {
    // The most up-to-date follower.
    Index best;
    for (NodeId id : core_->membership().voters) {
      if (id == core_->id()) continue;
      auto p = core_->progress(id);
      if (p && (!to || p->match > best)) { to = id; best = p->match; }
    }
    if (!to) return ProposeOutcome{wire::Status::UNKNOWN_NODE, "", core_->leader()};
  }
  Result r = core_->transferLeadership(to);
  if (!r.ok()) return ProposeOutcome{toWire(r.refusal), "", r.leader};
  kick();
  if (timeoutMs == 0) timeoutMs = options_.requestTimeoutMs;
  auto deadline = timer_.now() + timeoutMs * kj::MILLISECONDS;
  // Poll every tick until the target leads (or the deadline passes).
  struct Loop {
    static kj::Promise<ProposeOutcome> wait(Node& n, NodeId to, kj::TimePoint deadline) {
      if (n.core_->leader() == to) return ProposeOutcome{wire::Status::OK, "", to};
      if (n.timer_.now() >= deadline) return ProposeOutcome{wire::Status::TIMEOUT, "", n.core_->leader()};
      return n.timer_.afterDelay(n.options_.tickMs * kj::MILLISECONDS).then([&n, to, deadline]() {
        return wait(n, to, deadline);
      });
    }
  };
  return Loop::wait(*this, to, deadline);
}

// ---- Run and stop ----

kj::Promise<void> Node::run() {
  auto paf = kj::newPromiseAndFulfiller<void>();
  stopped_ = kj::mv(paf.fulfiller);
  bootstrap_ = makeService(*this);
  std::string host;
  uint16_t port;
  splitAddress(options_.listen, host, port);
  // A listen failure (address in use) rejects the returned promise: the process ends.
  auto listening = io_.provider->getNetwork().parseAddress(host, port).then(
      [this](kj::Own<kj::NetworkAddress> addr) {
        listener_ = addr->listen();
        log("listening on " + options_.listen + " (cluster " + options_.clusterId + ")");
        tasks_->add(acceptLoop(*listener_));
      });
  return listening.then([this, stopped = kj::mv(paf.promise)]() mutable {
    if (!options_.http.empty()) {
      httpTask_ = serveHttp().eagerlyEvaluate([this](kj::Exception&& e) {
        log(std::string("HTTP server stopped: ") + e.getDescription().cStr());
      });
    }
    lastTick_ = clockNow();
    tasks_->add(tickLoop());
    // Connect to every known peer up front, so the first heartbeats find their connections.
    for (auto& [id, addr] : addresses_) {
      if (id != core_->id()) peer(id);
    }
    kick();
    return kj::mv(stopped);
  });
}

void Node::shutdown() {
  if (stopping_) return;
  log("stopping");
  stopping_ = true;
  for (auto& [i, w] : waiters_) w.fail(ProposeOutcome{wire::Status::UNAVAILABLE, "", NodeId{}});
  waiters_.clear();
  for (auto& [i, r] : reads_) r.fail(ProposeOutcome{wire::Status::UNAVAILABLE, "", NodeId{}});
  reads_.clear();
  releaseHeld(true);  // peers' calls get their returns rather than a dropped connection
  auto finish = [this]() {
    // The last write becomes durable before the process ends.
    if (options_.unsafeTestAckBeforePersist && segmented_) unsafeTestLazySync();
    if (segmented_) segmented_->sync();
    listener_ = nullptr;
    httpTask_ = nullptr;
    httpServer_ = nullptr;
    httpListener_ = nullptr;
    if (stopped_) stopped_->fulfill();
  };
  if (syncing_ && segmented_) {
    // Let the sync in flight complete (finishReady sees stopping_ and does no more).
    segmented_->sync();
  }
  finish();
}

}  // namespace keel::server
