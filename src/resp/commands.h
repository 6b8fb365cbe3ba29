// keel internal: the Redis commands of the RESP port, over a small interface the server
// implements (Backend), so that the commands are tested without a network or a cluster.
//
// Every key-value command becomes one command or query of KvStateMachine (include/keel/kv.h):
// writes go through Raft (Backend::write), reads are linearizable (Backend::read). Commands
// that touch several keys (MSET, DEL k1 k2, MGET) are one log entry or one query, so they are
// atomic as in Redis. What keel cannot do the Redis way gets a Redis-style error that says so:
// keys never expire, so SET ... EX/PX/EXAT/PXAT is refused; there is one database (SELECT 0).
//
// ORDER within a connection: a client may pipeline; replies leave in the order of the commands.
// A read that follows a write of the same connection must see it, and a write that follows a
// read must not be seen by it, so the front end never has reads and writes of one connection in
// flight at the same time (kindOf() tells them apart); consecutive writes go in flight together
// (the leader appends them in order), so do consecutive reads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace keel::resp {

// What a write or a read through consensus came to.
struct BackendResult {
  bool ok = false;     // `reply` holds the state machine's reply (kv::Reply encoding)
  std::string reply;
  std::string error;   // when !ok: one short sentence (no leader, timeout, unknown outcome...)
};
using Completion = std::function<void(BackendResult)>;

// The node's state for INFO.
struct NodeInfo {
  uint64_t id = 0;
  std::string role;  // leader, follower, candidate, ...
  uint64_t term = 0, commit = 0, applied = 0, lastIndex = 0, leader = 0;
  std::string address, leaderAddress;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Proposes a KV command (kv::encode*); `done` is called once, later or at once.
  virtual void write(std::string command, Completion done) = 0;
  // A linearizable KV query.
  virtual void read(std::string query, Completion done) = 0;
  virtual NodeInfo info() = 0;
};

enum class Kind { Local, Read, Write, Quit };
// How the command `args` (non-empty) runs; unknown commands and bad arity are Local (errors).
Kind kindOf(const std::vector<std::string>& args);

// One per connection (it holds the connection's SCAN cursors).
class Dispatcher final {
 public:
  static constexpr size_t kKeysLimit = 10000;  // KEYS refuses to list more keys than this
  static constexpr size_t kScanMaxCount = 1000;
  static constexpr size_t kMaxCursors = 256;

  explicit Dispatcher(Backend& backend) : backend_(backend) {}
  // Runs one command; `reply` gets its RESP bytes exactly once (perhaps before this returns).
  void dispatch(std::vector<std::string> args, std::function<void(std::string)> reply);

 private:
  Backend& backend_;
  std::map<uint64_t, std::string> cursors_;  // SCAN cursor -> the key to resume at
  uint64_t nextCursor_ = 1;

  friend struct Commands;
};

}  // namespace keel::resp
