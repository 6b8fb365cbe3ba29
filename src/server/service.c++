// keel: the RPC service of a node (schema/raft.capnp's Node: the peer service and the client
// service), origin checks, forwarding to the leader, status.
#include "node.h"

#include <keel/segmented-log.h>

#include "restore-thread.h"

namespace keel::server {

namespace {

void fill(Node& node, wire::Redirect::Builder r, NodeId leader) {
  r.setLeader(leader.value);
  if (leader) r.setLeaderAddress(node.addressOf(leader));
}

// The size of a reply to propose/query: its result, a redirect with an address, the struct
// pointers. Sizing the first segment avoids the default 1024-word segment (8 KiB, zero-filled)
// per reply.
capnp::MessageSize replySize(size_t resultBytes) { return {resultBytes / 8 + 24, 0}; }

constexpr size_t kMaxBatchCalls = 1024;  // schema/client.capnp, Keel.batch

}  // namespace

// Receives a streamed snapshot (chunks arrive in order: calls on one capability are delivered
// in the order they were made) and hands it to the node once every byte arrived. With the
// durable log the bytes go to disk as they arrive (SegmentedLog::receiveSnapshot), through a
// bounded set of staging buffers, and come back as a mapping of the file; the memory log keeps
// them in one buffer. The state machine parses them as they arrive too (if it can), on a
// thread of its own (RestoreThread), so that installing the snapshot later costs little: a
// staging buffer is used again once both the log and the parse are done with it, and a write
// that finds them all in use waits (the stream's flow control then holds the sender back).
class SinkImpl final : public wire::SnapshotSink::Server {
 public:
  SinkImpl(Node& node, Message m, uint64_t size) : node_(node), message_(std::move(m)), size_(size) {
    node_.log("receiving snapshot at " + toString(message_.snapshot->meta.index) + " (" + std::to_string(size) +
              " bytes) from n" + std::to_string(message_.from.value) + " of term " + std::to_string(message_.term.value));
    if (node_.segmented_) receiver_ = node_.segmented_->receiveSnapshot(message_.snapshot->meta, size);
    else buffer_ = Bytes::uninitialized(size_);
    if (auto restore = node_.sm_.beginRestore()) parser_ = std::make_unique<RestoreThread>(std::move(restore));
  }
  kj::Promise<void> write(WriteContext context) override {
    auto chunk = context.getParams().getChunk();
    KJ_REQUIRE(!delivered_ && received_ + chunk.size() <= size_, "snapshot larger than announced");
    std::string_view bytes;
    Bytes holder;
    if (receiver_) {
      auto piece = receiver_->write(chunk.begin(), chunk.size());
      bytes = piece.bytes;
      holder = std::move(piece.holder);
    } else if (chunk.size()) {
      memcpy(buffer_.mutableData() + received_, chunk.begin(), chunk.size());
      bytes = std::string_view(reinterpret_cast<const char*>(buffer_.data()) + received_, chunk.size());
    }
    received_ += chunk.size();
    if (parser_ && !bytes.empty()) {
      parser_->arrived(bytes);
      // By where the piece ends in the stream: the parser is handed every byte, so parsed() counts alike.
      if (holder.size()) held_.emplace_back(received_, std::move(holder));
    }
    return room();
  }
  kj::Promise<void> done(DoneContext context) override {
    if (received_ != size_ || delivered_) {
      context.getResults().setOk(false);
      return kj::READY_NOW;
    }
    delivered_ = true;
    Bytes data = receiver_ ? receiver_->finish() : buffer_;
    kj::Promise<std::unique_ptr<SnapshotRestore>> parsed = nullptr;
    if (parser_) parsed = parser_->finish();
    else parsed = std::unique_ptr<SnapshotRestore>();
    return parsed.then([this, context, data = std::move(data)](std::unique_ptr<SnapshotRestore> restore) mutable {
      parser_ = nullptr;
      held_.clear();
      buffer_ = Bytes();
      // A restore that did not take the bytes is left out: restore() of the whole will judge them.
      node_.deliverSnapshot(std::move(message_), std::move(data), std::move(restore));
      context.getResults().setOk(true);
    });
  }

