// keel: the Redis-protocol port (see resp-service.h).
#include "resp-service.h"

#include <commands.h>
#include <resp.h>

#include <capnp/message.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <deque>

namespace keel::server {

namespace {

class TaskErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    // A connection that broke (reset by the peer): nothing to do but drop it.
    if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
    std::fprintf(stderr, "keel-server: redis port: %s\n", e.getDescription().cStr());
  }
};
TaskErrors taskErrors;

bool retryable(wire::Status s) { return s == wire::Status::NOT_LEADER || s == wire::Status::UNAVAILABLE; }

}  // namespace

// The Node as a resp::Backend.
class NodeBackend final : public resp::Backend {
 public:
  NodeBackend(Node& node, kj::Timer& timer, kj::TaskSet& tasks) : node_(node), timer_(timer), tasks_(tasks) {}

  void write(std::string command, resp::Completion done) override {
    auto deadline = timer_.now() + node_.options().requestTimeoutMs * kj::MILLISECONDS;
    tasks_.add(attempt(std::make_shared<std::string>(std::move(command)), false, deadline)
                   .then([done = std::move(done)](Node::ProposeOutcome out) { done(convert(out)); }));
  }
  void read(std::string query, resp::Completion done) override {
    auto deadline = timer_.now() + node_.options().requestTimeoutMs * kj::MILLISECONDS;
    tasks_.add(attempt(std::make_shared<std::string>(std::move(query)), true, deadline)
                   .then([done = std::move(done)](Node::ProposeOutcome out) { done(convert(out)); }));
  }
  resp::NodeInfo info() override {
    capnp::MallocMessageBuilder b;
    auto st = b.initRoot<wire::NodeStatus>();
    node_.fillStatus(st);
    resp::NodeInfo n;
    n.id = st.getId();
    n.role = st.getRole().cStr();
    n.term = st.getTerm();
    n.commit = st.getCommit();
    n.applied = st.getApplied();
    n.lastIndex = st.getLastIndex();
    n.leader = st.getLeader();
    n.address = st.getAddress().cStr();
    if (n.leader) n.leaderAddress = node_.addressOf(NodeId{n.leader});
    return n;
  }

 private:
  static resp::BackendResult convert(Node::ProposeOutcome& out) {
    resp::BackendResult r;
    r.ok = out.status == wire::Status::OK;
    if (r.ok) r.reply = std::move(out.result);
    else r.error = toString(out.status);
    return r;
  }

  kj::Promise<Node::ProposeOutcome> attempt(std::shared_ptr<std::string> bytes, bool isRead, kj::TimePoint deadline) {
    auto now = timer_.now();
    uint32_t left = deadline > now ? uint32_t((deadline - now) / kj::MILLISECONDS) : 0;
    if (left == 0) return Node::ProposeOutcome{wire::Status::TIMEOUT, "", NodeId{}};
    auto arr = kj::heapArray<kj::byte>(reinterpret_cast<const kj::byte*>(bytes->data()), bytes->size());
    auto p = isRead ? node_.query(kj::mv(arr), true, left) : node_.propose(kj::mv(arr), left);
    return p.then([this, bytes, isRead, deadline](Node::ProposeOutcome out) -> kj::Promise<Node::ProposeOutcome> {
      if (!retryable(out.status) || timer_.now() + 25 * kj::MILLISECONDS >= deadline) return kj::mv(out);
      return timer_.afterDelay(25 * kj::MILLISECONDS).then([this, bytes, isRead, deadline]() {
        return attempt(bytes, isRead, deadline);
      });
    });
  }

  Node& node_;
  kj::Timer& timer_;
  kj::TaskSet& tasks_;
};

// One client connection. Owned by shared_ptr: the completions of its commands hold it alive.
struct Connection : std::enable_shared_from_this<Connection> {
  struct Slot {
    std::vector<std::string> args;
    resp::Kind kind;
    bool started = false, done = false;
    std::string reply;
  };

  Connection(kj::Own<kj::AsyncIoStream> s, resp::Backend& backend, kj::TaskSet& tasks)
      : stream(kj::mv(s)), dispatcher(backend), tasks(tasks) {}

  kj::Own<kj::AsyncIoStream> stream;
  resp::Parser parser;
  resp::Dispatcher dispatcher;
  kj::TaskSet& tasks;
  std::deque<Slot> slots;  // in command order; the front is the next reply to send
  size_t firstUnstarted = 0;
  size_t readsInFlight = 0, writesInFlight = 0;
  std::string out, writing;
  bool isWriting = false, reading = false, closing = false, closed = false;
  kj::byte buf[16384];

  void start() { readMore(); }

  void readMore() {
    if (reading || closing || closed) return;
    if (slots.size() >= RespServer::kMaxInFlight || out.size() >= RespServer::kMaxOutputBytes) return;
    reading = true;
    auto self = shared_from_this();
    tasks.add(stream->tryRead(buf, 1, sizeof buf).then(
        [self](size_t n) {
          self->reading = false;
          if (n == 0) {
            // The client closed its side: finish what it asked for, then close.
            self->closing = true;
            self->maybeClose();
            return;
          }
          self->received(n);
        },
        [self](kj::Exception&&) {
          self->reading = false;
          self->closed = true;
        }));
  }

