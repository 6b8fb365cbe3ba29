// keel: the peer transport. One outgoing Cap'n Proto connection per peer, reconnected with
// randomized exponential backoff; the accept loop for incoming connections. Requests to a peer
// go as `deliver` calls on our connection to it, in order; answers go in the return of one of
// its calls to us (repliesInReturn) when one is waiting: a follower's answer to a heartbeat or
// an append goes back in the return of the call that brought it, so a round trip is one call
// and its return on one connection, instead of a call each way on two, each with its return.
#include "node.h"

#include <keel/segmented-log.h>

#include <algorithm>
#include <ctime>
#include <functional>

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>

namespace keel::server {

namespace {
constexpr uint32_t kMaxInflightCalls = 64;    // deliver calls in flight per peer
constexpr size_t kMaxHeldReturns = 4;          // returns of a peer's calls held for replies
constexpr size_t kMaxQueuedMessages = 4096;   // beyond this, the oldest are dropped
constexpr uint32_t kBackoffMinMs = 50;
constexpr uint32_t kBackoffMaxMs = 2000;
// Snapshot streaming: chunks of at most 4 MiB (and a quarter of --max-message-bytes), up to
// 4 of them in flight.
constexpr size_t kSnapshotChunkBytes = 4 << 20;
constexpr uint32_t kSnapshotWindow = 4;
}  // namespace

std::string Node::addressOf(NodeId id) const {
  auto it = addresses_.find(id);
  return it == addresses_.end() ? std::string() : it->second;
}

Node::Peer& Node::peer(NodeId id) {
  auto& slot = peers_[id];
  if (!slot) {
    slot = std::make_unique<Peer>();
    slot->id = id;
    connect(*slot);
  }
  return *slot;
}

void Node::connectNow(NodeId id) {
  auto it = peers_.find(id);
  if (it == peers_.end() || it->second->state != Peer::State::Backoff || stopping_) return;
  Peer& p = *it->second;
  ++p.generation;  // the pending retry is void
  p.backoffMs = 0;
  connect(p);
}

void Node::connect(Peer& p) {
  if (stopping_) return;
  std::string addr = addressOf(p.id);
  std::string host;
  uint16_t port;
  if (addr.empty() || !splitAddress(addr, host, port)) {
    // No address yet (a member we have not heard from): try again later.
    p.state = Peer::State::Backoff;
    uint64_t gen = p.generation;
    tasks_->add(timer_.afterDelay(kBackoffMaxMs * kj::MILLISECONDS).then([this, &p, gen]() {
      if (gen == p.generation) connect(p);
    }));
    return;
  }
  p.state = Peer::State::Connecting;
  uint64_t gen = ++p.generation;
  // A peer behind a partition that drops packets never answers the SYN: give up after the
  // peer timeout and try again (the kernel's own retries back off to minutes).
  auto timeout = timer_.afterDelay(peerTimeoutMs() * kj::MILLISECONDS).then([]() -> kj::Own<kj::AsyncIoStream> {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "connect timed out"));
  });
  // The timeout bounds the TLS handshake (--tls-*) too.
  tasks_->add(net::connect(io_.provider->getNetwork(), host, port, tls_.get())
                 .exclusiveJoin(kj::mv(timeout))
                 .then(
                     [this, &p, gen](kj::Own<kj::AsyncIoStream> stream) {
                       if (gen != p.generation || stopping_) return;
                       p.stream = net::buffered(kj::mv(stream));
                       p.network = kj::heap<capnp::TwoPartyVatNetwork>(
                           *p.stream, capnp::rpc::twoparty::Side::CLIENT, readerOptions());
                       p.rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
                           capnp::makeRpcClient(*p.network));
                       capnp::word scratch[4];
                       memset(scratch, 0, sizeof(scratch));
                       capnp::MallocMessageBuilder message(scratch);
                       auto vatId = message.getRoot<capnp::rpc::twoparty::VatId>();
                       vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
                       p.cap = p.rpc->bootstrap(vatId).castAs<wire::Node>();
                       p.state = Peer::State::Connected;
                       p.backoffMs = 0;
                       p.inflight = 0;
                       log("connected to n" + std::to_string(p.id.value) + " at " + addressOf(p.id));
                       introduce(p);
                       tasks_->add(p.network->onDisconnect().then([this, &p, gen]() {
                         if (gen == p.generation) disconnected(p, KJ_EXCEPTION(DISCONNECTED, "peer went away"));
                       }));
                       flush(p);
                     },
                     [this, &p, gen](kj::Exception&& e) {
                       if (gen == p.generation) disconnected(p, e);
                     }));
}

void Node::disconnected(Peer& p, const kj::Exception& e) {
  if (p.state == Peer::State::Connected) {
    log("lost connection to n" + std::to_string(p.id.value) + ": " + e.getDescription().cStr());
  }
  ++p.generation;
  p.release(*tasks_);
  p.queue.clear();  // Raft tolerates loss: the core resends what matters
  p.inflight = 0;
  p.snapshotInFlight = false;
  p.state = Peer::State::Backoff;
  if (stopping_) return;
  // Randomized exponential backoff: [0.5, 1.5) x min(max, min * 2^attempts).
  p.backoffMs = p.backoffMs ? std::min(kBackoffMaxMs, p.backoffMs * 2) : kBackoffMinMs;
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  auto delay = uint64_t(p.backoffMs * jitter(rng_));
  uint64_t gen = p.generation;
  tasks_->add(timer_.afterDelay(delay * kj::MILLISECONDS).then([this, &p, gen]() {
    if (gen == p.generation) connect(p);
  }));
}

void Node::fillOrigin(wire::Origin::Builder origin, const Peer& p) const {
  origin.setClusterId(options_.clusterId);
  origin.setFrom(options_.id);
  origin.setFromAddress(options_.listen);
  origin.setTo(p.id.value);
}

uint64_t Node::peerTimeoutMs() const {
  // Two of the longest election timeouts (2 x electionTicks ticks), at least a second.
  return std::max<uint64_t>(1000, 4ull * options_.electionTicks * options_.tickMs);
}

// A peer answers every deliver call as soon as it has stepped the messages, or, when the call
// asked for answers in its return, within about two ticks (holdReturn), so calls unanswered for
// the peer timeout mean a dead path: a partition that drops
// packets (TCP retransmits with a backoff that reaches minutes) or a paused process. A new
// connection finds out at once whether the path works again.
//
// A connection idle for a second carries an introduction: a deliver call with no messages,
// whose origin tells the peer this node's address. Members added while the cluster runs are
// in no one's --peers; without this, a leader elected after a learner was added (by another
// leader) might never learn where the learner is, since a learner only talks to its leader.
void Node::checkPeers() {
  releaseHeld(false);
  kj::TimePoint now = timer_.now();
  for (auto& [id, pp] : peers_) {
    Peer& p = *pp;
    if (p.state != Peer::State::Connected) continue;
    if (p.inflight > 0 && now - p.lastAnswer > peerTimeoutMs() * kj::MILLISECONDS) {
      disconnected(p, kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                                    kj::str("no answer for ", peerTimeoutMs(), " ms")));
    } else if (p.inflight == 0 && now - p.lastCall >= 1 * kj::SECONDS) {
      introduce(p);
    }
  }
}

void Node::introduce(Peer& p) {
  if (p.state != Peer::State::Connected || !p.queue.empty()) return;  // a real call will carry it
  KJ_IF_MAYBE(cap, p.cap) {
    auto req = cap->deliverRequest(capnp::MessageSize{32, 0});
    fillOrigin(req.initOrigin(), p);
    req.initMessages(0);
    if (p.inflight++ == 0) p.lastAnswer = timer_.now();
    p.lastCall = timer_.now();
    uint64_t gen = p.generation;
    tasks_->add(req.send().then(
        [this, &p, gen](capnp::Response<wire::Peer::DeliverResults>&&) {
          if (gen != p.generation) return;
          --p.inflight;
          p.lastAnswer = timer_.now();
          flush(p);
        },
        [this, &p, gen](kj::Exception&& e) {
          if (gen == p.generation) disconnected(p, e);
        }));
  }
}

