// keel internal: the Redis-protocol port of a node (keel-server --redis-listen ADDR).
//
// A thin KJ front end over src/resp: it accepts TCP connections, feeds their bytes to a
// resp::Parser, runs the commands through a resp::Dispatcher whose Backend is the Node (writes
// through Node::propose, which forwards to the leader from a follower; reads through
// Node::query with ReadIndex), and writes the replies back in the order of the commands.
//
// Per connection: commands are pipelined (consecutive writes, or consecutive reads, are in
// flight together; a read never overlaps a write of the same connection, see resp/commands.h);
// at most kMaxInFlight commands are queued and kMaxOutputBytes of replies buffered before the
// connection stops reading (back-pressure); a malformed stream gets `-ERR Protocol error: ...`
// and that connection alone is closed. A write refused as "not leader" or "unavailable" (an
// election in progress: it was not applied) is retried until the request deadline.
//
// Lifetime: a RespServer borrows the Node and must be destroyed before it; destroying it
// closes every connection and cancels what they wait for.
#pragma once

#include "node.h"

#include <kj/async-io.h>

#include <memory>
#include <string>

namespace keel::server {

class RespServer final {
 public:
  static constexpr size_t kMaxInFlight = 4096;
  static constexpr size_t kMaxOutputBytes = 8 << 20;

  RespServer(Node& node, kj::AsyncIoContext& io);
  ~RespServer();
  RespServer(const RespServer&) = delete;
  RespServer& operator=(const RespServer&) = delete;

  // Binds `address` (host:port) and starts accepting; resolves once listening (rejects when
  // the address cannot be bound).
  kj::Promise<void> listen(const std::string& address);
  // The port actually bound (useful with port 0).
  uint16_t port() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::server