  void received(size_t n) {
    parser.feed(std::string_view(reinterpret_cast<const char*>(buf), n));
    std::vector<std::string> args;
    for (;;) {
      auto r = parser.next(args);
      if (r == resp::Parser::Result::NeedMore) break;
      Slot s;
      if (r == resp::Parser::Result::Error) {
        // Answer, then close this connection (as Redis does).
        s.kind = resp::Kind::Quit;
        s.started = s.done = true;
        resp::writeError(s.reply, "ERR " + parser.error());
        slots.push_back(std::move(s));
        closing = true;
        break;
      }
      s.kind = resp::kindOf(args);
      s.args = std::move(args);
      bool quit = s.kind == resp::Kind::Quit;
      slots.push_back(std::move(s));
      if (quit) {
        closing = true;
        break;
      }
    }
    pump();
    readMore();
  }

  // Starts the commands that may start, in order.
  void pump() {
    while (firstUnstarted < slots.size()) {
      Slot& s = slots[firstUnstarted];
      if (s.started) {
        ++firstUnstarted;
        continue;
      }
      if (s.kind == resp::Kind::Read && writesInFlight > 0) break;
      if (s.kind == resp::Kind::Write && readsInFlight > 0) break;
      s.started = true;
      ++firstUnstarted;
      if (s.kind == resp::Kind::Read) ++readsInFlight;
      if (s.kind == resp::Kind::Write) ++writesInFlight;
      // Slots are addressed by their sequence number: the deque's front moves as replies leave.
      uint64_t seq = popped + (firstUnstarted - 1);
      auto self = shared_from_this();
      resp::Kind kind = s.kind;
      auto args = std::move(s.args);
      dispatcher.dispatch(std::move(args), [self, seq, kind](std::string reply) {
        self->finished(seq, kind, std::move(reply));
      });
    }
    flush();
  }

  void finished(uint64_t seq, resp::Kind kind, std::string reply) {
    if (kind == resp::Kind::Read) --readsInFlight;
    if (kind == resp::Kind::Write) --writesInFlight;
    Slot& s = slots[size_t(seq - popped)];
    s.done = true;
    s.reply = std::move(reply);
    if (!inPump) {
      inPump = true;
      // Replies may come synchronously from dispatch(): let the outer pump carry on.
      tasks.add(kj::evalLater([self = shared_from_this()]() {
        self->inPump = false;
        self->pump();
        self->readMore();
      }));
    }
  }

  void flush() {
    while (!slots.empty() && slots.front().done) {
      out += slots.front().reply;
      slots.pop_front();
      ++popped;
      if (firstUnstarted > 0) --firstUnstarted;
    }
    if (!isWriting && !out.empty() && !closed) {
      isWriting = true;
      writing.swap(out);
      out.clear();
      auto self = shared_from_this();
      tasks.add(stream->write(writing.data(), writing.size())
                    .then(
                        [self]() {
                          self->isWriting = false;
                          self->writing.clear();
                          self->flush();
                          self->readMore();
                        },
                        [self](kj::Exception&&) {
                          self->isWriting = false;
                          self->closed = true;
                        }));
      return;
    }
    maybeClose();
  }

  void maybeClose() {
    if (!closing || closed || isWriting || !slots.empty() || !out.empty()) return;
    // A QUIT or a protocol error: everything before it has been answered.
    bool pending = false;
    for (auto& s : slots) pending |= !s.done;
    if (pending) return;
    closed = true;
    try {
      stream->shutdownWrite();
    } catch (...) {
    }
    stream = nullptr;
  }

  uint64_t popped = 0;  // replies sent so far (the sequence number of the deque's front)
  bool inPump = false;
};

struct RespServer::Impl {
  Impl(Node& node, kj::AsyncIoContext& io)
      : io(io), backend(node, io.provider->getTimer(), tasks), connTasks(taskErrors), tasks(taskErrors) {}
  // Destroyed from the bottom up: the node's calls and the accept loop first, then the
  // connections, then the listener and the backend.
  kj::AsyncIoContext& io;
  NodeBackend backend;
  kj::Own<kj::ConnectionReceiver> listener;
  kj::TaskSet connTasks;  // the connections' reads and writes
  kj::TaskSet tasks;      // the backend's calls into the node, the accept loop

  kj::Promise<void> acceptLoop() {
    return listener->accept().then([this](kj::Own<kj::AsyncIoStream> s) {
      s->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto c = std::make_shared<Connection>(kj::mv(s), backend, connTasks);
      c->start();
      return acceptLoop();
    });
  }
  int one = 1;
};

RespServer::RespServer(Node& node, kj::AsyncIoContext& io) : impl_(std::make_unique<Impl>(node, io)) {}

RespServer::~RespServer() = default;

kj::Promise<void> RespServer::listen(const std::string& address) {
  std::string host;
  uint16_t port;
  if (!splitAddress(address, host, port)) {
    return KJ_EXCEPTION(FAILED, "--redis-listen: expected host:port", address);
  }
  return impl_->io.provider->getNetwork().parseAddress(host, port).then([this, address](kj::Own<kj::NetworkAddress> a) {
    impl_->listener = a->listen();
    impl_->tasks.add(impl_->acceptLoop());
  });
}

uint16_t RespServer::port() const { return impl_->listener ? uint16_t(impl_->listener->getPort()) : 0; }

}  // namespace keel::server