// Only a call that brings a request (expectsAnswer) is held. Holding a return costs the caller
// one call in flight (of kMaxInflightCalls), so a node holds at most kMaxHeldReturns per peer,
// the latest: a newer call lets the oldest go. A held return is let go empty when this node has
// nothing more to say soon: at the end of an event-loop turn in which no write of its own is in
// progress (a write in progress ends with the answers that waited for it, finishReady), and in
// any case once it is a tick old (checkPeers, every tick: at most about two ticks).
kj::Promise<std::vector<Message>> Node::holdReturn(NodeId from) {
  Peer& p = peer(from);
  while (p.held.size() >= kMaxHeldReturns) {
    p.held.front().fulfiller->fulfill({});
    p.held.pop_front();
  }
  auto paf = kj::newPromiseAndFulfiller<std::vector<Message>>();
  p.held.push_back({kj::mv(paf.fulfiller), timer_.now()});
  if (!p.queue.empty()) flush(p);  // messages already waiting for a way out
  releaseHeldSoon();
  return kj::mv(paf.promise);
}

void Node::releaseHeldSoon() {
  if (releaseScheduled_ || stopping_) return;
  releaseScheduled_ = true;
  // After every evalLater() of this turn: the Ready loop and the flushes it schedules. A
  // follower's Ready loop is itself an evalLast() (kick()), queued before this one and so run
  // after it: while it is pending, the returns wait for it (finishReady() or an empty Ready
  // calls this again).
  tasks_->add(kj::evalLast([this]() {
    releaseScheduled_ = false;
    if (!syncing_ && !scheduled_) releaseHeld(true);
  }));
}

void Node::releaseHeld(bool all) {
  kj::TimePoint now = timer_.now();
  for (auto& [id, pp] : peers_) {
    auto& held = pp->held;
    while (!held.empty() && (all || now - held.front().since >= options_.tickMs * kj::MILLISECONDS)) {
      held.front().fulfiller->fulfill({});
      held.pop_front();
    }
  }
}

void Node::send(const Message& m) {
  if (m.to == core_->id()) return;
  Peer& p = peer(m.to);
  if (m.type == MessageType::Snapshot) {
    sendSnapshot(p, m);
    return;
  }
  // Dropped, unless it can go in a held return: the core resends what matters.
  if (p.state != Peer::State::Connected && (p.held.empty() || !isAnswer(m.type))) return;
  p.queue.push_back(m);
  while (p.queue.size() > kMaxQueuedMessages) p.queue.pop_front();
  if (!p.flushScheduled) {
    p.flushScheduled = true;
    tasks_->add(kj::evalLater([this, &p]() {
      p.flushScheduled = false;
      flush(p);
    }));
  }
}

