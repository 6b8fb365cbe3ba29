// keel: the client library.
//
// A Client knows the addresses of a cluster's nodes (any subset will do), finds the leader,
// follows redirects and retries with backoff across leader changes until a per-call deadline.
// Two layers:
//   * generic: propose(bytes) -> result bytes and query(bytes) -> bytes, for any state machine;
//   * key-value: put, get, del, cas, scan over KvStateMachine, with a client session
//     (include/keel/kv.h) so that a write retried after a lost reply or a leader change applies
//     exactly once.
//
// Outcomes are values (Outcome<T>), never exceptions: Timeout (the deadline passed and nothing
// was sent that could have applied), UnknownOutcome (a write without a session may or may not
// have applied), NotFound, CompareFailed, Unavailable (no node answered), TooLarge, and
// Rejected (the server refused the request as malformed).
//
// Threads and loops: every method comes in a kj::Promise form (xxxAsync) that runs on the
// event loop of the thread that made the Client, and a blocking form that waits on that loop.
// A Client made with Client(Options) creates its own loop (kj::setupAsyncIo) and must not be
// used on a thread that has one; Client(Options, io) uses the caller's loop (then only the
// Async forms may be used from inside promise callbacks). A Client belongs to one thread.
#pragma once

#include <keel/tls.h>

#include <kj/async-io.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace keel {

enum class ClientError : uint8_t {
  None,
  Timeout,
  UnknownOutcome,
  NotFound,
  CompareFailed,
  Unavailable,
  TooLarge,
  Rejected,
};
const char* toString(ClientError e) noexcept;

template <typename T>
struct Outcome {
  ClientError error = ClientError::None;
  T value{};
  std::string detail;  // a sentence for humans when error != None
  bool ok() const noexcept { return error == ClientError::None; }
};

struct NodeInfo {
  uint64_t id = 0;
  std::string address;
  std::string role;
  uint64_t term = 0, leader = 0, commit = 0, applied = 0, lastIndex = 0, firstIndex = 0, snapshotIndex = 0;
  std::vector<uint64_t> voters, learners, outgoing;
  struct Peer {
    uint64_t id = 0;
    std::string address, state;
    uint64_t match = 0, next = 0, lag = 0;
    bool connected = false;
  };
  std::vector<Peer> peers;  // the leader's view of its followers
  std::string httpAddress;
};

enum class Read : uint8_t { Linearizable, Stale };

class Client {
 public:
  struct Options {
    std::vector<std::string> addresses;  // host:port of any nodes of the cluster
    // Per-call deadline. The nodes are told it and answer by it; should one not (a connect
    // that hangs, an answer lost), the call ends as a timeout one second past it all the same.
    uint32_t timeoutMs = 5000;
    bool sessions = true;                // exactly-once writes for the key-value API
    // Mutual TLS to the nodes (include/keel/tls.h): this client's certificate and key, the
    // cluster's CA, and the name the nodes' certificates carry. Files that cannot be used are
    // a caller error: the constructor throws (kj::Exception), naming the file and why.
    TlsOptions tls;
  };

  explicit Client(Options options);
  Client(Options options, kj::AsyncIoContext& io);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ---- Generic (any state machine) ----
  kj::Promise<Outcome<std::string>> proposeAsync(std::string command);
  kj::Promise<Outcome<std::string>> queryAsync(std::string query, Read read = Read::Linearizable);
  Outcome<std::string> propose(std::string command);
  Outcome<std::string> query(std::string query, Read read = Read::Linearizable);

  // ---- Key-value (KvStateMachine) ----
  kj::Promise<Outcome<bool>> putAsync(std::string key, std::string value);
  kj::Promise<Outcome<std::string>> getAsync(std::string key, Read read = Read::Linearizable);
  kj::Promise<Outcome<bool>> delAsync(std::string key);  // NotFound when absent
  // Sets `key` to `value` (nullopt: deletes it) if its value is `expected` (nullopt: absent).
  // On CompareFailed, `value` holds the current value ("" when absent) and detail says which.
  kj::Promise<Outcome<std::string>> casAsync(std::string key, std::optional<std::string> expected,
                                             std::optional<std::string> value);
  kj::Promise<Outcome<std::vector<std::pair<std::string, std::string>>>> scanAsync(
      std::string start, std::string end, uint32_t limit = 0, Read read = Read::Linearizable);
  Outcome<bool> put(std::string key, std::string value);
  Outcome<std::string> get(std::string key, Read read = Read::Linearizable);
  Outcome<bool> del(std::string key);
  Outcome<std::string> cas(std::string key, std::optional<std::string> expected, std::optional<std::string> value);
  Outcome<std::vector<std::pair<std::string, std::string>>> scan(std::string start, std::string end,
                                                                 uint32_t limit = 0, Read read = Read::Linearizable);

  // ---- Administration ----
  // The status of the node at `address`.
  kj::Promise<Outcome<NodeInfo>> statusAsync(std::string address);
  Outcome<NodeInfo> status(std::string address);
  enum class Change : uint8_t { AddLearner, AddVoter, Remove };
  Outcome<bool> changeMembership(Change change, uint64_t node, std::string address = "");
  Outcome<uint64_t> transferLeadership(uint64_t to);  // 0: any; returns the new leader
  Outcome<uint64_t> snapshot(std::string address);  // returns the snapshot's index

  kj::WaitScope& waitScope();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel
