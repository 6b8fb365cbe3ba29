// keel examples: the main() of a server for a custom state machine.
//
// Everything but the state machine comes from the server library (src/server): the same flags
// and config file as keel-server (--id, --data-dir, --listen, --peers, --http, --tick-ms, ...;
// `--help` lists them), the durable SegmentedLog, Raft over Cap'n Proto RPC, forwarding from
// followers to the leader, ReadIndex reads, snapshots, /metrics and /status. A program makes
// one with its state machine and hands it to KJ_MAIN:
//
//   class Main : public keel::examples::ServeMain {
//    public:
//     explicit Main(kj::ProcessContext& c) : ServeMain(c, "my-server", std::make_unique<MyMachine>()) {}
//   };
//   KJ_MAIN(Main)
//
// Exit status: 0 after a graceful stop (SIGTERM, SIGINT), non-zero on a bad flag or when the
// node cannot start.
#pragma once

#include <keel/state-machine.h>

#include "node.h"  // keel::server::Node (src/server)

#include <kj/async-unix.h>
#include <kj/main.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

namespace keel::examples {

class ServeMain {
 public:
  ServeMain(kj::ProcessContext& context, const char* name, std::unique_ptr<StateMachine> machine)
      : context_(context), name_(name), version_(kj::str(name, " (keel example)")), machine_(std::move(machine)) {}

  kj::MainFunc getMain() {
    kj::MainBuilder b(context_, version_,
                      "Runs one member of a cluster replicating this example's state machine with "
                      "the keel server library. The options are keel-server's (--config FILE: one "
                      "`name = value` per line).");
    b.addOptionWithArg({"config"}, KJ_BIND_METHOD(*this, config), "<file>", "Read options from <file>.");
    for (const auto& h : server::optionHelp()) {
      std::string flag = h.name;
      b.addOptionWithArg({h.name}, [this, flag](kj::StringPtr v) { return set(flag, v); }, h.arg, h.help);
    }
    return b.callAfterParsing(KJ_BIND_METHOD(*this, run)).build();
  }

 private:
  kj::MainBuilder::Validity set(const std::string& flag, kj::StringPtr value) {
    std::string err = server::setOption(options_, flag, value.cStr());
    if (!err.empty()) return kj::str(err.c_str());
    return true;
  }
  kj::MainBuilder::Validity config(kj::StringPtr path) {
    std::string err = server::loadConfigFile(options_, path.cStr());
    if (!err.empty()) return kj::str(err.c_str());
    return true;
  }

  kj::MainBuilder::Validity run() {
    std::string err = server::validate(options_);
    if (!err.empty()) return kj::str(err.c_str());
    kj::UnixEventPort::captureSignal(SIGTERM);
    kj::UnixEventPort::captureSignal(SIGINT);
    std::signal(SIGPIPE, SIG_IGN);
    auto io = kj::setupAsyncIo();
    kj::Own<server::Node> node;
    try {
      // No command stamper: these machines need no clock (KvStateMachine uses it for sessions).
      node = kj::heap<server::Node>(options_, io, *machine_);
    } catch (const std::exception& e) {
      context_.exitError(kj::str(name_, ": cannot start: ", e.what()));
    }
    auto done = node->run();
    auto stop = io.unixEventPort.onSignal(SIGTERM)
                    .exclusiveJoin(io.unixEventPort.onSignal(SIGINT))
                    .then([&](siginfo_t) { node->shutdown(); });
    try {
      done.exclusiveJoin(kj::mv(stop)).wait(io.waitScope);
    } catch (const kj::Exception& e) {
      std::fprintf(stderr, "%s: %s\n", name_, e.getDescription().cStr());
      node = nullptr;
      return kj::str("stopped on an error");
    }
    node = nullptr;
    std::fprintf(stderr, "%s: stopped\n", name_);
    return true;
  }

  kj::ProcessContext& context_;
  const char* name_;
  kj::String version_;  // MainBuilder keeps a reference
  std::unique_ptr<StateMachine> machine_;
  server::Options options_;
};

}  // namespace keel::examples