void Node::flush(Peer& p) {
  // Answers go in the returns of the peer's calls waiting for them, oldest first; everything
  // else (and answers no return is waiting for) goes in calls, in order. Each call or return
  // carries as many messages as fit in half the message limit.
  const uint64_t limit = options_.maxMessageBytes / 2;
  while (!p.held.empty()) {
    if (!p.held.front().fulfiller->isWaiting()) {  // its call was cancelled (the connection is gone)
      p.held.pop_front();
      continue;
    }
    std::vector<Message> batch;
    uint64_t bytes = 0;
    for (auto it = p.queue.begin(); it != p.queue.end();) {
      if (!isAnswer(it->type)) {
        ++it;
        continue;
      }
      if (!batch.empty() && bytes + wireBytes(*it) > limit) break;
      bytes += wireBytes(*it);
      batch.push_back(std::move(*it));
      it = p.queue.erase(it);
    }
    if (batch.empty()) break;
    messagesInReturns_ += batch.size();
    p.held.front().fulfiller->fulfill(kj::mv(batch));
    p.held.pop_front();
  }
  if (p.state != Peer::State::Connected) {
    p.queue.clear();  // no way out now; Raft resends what matters
    return;
  }
  while (!p.queue.empty() && p.inflight < kMaxInflightCalls) {
    KJ_IF_MAYBE(cap, p.cap) {
      size_t n = 0;
      uint64_t bytes = 0, words = 64;
      for (; n < p.queue.size(); ++n) {
        if (n > 0 && bytes + wireBytes(p.queue[n]) > limit) break;
        bytes += wireBytes(p.queue[n]);
        words += wireWords(p.queue[n]);
      }
      auto req = cap->deliverRequest(capnp::MessageSize{words, 0});
      fillOrigin(req.initOrigin(), p);
      req.setRepliesInReturn(true);
      auto list = req.initMessages(n);
      for (size_t i = 0; i < n; ++i) toWire(p.queue[i], list[i]);
      p.queue.erase(p.queue.begin(), p.queue.begin() + n);
      if (p.inflight++ == 0) p.lastAnswer = timer_.now();
      p.lastCall = timer_.now();
      messagesInCalls_ += n;
      uint64_t gen = p.generation;
      tasks_->add(req.send().then(
          [this, &p, gen](capnp::Response<wire::Peer::DeliverResults>&& resp) {
            if (gen != p.generation) return;
            --p.inflight;
            p.lastAnswer = timer_.now();
            if (resp.hasMessages() && !stopping_) stepFrom(p.id, resp.getMessages());
            if (resp.getRefusal().size() > 0) {
              auto now = std::chrono::steady_clock::now();
              auto& last = lastRefusalLog_[p.id];
              if (now - last > std::chrono::seconds(5)) {
                last = now;
                log("n" + std::to_string(p.id.value) + " refused our messages: " + resp.getRefusal().cStr());
              }
            }
            flush(p);
          },
          [this, &p, gen](kj::Exception&& e) {
            if (gen == p.generation) disconnected(p, e);
          }));
    } else {
      return;
    }
  }
}

namespace {

// The bytes of a snapshot held in memory (the memory log's snapshots travel in the message).
class BytesSnapshotReader final : public SegmentedLog::SnapshotReader {
 public:
  explicit BytesSnapshotReader(const Snapshot& s) : meta_(s.meta), data_(s.data) {}
  const SnapshotMeta& meta() const override { return meta_; }
  uint64_t size() const override { return data_.size(); }
  void readInto(uint64_t offset, uint8_t* out, uint64_t n) const override {
    KJ_REQUIRE(offset <= data_.size() && n <= data_.size() - offset);
    if (n) memcpy(out, data_.data() + offset, n);
  }

 private:
  SnapshotMeta meta_;
  Bytes data_;
};

// Streams one snapshot into a peer's sink: up to kSnapshotWindow chunks in flight, each read
// from the source straight into its call's message (one copy).
struct SnapshotStream {
  wire::SnapshotSink::Client sink;
  std::shared_ptr<const SegmentedLog::SnapshotReader> src;
  size_t chunkBytes;
  std::function<bool()> wanted;  // false once the sender is no longer the leader it was
  uint64_t next = 0;
  uint32_t inflight = 0;
  bool failed = false;
  kj::Own<kj::PromiseFulfiller<void>> done;

  SnapshotStream(wire::SnapshotSink::Client s, std::shared_ptr<const SegmentedLog::SnapshotReader> r, size_t c,
                 std::function<bool()> w)
      : sink(kj::mv(s)), src(kj::mv(r)), chunkBytes(c), wanted(kj::mv(w)) {}

