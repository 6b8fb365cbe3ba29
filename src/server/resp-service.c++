// keel: the Redis-protocol port (see resp-service.h).
#include "resp-service.h"

#include <commands.h>
#include <resp.h>

#include <capnp/message.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

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

// One client connection, on its socket directly rather than through a kj::AsyncIoStream. A
// stream's tryRead() always calls read(2) first, so between a client's requests there is a
// read that finds nothing (EAGAIN) before the wait: a third of the port's system calls under
// redis-benchmark. Here a read that comes back short (the socket was drained) is followed by a
// wait for the next edge in the same event-loop turn, with no read in between, as
// kj::UnixEventPort::FdObserver allows. Owned by shared_ptr: the completions of its commands
// and its waits hold it alive.
//
// With --redis-tls a connection reads and writes through kj-tls's stream instead (`stream`; fd
// is -1): one read at a time, one write at a time, both wrapped by `canceler` so that closing
// the connection cancels them before the stream goes.
struct Connection : std::enable_shared_from_this<Connection> {
  struct Slot {
    std::vector<std::string> args;
    resp::Kind kind;
    bool started = false, done = false;
    std::string reply;
  };

  Connection(int socket, kj::UnixEventPort& port, resp::Backend& backend, kj::TaskSet& tasks)
      : fd(socket),
        observer(kj::heap<kj::UnixEventPort::FdObserver>(port, socket, kj::UnixEventPort::FdObserver::OBSERVE_READ_WRITE)),
        dispatcher(backend),
        tasks(tasks) {}
  Connection(kj::Own<kj::AsyncIoStream> tls, resp::Backend& backend, kj::TaskSet& tasks)
      : fd(-1), stream(kj::mv(tls)), dispatcher(backend), tasks(tasks) {}
  ~Connection() { release(); }

  int fd;
  kj::Own<kj::UnixEventPort::FdObserver> observer;
  kj::Own<kj::AsyncIoStream> stream;  // --redis-tls
  kj::Canceler canceler;              // of the stream's read and write in flight
  resp::Parser parser;
  resp::Dispatcher dispatcher;
  kj::TaskSet& tasks;
  std::deque<Slot> slots;  // in command order; the front is the next reply to send
  size_t firstUnstarted = 0;
  size_t readsInFlight = 0, writesInFlight = 0;
  std::string out;
  size_t outSent = 0;  // bytes of `out` already written
  bool waitingToRead = false, waitingToWrite = false, closing = false, closed = false;
  static constexpr int kReadsPerTurn = 8;
  char buf[16384];

  void start() { readMore(); }

  // Closes the socket (once); what is left unwritten is dropped.
  void release() {
    if (stream) {
      canceler.cancel("connection closed");
      stream = nullptr;
      return;
    }
    if (fd < 0) return;
    observer = nullptr;  // out of the event port before the descriptor goes
    ::close(fd);
    fd = -1;
  }

  void fail() {
    closed = true;
    release();
  }

  // Too many commands queued, or too many reply bytes unsent: reading waits (back-pressure).
  bool backlogged() const {
    return slots.size() >= RespServer::kMaxInFlight || out.size() - outSent >= RespServer::kMaxOutputBytes;
  }

  // Reads and starts commands until the socket is drained (then waits for its next edge), the
  // client closed its side, or too much is queued (then finished() reads again). A client that
  // keeps the socket full yields the loop every few reads.
  void readMore() {
    if (stream) return readMoreTls();
    for (int reads = 0; !waitingToRead && !closing && !closed; ++reads) {
      if (backlogged()) return;
      if (reads == kReadsPerTurn) {
        waitingToRead = true;
        tasks.add(kj::evalLater([self = shared_from_this()]() {
          self->waitingToRead = false;
          self->readMore();
        }));
        return;
      }
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return fail();  // reset by the peer
      if (n == 0) {
        // The client closed its side: finish what it asked for, then close.
        closing = true;
        maybeClose();
        return;
      }
      // Drained: nothing to read (EAGAIN), or a short read, unless the event port has seen the
      // client close its side (then the next read returns the end of the stream).
      bool drained = n < 0 || (size_t(n) < sizeof buf && !observer->atEndHint().orDefault(false));
      if (n > 0) received(size_t(n));
      if (drained && !closing && !closed) {
        waitingToRead = true;
        auto self = shared_from_this();
        tasks.add(observer->whenBecomesReadable().then(
            [self]() {
              self->waitingToRead = false;
              self->readMore();
            },
            [self](kj::Exception&&) { self->fail(); }));
        return;
      }
    }
  }