 private:
  // Resolves once the receiver has a staging buffer free, having let go of the pieces the parse
  // is done with: at once while the parse keeps up, else when it has caught up to within 64 MiB.
  kj::Promise<void> room() {
    while (parser_ && !held_.empty() && held_.front().first <= parser_->parsed()) held_.pop_front();
    if (!receiver_ || !receiver_->backlogged()) return kj::READY_NOW;
    return node_.timer_.afterDelay(1 * kj::MILLISECONDS).then([this] { return room(); });
  }

  Node& node_;
  Message message_;
  uint64_t size_;
  uint64_t received_ = 0;
  std::unique_ptr<SegmentedLog::SnapshotReceiver> receiver_;
  Bytes buffer_;  // with the memory log: where the bytes land
  std::deque<std::pair<uint64_t, Bytes>> held_;  // staging pieces the parser reads, by their end
  // Declared after what it reads: destroyed (its thread stopped) first.
  std::unique_ptr<RestoreThread> parser_;
  bool delivered_ = false;
};

class Service final : public wire::Node::Server {
 public:
  explicit Service(Node& node) : node_(node) {}

  kj::Promise<void> deliver(DeliverContext context) override {
    auto params = context.getParams();
    NodeId from{params.getOrigin().getFrom()};
    bool replies = params.getRepliesInReturn();
    bool asks = false;
    std::string refusal = node_.deliver(params.getOrigin(), params.getMessages(), &asks);
    if (!refusal.empty()) {
      context.initResults(capnp::MessageSize{refusal.size() / 8 + 8, 0}).setRefusal(refusal);
      return kj::READY_NOW;
    }
    if (!replies || !asks) return kj::READY_NOW;
    context.releaseParams();
    // A held call whose connection is lost is cancelled (Cap'n Proto 0.9.2 lets a call outlive
    // its connection unless it allows cancellation), so that no answer goes into its return.
    context.allowCancellation();
    return node_.holdReturn(from).then([context](std::vector<Message> messages) mutable {
      if (messages.empty()) return;
      uint64_t words = 16;
      for (const Message& m : messages) words += wireWords(m);
      auto list = context.getResults(capnp::MessageSize{words, 0}).initMessages(uint32_t(messages.size()));
      for (size_t i = 0; i < messages.size(); ++i) toWire(messages[i], list[i]);
    });
  }

  kj::Promise<void> installSnapshot(InstallSnapshotContext context) override {
    auto params = context.getParams();
    std::string refusal = node_.checkOrigin(params.getOrigin(), "snapshot");
    Message m;
    if (refusal.empty()) refusal = fromWire(params.getMessage(), m);
    if (refusal.empty() && (m.type != MessageType::Snapshot || !params.getMessage().hasSnapshotMeta())) {
      refusal = "not a snapshot message";
    }
    if (!refusal.empty()) {
      context.getResults().setRefusal(refusal);
      return kj::READY_NOW;
    }
    auto meta = params.getMessage().getSnapshotMeta();
    auto snap = std::make_shared<Snapshot>();
    snap->meta.index = Index{meta.getIndex()};
    snap->meta.term = Term{meta.getTerm()};
    snap->meta.membership = fromWire(meta.getMembership());
    m.snapshot = snap;
    context.getResults().setSink(kj::heap<SinkImpl>(node_, std::move(m), params.getSize()));
    return kj::READY_NOW;
  }

  kj::Promise<void> propose(ProposeContext context) override {
    auto params = context.getParams();
    auto cmd = kj::heapArray<kj::byte>(params.getCommand());
    return node_.propose(kj::mv(cmd), params.getTimeoutMs()).then([this, context](Node::ProposeOutcome out) mutable {
      auto r = context.initResults(replySize(out.result.size()));
      r.setStatus(out.status);
      r.setResult(bytesOf(out.result));
      // On success too, so that a client talking to a follower learns where the leader is.
      fill(node_, r.initRedirect(), out.leader ? out.leader : node_.leader());
    });
  }

  kj::Promise<void> query(QueryContext context) override {
    auto params = context.getParams();
    auto q = kj::heapArray<kj::byte>(params.getQuery());
    bool lin = params.getConsistency() == wire::Consistency::LINEARIZABLE;
    return node_.query(kj::mv(q), lin, params.getTimeoutMs()).then([this, context](Node::ProposeOutcome out) mutable {
      auto r = context.initResults(replySize(out.result.size()));
      r.setStatus(out.status);
      r.setResult(bytesOf(out.result));
      // On success too, so that a client talking to a follower learns where the leader is.
      fill(node_, r.initRedirect(), out.leader ? out.leader : node_.leader());
    });
  }

  kj::Promise<void> batch(BatchContext context) override {
    auto calls = context.getParams().getCalls();
    KJ_REQUIRE(calls.size() <= kMaxBatchCalls, "a batch of more than 1024 calls", calls.size());
    // The linearizable reads share one ReadIndex (Node::queryMany); the other calls go one by
    // one. `grouped[i]`: call i is one of those reads.
    kj::Vector<kj::Promise<Node::ProposeOutcome>> outcomes(calls.size());
    std::vector<kj::Array<kj::byte>> reads;
    std::vector<bool> grouped(calls.size());
    uint32_t readTimeoutMs = 0;  // the shortest the reads asked for (0: the node's default)
    for (uint i = 0; i < calls.size(); ++i) {
      auto c = calls[i];
      if (c.isPropose()) {
        outcomes.add(node_.propose(kj::heapArray<kj::byte>(c.getPropose()), c.getTimeoutMs()));
      } else if (c.getConsistency() == wire::Consistency::LINEARIZABLE) {
        grouped[i] = true;
        reads.push_back(kj::heapArray<kj::byte>(c.getQuery()));
        if (c.getTimeoutMs() && (!readTimeoutMs || c.getTimeoutMs() < readTimeoutMs)) readTimeoutMs = c.getTimeoutMs();
      } else {
        outcomes.add(node_.query(kj::heapArray<kj::byte>(c.getQuery()), false, c.getTimeoutMs()));
      }
    }
    context.releaseParams();
    kj::Promise<std::vector<Node::ProposeOutcome>> readOuts =
        reads.empty() ? kj::Promise<std::vector<Node::ProposeOutcome>>(std::vector<Node::ProposeOutcome>())
                      : node_.queryMany(kj::mv(reads), readTimeoutMs);
    return kj::joinPromises(outcomes.releaseAsArray())
        .then([readOuts = kj::mv(readOuts)](kj::Array<Node::ProposeOutcome> others) mutable {
          return readOuts.then([others = kj::mv(others)](std::vector<Node::ProposeOutcome> read) mutable {
            return std::make_pair(kj::mv(others), kj::mv(read));
          });
        })
        .then([this, context, grouped = kj::mv(grouped)](
                  std::pair<kj::Array<Node::ProposeOutcome>, std::vector<Node::ProposeOutcome>> outs) mutable {
          auto& [others, read] = outs;
          size_t words = 24;
          for (auto& o : others) words += o.result.size() / 8 + 3;
          for (auto& o : read) words += o.result.size() / 8 + 3;
          auto r = context.initResults(capnp::MessageSize{words, 0});
          auto replies = r.initReplies(uint(grouped.size()));
          size_t nextOther = 0, nextRead = 0;
          for (size_t i = 0; i < grouped.size(); ++i) {
            Node::ProposeOutcome& o = grouped[i] ? read[nextRead++] : others[nextOther++];
            replies[uint(i)].setStatus(o.status);
            replies[uint(i)].setResult(bytesOf(o.result));
          }
          fill(node_, r.initRedirect(), node_.leader());
        });
  }

  kj::Promise<void> status(StatusContext context) override {
    node_.fillStatus(context.getResults().initStatus());
    return kj::READY_NOW;
  }

  kj::Promise<void> changeMembership(ChangeMembershipContext context) override {
    auto p = context.getParams();
    return node_.changeMembership(p.getKind(), NodeId{p.getNode()}, p.getAddress(), p.getTimeoutMs())
        .then([this, context](Node::ProposeOutcome out) mutable {
          auto r = context.initResults(replySize(0));
          r.setStatus(out.status);
          fill(node_, r.initRedirect(), out.leader);
        });
  }