  static void pump(std::shared_ptr<SnapshotStream> t, kj::TaskSet& tasks) {
    if (!t->failed && t->next < t->src->size() && !t->wanted()) {
      // A deposed leader's stream would only compete with the new leader's (the receiver keeps
      // one receive, the latest).
      t->fail(KJ_EXCEPTION(FAILED, "no longer the leader that began sending the snapshot"));
      return;
    }
    while (!t->failed && t->inflight < kSnapshotWindow && t->next < t->src->size()) {
      size_t n = size_t(std::min<uint64_t>(t->chunkBytes, t->src->size() - t->next));
      auto w = t->sink.writeRequest(capnp::MessageSize{n / 8 + 16, 0});
      auto chunk = w.initChunk(n);
      try {
        t->src->readInto(t->next, chunk.begin(), n);
      } catch (const std::exception& e) {
        t->fail(KJ_EXCEPTION(FAILED, "reading the snapshot failed", e.what()));
        return;
      }
      t->next += n;
      ++t->inflight;
      tasks.add(w.send().then(
          [t, &tasks]() {
            --t->inflight;
            pump(t, tasks);
          },
          [t](kj::Exception&& e) { t->fail(kj::mv(e)); }));
    }
    if (!t->failed && t->inflight == 0 && t->next >= t->src->size() && t->done) {
      t->done->fulfill();
      t->done = nullptr;
    }
  }
  void fail(kj::Exception&& e) {
    if (failed) return;
    failed = true;
    if (done) done->reject(kj::mv(e));
    done = nullptr;
  }
};

}  // namespace

void Node::sendSnapshot(Peer& p, const Message& m) {
  if (p.state != Peer::State::Connected || p.snapshotInFlight || !m.snapshot) return;
  KJ_IF_MAYBE(cap, p.cap) {
    // The bytes come from a stable reader of the log's latest snapshot (the core's message has
    // the metadata only, see CoreLogView); it may be newer than the one the core saw, and then
    // its metadata goes with it. The memory log's snapshots travel in the message.
    std::shared_ptr<const SegmentedLog::SnapshotReader> src;
    if (segmented_) src = segmented_->snapshotReader();
    else src = std::make_shared<BytesSnapshotReader>(*m.snapshot);
    Message msg = m;
    msg.snapshot = std::make_shared<Snapshot>(Snapshot{src->meta(), Bytes()});
    p.snapshotInFlight = true;
    auto req = cap->installSnapshotRequest();
    fillOrigin(req.initOrigin(), p);
    toWire(msg, req.initMessage());
    req.setSize(src->size());
    log("sending snapshot at " + toString(src->meta().index) + " (" + std::to_string(src->size()) +
        " bytes) to n" + std::to_string(p.id.value));
    uint64_t gen = p.generation;
    // Chunks well inside the message limit (a chunk is one call).
    size_t chunkBytes = size_t(std::clamp<uint64_t>(options_.maxMessageBytes / 4, 512, kSnapshotChunkBytes));
    auto start = std::chrono::steady_clock::now();
    auto wanted = [this, term = core_->term()]() { return core_->role() == Role::Leader && core_->term() == term; };
    tasks_->add(req.send()
                   .then([this, src, chunkBytes, wanted](capnp::Response<wire::Peer::InstallSnapshotResults>&& resp)
                             -> kj::Promise<bool> {
                     if (resp.getRefusal().size() > 0) return false;
                     auto sink = resp.getSink();
                     auto t = std::make_shared<SnapshotStream>(sink, src, chunkBytes, wanted);
                     auto paf = kj::newPromiseAndFulfiller<void>();
                     t->done = kj::mv(paf.fulfiller);
                     SnapshotStream::pump(t, *tasks_);
                     return paf.promise.then([sink]() mutable {
                       return sink.doneRequest().send().then(
                           [](capnp::Response<wire::SnapshotSink::DoneResults>&& r) { return r.getOk(); });
                     });
                   })
                   .then(
                       [this, &p, gen, src, start](bool ok) {
                         if (gen != p.generation) return;
                         p.snapshotInFlight = false;
                         core_->reportSnapshot(p.id, src->meta().index, ok);
                         kick();
                         if (!ok) {
                           log("n" + std::to_string(p.id.value) + " refused our snapshot");
                           return;
                         }
                         double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                         char rate[64];
                         snprintf(rate, sizeof rate, "%.2f s, %.1f MB/s", s, double(src->size()) / 1e6 / std::max(s, 1e-6));
                         log("sent snapshot at " + toString(src->meta().index) + " to n" + std::to_string(p.id.value) +
                             " (" + rate + ")");
                       },
                       [this, &p, gen, src](kj::Exception&& e) {
                         if (gen != p.generation) return;
                         // A lost connection is the connection's business; a stream that failed
                         // on its own (the receiver took a newer one, we were deposed) leaves
                         // the connection up, and the core sends the snapshot again if it must.
                         if (e.getType() == kj::Exception::Type::DISCONNECTED) return disconnected(p, e);
                         p.snapshotInFlight = false;
                         core_->reportSnapshot(p.id, src->meta().index, false);
                         kick();
                         log("sending the snapshot to n" + std::to_string(p.id.value) + " stopped: " +
                             e.getDescription().cStr());
                       }));
  }
}

