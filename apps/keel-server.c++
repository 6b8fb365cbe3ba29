// keel-server: one member of a keel cluster serving the replicated key-value store.
//
//   keel-server --id 1 --data-dir /var/lib/keel/1 --listen 127.0.0.1:7101
//               --peers 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103 --http 127.0.0.1:7201
//
// Exit status: 0 after a graceful stop (SIGTERM, SIGINT), 1 on a bad flag or config, 2 when the
// node cannot start (corrupt log, address in use). SIGHUP: the --tls-* files are read again.
#include <keel/kv.h>
#include <keel/segmented-log.h>

#include "node.h"
#include "resp-service.h"

#include <kj/async-unix.h>
#include <kj/main.h>

#include <csignal>
#include <cstdio>
#include <functional>

// jemalloc's settings, read when it starts (MALLOC_CONF in the environment overrides them; the C
// library's malloc, in sanitized builds, ignores them): its extents are advised onto transparent
// huge pages (madvise(MADV_HUGEPAGE): what the kernel's usual "madvise" mode asks for). Faulting
// in fresh memory one 4 KiB page at a time is what restarting, snapshotting and catching up a
// large state mostly do, and on the benchmark VM it ran at about 360 MB/s, against 0.6-2.4 GB/s
// on huge pages (docs/benchmarks.md, item 34). Allocations of up to 8 MiB are kept in each
// thread's cache when freed (tcache_max): a snapshot streams as one RPC message of 4 MiB per
// chunk on both sides, and the default cache (32 KiB) left those to the arena, whose decay
// gave them back to the kernel (madvise DONTNEED) every few chunks, so every chunk faulted in
// fresh memory again: 40% of a sending leader's CPU (item 35).
extern "C" const char* malloc_conf = "thp:always,metadata_thp:auto,tcache_max:8388608";

namespace {

class ServerMain {
 public:
  explicit ServerMain(kj::ProcessContext& context) : context_(context) {}

  kj::MainFunc getMain() {
    kj::MainBuilder b(context_, "keel-server 0.1",
                      "Runs one member of a keel cluster: Raft over Cap'n Proto RPC, a durable "
                      "segmented log, and the replicated key-value store. Every option also has a "
                      "config-file form (--config FILE; one `name = value` per line, the option's "
                      "name without dashes). Stops gracefully on SIGTERM or SIGINT; reads its --tls-* files again on SIGHUP.");
    b.addOptionWithArg({"config"}, KJ_BIND_METHOD(*this, config), "<file>",
                       "Read options from <file> (flags given after it override it).");
    for (const auto& h : keel::server::optionHelp()) {
      std::string name = h.name;
      b.addOptionWithArg({h.name},
                         [this, name](kj::StringPtr v) { return set(name, v); }, h.arg, h.help);
    }
    return b.callAfterParsing(KJ_BIND_METHOD(*this, run)).build();
  }

 private:
  kj::MainBuilder::Validity set(const std::string& name, kj::StringPtr value) {
    std::string err = keel::server::setOption(options_, name, value.cStr());
    if (!err.empty()) return kj::str(err.c_str());
    return true;
  }
  kj::MainBuilder::Validity config(kj::StringPtr path) {
    std::string err = keel::server::loadConfigFile(options_, path.cStr());
    if (!err.empty()) return kj::str(err.c_str());
    return true;
  }

  kj::MainBuilder::Validity run() {
    std::string err = keel::server::validate(options_);
    if (!err.empty()) return kj::str(err.c_str());
    kj::UnixEventPort::captureSignal(SIGTERM);
    kj::UnixEventPort::captureSignal(SIGINT);
    kj::UnixEventPort::captureSignal(SIGHUP);
    std::signal(SIGPIPE, SIG_IGN);
    auto io = kj::setupAsyncIo();
    keel::KvStateMachine::Options kvo;
    kvo.sessionTimeoutMs = options_.sessionTimeoutMs;
    keel::KvStateMachine sm(kvo);
    kj::Own<keel::server::Node> node;
    try {
      node = kj::heap<keel::server::Node>(options_, io, sm, [](uint8_t* d, size_t n, uint64_t ms) {
        keel::kv::stampClock(d, n, ms);
      });
    } catch (const std::exception& e) {
      context_.exitError(kj::str("keel-server: cannot start: ", e.what()));
    }
    auto done = node->run();
    // --redis-listen: the Redis-protocol port (src/server/resp-service.h); destroyed before the node.
    kj::Own<keel::server::RespServer> resp;
    if (!options_.redisListen.empty()) {
      resp = kj::heap<keel::server::RespServer>(*node, io);
      try {
        resp->listen(options_.redisListen).wait(io.waitScope);
      } catch (const kj::Exception& e) {
        context_.exitError(kj::str("keel-server: cannot serve --redis-listen ", options_.redisListen.c_str(), ": ",
                                   e.getDescription()));
      }
    }
    auto stop = io.unixEventPort.onSignal(SIGTERM)
                    .exclusiveJoin(io.unixEventPort.onSignal(SIGINT))
                    .then([&](siginfo_t) { node->shutdown(); });
    // SIGHUP: the --tls-* files are read again (Node::reloadTls()), as often as it comes.
    std::function<kj::Promise<void>()> onHangup = [&]() {
      return io.unixEventPort.onSignal(SIGHUP).then([&](siginfo_t) {
        node->reloadTls();
        return onHangup();
      });
    };
    auto all = done.exclusiveJoin(kj::mv(stop).then([&]() { return kj::Promise<void>(kj::READY_NOW); }))
                   .exclusiveJoin(onHangup());
    try {
      all.wait(io.waitScope);
      // If a signal came first, the node's own promise resolved inside shutdown(): nothing left.
    } catch (const kj::Exception& e) {
      std::fprintf(stderr, "keel-server: %s\n", e.getDescription().cStr());
      resp = nullptr;
      node = nullptr;
      return kj::str("stopped on an error");
    }
    resp = nullptr;
    node = nullptr;
    std::fprintf(stderr, "keel-server: stopped\n");
    return true;
  }

  kj::ProcessContext& context_;
  keel::server::Options options_;
};

}  // namespace

KJ_MAIN(ServerMain)