  kj::Promise<void> transferLeadership(TransferLeadershipContext context) override {
    auto p = context.getParams();
    return node_.transferLeadership(NodeId{p.getTo()}, p.getTimeoutMs())
        .then([this, context](Node::ProposeOutcome out) mutable {
          auto r = context.initResults(replySize(0));
          r.setStatus(out.status);
          fill(node_, r.initRedirect(), out.leader);
        });
  }

  kj::Promise<void> snapshot(SnapshotContext context) override {
    return node_.takeSnapshot().then([context](uint64_t index) mutable { context.getResults().setIndex(index); });
  }

 private:
  Node& node_;
};

capnp::Capability::Client makeService(Node& node) { return kj::heap<Service>(node); }

std::string Node::checkOrigin(wire::Origin::Reader origin, const char* what, bool quiet) {
  std::string refusal;
  NodeId from{origin.getFrom()};
  if (std::string(origin.getClusterId().cStr()) != options_.clusterId) {
    quiet = false;
    refusal = "cluster id mismatch: this node belongs to cluster '" + options_.clusterId + "', the sender to '" +
              origin.getClusterId().cStr() + "'";
  } else if (NodeId{origin.getTo()} != core_->id()) {
    quiet = false;
    refusal = "addressed to n" + std::to_string(origin.getTo()) + " but this is n" + std::to_string(options_.id);
  } else if (!from || from == core_->id()) {
    quiet = false;
    refusal = "invalid sender id " + std::to_string(from.value);
  } else if (!addresses_.count(from) && !core_->membership().contains(from)) {
    refusal = "unknown node n" + std::to_string(from.value) + " (not a member, not in --peers)";
  } else {
    quiet = false;  // `quiet` silences only the refusal of an unknown node
  }
  if (!refusal.empty()) {
    ++refusedPeers_;
    auto now = std::chrono::steady_clock::now();
    auto& last = lastRefusalLog_[from];
    if (!quiet && now - last > std::chrono::seconds(5)) {
      last = now;
      log(std::string("refused ") + what + " from n" + std::to_string(from.value) + " at " +
          origin.getFromAddress().cStr() + ": " + refusal);
    }
    return refusal;
  }
  // Learn (or refresh) the sender's address: a node added live is known by its traffic.
  std::string addr = origin.getFromAddress();
  std::string host;
  uint16_t port;
  if (splitAddress(addr, host, port)) {
    auto& known = addresses_[from];
    if (known != addr) known = addr;
  }
  connectNow(from);
  return "";
}

std::string Node::deliver(wire::Origin::Reader origin, capnp::List<wire::Message>::Reader messages, bool* asks) {
  if (stopping_) return "shutting down";
  // An introduction (no messages) from a node not yet a member is refused without a log line
  // (a joiner introduces itself every second until it is added).
  std::string refusal = checkOrigin(origin, "messages", messages.size() == 0);
  if (!refusal.empty()) return refusal;
  NodeId from{origin.getFrom()};
  return stepFrom(from, messages, asks);
}

std::string Node::stepFrom(NodeId from, capnp::List<wire::Message>::Reader messages, bool* asks) {
  if (messages.size() == 0) return "";
  catchUpTicks();  // lease reads: a forwarded read is answered from the lease, measured in ticks
  for (auto wm : messages) {
    Message m;
    std::string err = fromWire(wm, m);
    if (err.empty() && (m.from != from || m.to != core_->id())) err = "message from/to does not match its origin";
    if (err.empty() && m.type == MessageType::Snapshot) err = "snapshots travel through installSnapshot";
    if (!err.empty()) {
      log("refused a message from n" + std::to_string(from.value) + ": " + err);
      return err;
    }
    if (asks && expectsAnswer(m.type)) *asks = true;
    try {
      core_->step(m);
    } catch (const std::invalid_argument& e) {
      log("refused a message from n" + std::to_string(from.value) + ": " + e.what());
      return e.what();
    }
  }
  kick();
  return "";
}

void Node::deliverSnapshot(Message m, Bytes data, std::unique_ptr<SnapshotRestore> restore) {
  if (stopping_) return;
  auto snap = std::make_shared<Snapshot>(*m.snapshot);
  snap->data = std::move(data);
  m.snapshot = snap;
  if (restore) received_ = ReceivedRestore{snap->meta.index, snap->meta.term, std::move(restore)};
  log("received snapshot at " + toString(snap->meta.index) + " (" + std::to_string(snap->data.size()) + " bytes) from n" +
      std::to_string(m.from.value));
  try {
    core_->step(m);
  } catch (const std::invalid_argument& e) {
    log(std::string("refused a snapshot: ") + e.what());
  }
  // The core keeps a snapshot it will install (§7); one it ignored (it had the entries) is not
  // kept, and neither is the state parsed from it.
  m.snapshot.reset();
  if (snap.use_count() == 1 && received_.restore && received_.index == snap->meta.index) received_ = {};
  kick();
}

kj::Promise<Node::ProposeOutcome> Node::forward(kj::Array<kj::byte> command, uint32_t timeoutMs) {
  NodeId leader = core_->leader();
  if (!leader || leader == core_->id()) return ProposeOutcome{wire::Status::UNAVAILABLE, "", NodeId{}};
  Peer& p = peer(leader);
  KJ_IF_MAYBE(cap, p.cap) {
    auto req = cap->proposeRequest(capnp::MessageSize{command.size() / 8 + 8, 0});
    req.setCommand(command);
    req.setTimeoutMs(timeoutMs);
    return req.send().then(
        [](capnp::Response<wire::Keel::ProposeResults>&& r) {
          ProposeOutcome out;
          out.status = r.getStatus();
          out.result = std::string(viewOf(r.getResult()));
          out.leader = NodeId{r.getRedirect().getLeader()};
          return out;
        },
        [leader](kj::Exception&&) {
          // The connection to the leader broke mid-call: the write may or may not apply.
          return ProposeOutcome{wire::Status::UNKNOWN_OUTCOME, "", leader};
        });
  }
  return ProposeOutcome{wire::Status::NOT_LEADER, "", leader};
}

void Node::fillStatus(wire::NodeStatus::Builder out) {
  out.setId(options_.id);
  out.setAddress(options_.listen);
  out.setClusterId(options_.clusterId);
  out.setHttpAddress(options_.http);
  std::string role = toString(core_->role());
  for (char& c : role) c = char(std::tolower(c));
  out.setRole(role);
  out.setTerm(core_->term().value);
  out.setLeader(core_->leader().value);
  out.setCommit(core_->commitIndex().value);
  out.setApplied(applied_);
  out.setLastIndex(log_->lastIndex().value);
  out.setFirstIndex(log_->firstIndex().value);
  out.setSnapshotIndex(log_->snapshotMeta().index.value);
  const Membership& m = core_->membership();
  auto put = [](const std::vector<NodeId>& ids, capnp::List<uint64_t>::Builder l) {
    for (size_t i = 0; i < ids.size(); ++i) l.set(i, ids[i].value);
  };
  put(m.voters, out.initVoters(m.voters.size()));
  put(m.learners, out.initLearners(m.learners.size()));
  put(m.outgoing, out.initOutgoing(m.outgoing.size()));
  if (core_->role() == Role::Leader) {
    std::vector<NodeId> others;
    for (NodeId id : m.members())
      if (id != core_->id()) others.push_back(id);
    auto peers = out.initPeers(others.size());
    for (size_t i = 0; i < others.size(); ++i) {
      auto ps = peers[i];
      ps.setId(others[i].value);
      ps.setAddress(addressOf(others[i]));
      if (auto pr = core_->progress(others[i])) {
        ps.setMatch(pr->match.value);
        ps.setNext(pr->next.value);
        ps.setState(toString(pr->state));
        ps.setLag(log_->lastIndex() - std::min(pr->match, log_->lastIndex()));
      }
      auto it = peers_.find(others[i]);
      ps.setConnected(it != peers_.end() && it->second->state == Peer::State::Connected);
    }
  }
}

}  // namespace keel::server