  void readMoreTls() {
    if (waitingToRead || closing || closed) return;
    if (backlogged()) return;
    waitingToRead = true;
    auto self = shared_from_this();
    tasks.add(canceler.wrap(stream->tryRead(buf, 1, sizeof buf))
                  .then(
                      [self](size_t n) {
                        self->waitingToRead = false;
                        if (self->closed) return;
                        if (n == 0) {
                          self->closing = true;
                          self->maybeClose();
                          return;
                        }
                        self->received(n);
                        self->readMore();
                      },
                      [self](kj::Exception&&) { self->fail(); }));
  }

  void received(size_t n) {
    parser.feed(std::string_view(buf, n));
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

  // Writes the replies that are next in order; what the socket does not take waits for it to
  // become writable.
  void flush() {
    while (!slots.empty() && slots.front().done) {
      out += slots.front().reply;
      slots.pop_front();
      ++popped;
      if (firstUnstarted > 0) --firstUnstarted;
    }
    if (stream) return writeTls();
    while (!waitingToWrite && !closed && outSent < out.size()) {
      ssize_t n = ::write(fd, out.data() + outSent, out.size() - outSent);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return fail();
      if (n > 0) outSent += size_t(n);
      if (outSent == out.size()) {
        out.clear();
        outSent = 0;
        break;
      }
      // The socket's buffer is full (a short write or EAGAIN).
      waitingToWrite = true;
      auto self = shared_from_this();
      tasks.add(observer->whenBecomesWritable().then(
          [self]() {
            self->waitingToWrite = false;
            self->flush();
            self->readMore();
          },
          [self](kj::Exception&&) { self->fail(); }));
      return;
    }
    maybeClose();
  }

  // The replies in `out` go in one write; those that come meanwhile wait for it.
  void writeTls() {
    if (waitingToWrite || closed || out.empty()) return maybeClose();
    waitingToWrite = true;
    auto bytes = kj::heap<std::string>(std::move(out));
    out.clear();
    auto self = shared_from_this();
    auto write = stream->write(bytes->data(), bytes->size()).attach(kj::mv(bytes));
    tasks.add(canceler.wrap(kj::mv(write))
                  .then(
                      [self]() {
                        self->waitingToWrite = false;
                        self->flush();
                        self->readMore();
                      },
                      [self](kj::Exception&&) { self->fail(); }));
  }

  void maybeClose() {
    if (!closing || closed || waitingToWrite || !slots.empty() || outSent < out.size()) return;
    // A QUIT or a protocol error: everything before it has been answered.
    closed = true;
    if (stream) stream->shutdownWrite();
    else ::shutdown(fd, SHUT_WR);
    release();
  }

  uint64_t popped = 0;  // replies sent so far (the sequence number of the deque's front)
  bool inPump = false;
};

struct RespServer::Impl {
  Impl(Node& node, kj::AsyncIoContext& io)
      : node(node), io(io), backend(node, io.provider->getTimer(), tasks), connTasks(taskErrors), tasks(taskErrors) {}
  // Destroyed from the bottom up: the node's calls and the accept loop first, then the
  // connections, then the listener and the backend.
  Node& node;
  kj::AsyncIoContext& io;
  NodeBackend backend;
  kj::Own<kj::ConnectionReceiver> listener;
  kj::TaskSet connTasks;  // the connections' reads and writes
  kj::TaskSet tasks;      // the backend's calls into the node, the accept loop

  kj::Promise<void> acceptLoop() {
    return listener->accept().then([this](kj::Own<kj::AsyncIoStream> s) {
      s->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (node.options().redisTls) {
        handshake(kj::mv(s));
        return acceptLoop();
      }
      // The connection takes the socket over (a duplicate, non-blocking like the original);
      // the stream, and its registration with the event port, go.
      KJ_IF_MAYBE(fd, s->getFd()) {
        int own = ::fcntl(*fd, F_DUPFD_CLOEXEC, 0);
        s = nullptr;
        std::shared_ptr<Connection> c;
        if (own >= 0) {
          // A connection that cannot be set up (no room in the event port) is dropped; the port
          // goes on accepting.
          KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
            c = std::make_shared<Connection>(own, io.unixEventPort, backend, connTasks);
          })) {
            ::close(own);
            taskErrors.taskFailed(kj::mv(*e));
          }
        }
        if (c) c->start();
      }
      return acceptLoop();
    });
  }
  int one = 1;

  // --redis-tls: the handshake runs beside the accept loop (Node::acceptTls()).
  void handshake(kj::Own<kj::AsyncIoStream> s) {
    connTasks.add(node.acceptTls(kj::mv(s)).then([this](kj::Maybe<kj::Own<kj::AsyncIoStream>> t) {
      KJ_IF_MAYBE(stream, t) { std::make_shared<Connection>(kj::mv(*stream), backend, connTasks)->start(); }
    }));
  }
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