kj::Promise<void> Node::acceptLoop(kj::ConnectionReceiver& listener) {
  return listener.accept().then([this, &listener](kj::Own<kj::AsyncIoStream> stream) {
    if (stopping_) return acceptLoop(listener);
    if (!tls_) {
      adopt(kj::mv(stream));
      return acceptLoop(listener);
    }
    tasks_->add(acceptTls(kj::mv(stream)).then([this](kj::Maybe<kj::Own<kj::AsyncIoStream>> s) {
      KJ_IF_MAYBE(t, s) {
        if (!stopping_) adopt(kj::mv(*t));
      }
    }));
    return acceptLoop(listener);
  });
}

kj::Promise<kj::Maybe<kj::Own<kj::AsyncIoStream>>> Node::acceptTls(kj::Own<kj::AsyncIoStream> stream) {
  // A connection that has not finished its handshake within the peer timeout is dropped: a
  // client that never speaks holds nothing for long.
  auto timeout = timer_.afterDelay(peerTimeoutMs() * kj::MILLISECONDS).then([]() -> kj::Own<kj::AsyncIoStream> {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "no TLS handshake within the peer timeout"));
  });
  return tls_->server(kj::mv(stream))
      .exclusiveJoin(kj::mv(timeout))
      .then([](kj::Own<kj::AsyncIoStream> s) -> kj::Maybe<kj::Own<kj::AsyncIoStream>> { return kj::mv(s); },
            [this](kj::Exception&& e) -> kj::Maybe<kj::Own<kj::AsyncIoStream>> {
              ++tlsRefused_;
              auto now = std::chrono::steady_clock::now();
              if (now - lastTlsRefusalLog_ > std::chrono::seconds(5)) {
                lastTlsRefusalLog_ = now;
                log(std::string("refused a connection: TLS: ") + e.getDescription().cStr());
              }
              return nullptr;
            });
}

void Node::reloadTls() {
  if (!tls_) {
    log("SIGHUP: no --tls-* files to read again");
    return;
  }
  std::string error;
  auto fresh = net::Tls::load(options_.tls, net::Tls::Role::Node, error);
  if (!fresh) {
    ++tlsReloadsFailed_;
    log("TLS files not reloaded (those read before stay in use): " + error);
    return;
  }
  retiredTls_.push_back(std::move(tls_));
  tls_ = std::move(fresh);
  ++tlsReloads_;
  char expires[32] = "?";
  std::time_t t = std::time_t(tls_->notAfter());
  std::tm tm{};
  if (gmtime_r(&t, &tm)) std::strftime(expires, sizeof expires, "%Y-%m-%d %H:%M:%S UTC", &tm);
  log(std::string("TLS files reloaded: new connections use them; the certificate expires ") + expires);
}

void Node::adopt(kj::Own<kj::AsyncIoStream> stream) {
  auto conn = kj::heap<Accepted>(kj::mv(stream), readerOptions(), bootstrap_, options_.maxMessageBytes * 4);
  Accepted* raw = conn.get();
  accepted_.push_back(kj::mv(conn));
  tasks_->add(raw->network.onDisconnect().then([this, raw]() {
    tasks_->add(kj::evalLater([this, raw]() {
      for (auto it = accepted_.begin(); it != accepted_.end(); ++it) {
        if (it->get() == raw) {
          accepted_.erase(it);
          break;
        }
      }
    }));
  }));
}

}  // namespace keel::server
