// keel nemesis: a cluster of real keel-server processes, each in its own network namespace.
//
// THE NETWORK (everything named with the run's prefix, e.g. "kn3f2a", so a cleanup pass can
// find leftovers of a run that died: `keel-nemesis --cleanup all`)
//
//   <prefix>br            a bridge in the harness's namespace, address 10.77.S.1/24
//   <prefix>n<i>          node i's network namespace; its veth end <prefix>p<i> is 10.77.S.(10+i)
//   <prefix>h<i>          the bridge end of node i's veth pair
//
// S is a subnet number no other interface of the machine uses. Packets go only between these
// addresses: the harness (on the bridge) talks to every node; nodes talk to each other.
// Partitions are iptables DROP rules in the INPUT chain of the receiving node's namespace (they
// vanish with the namespace); the harness's own traffic (10.77.S.1) is never dropped, so
// clients reach every node, as in Jepsen.
//
// PROCESSES: each server is forked by the thread that made the Cluster, enters its namespace
// with setns(2) and execs keel-server; PR_SET_PDEATHSIG kills it if the harness dies. Its
// stderr is appended to <out>/n<i>.log, its data lives in <out>/data/n<i>. A node may run with a
// skewed clock (Node::faketime, a libfaketime-style spec such as "+0 x0.9": its ticks and its
// monotonic clock run at 0.9 times the real rate, through keel-server's injected test clock,
// --unsafe-test-clock-rate), which the skew fault and the lease-slow-clock control use.
//
// Not thread-safe: one thread (the nemesis thread, which is the main thread) drives it.
#pragma once

#include "http-get.h"

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace keel::nemesis {

using testing::httpGet;
using testing::metricValue;

// Runs a shell command; returns its exit status (-1 if it could not run). Its output goes to
// `out` when given, else is discarded.
int shell(const std::string& command, std::string* out = nullptr);

// Removes every namespace and link whose name starts with `prefix` ("all": every name that
// looks like a nemesis run's, kn + 4 hex digits), after killing the processes inside those
// namespaces (by pid, as listed by `ip netns pids`). Returns how many objects it removed.
int cleanupLeftovers(const std::string& prefix);

struct ServerConfig {
  std::string serverPath;                // keel-server
  std::string outDir;                    // logs and data dirs
  std::vector<std::string> extraFlags;   // appended to every node's command line
  uint32_t tickMs = 50;
  uint32_t electionTicks = 10;
};

class Cluster {
 public:
  struct Node {
    uint64_t id = 0;
    std::string ns, ip, address, http, dataDir, logPath;
    pid_t pid = 0;          // 0: not running
    bool paused = false;    // SIGSTOPped
    bool join = false;      // started with --join (re-added after a removal)
    uint32_t starts = 0;
    std::string faketime;   // FAKETIME for the next starts ("" none), e.g. "+0 x0.9"
    std::string lastExit;   // how the last process ended, for the log
  };

  // Creates the namespaces, the bridge and the veths; throws std::runtime_error on failure
  // (after removing what it made).
  Cluster(std::string prefix, int nodes, ServerConfig config);
  // Kills every server and removes every namespace, link and rule the cluster made.
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Idempotent teardown (also called from the signal thread on SIGINT/SIGTERM).
  void teardown() noexcept;

  const std::string& prefix() const { return prefix_; }
  int size() const { return int(nodes_.size()); }
  Node& node(uint64_t id) { return nodes_.at(id); }
  std::vector<uint64_t> ids() const;
  std::vector<std::string> addresses() const;
  std::string hostIp() const { return hostIp_; }

  // ---- Processes ----
  void start(uint64_t id);
  // kill -9 and reap.
  void kill(uint64_t id);
  // SIGTERM, wait up to 5 s (then SIGKILL), reap.
  void stop(uint64_t id);
  void pause(uint64_t id);
  void resume(uint64_t id);
  bool running(uint64_t id) const { return nodes_.at(id).pid != 0; }
  // Reaps servers that exited on their own; returns a line per unexpected exit.
  std::vector<std::string> reapUnexpected();
  // Deletes node `id`'s data directory (it must not be running).
  void wipe(uint64_t id);

  // ---- Network ----
  // Drops every packet from `from` to `to` (at `to`'s INPUT chain).
  void drop(uint64_t from, uint64_t to);
  // Both directions between every node of `a` and every node of `b`.
  void cut(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b);
  // Removes every rule of every node.
  void heal();
  size_t rules() const { return dropped_.size(); }

 private:
  std::string prefix_;
  ServerConfig config_;
  std::string subnet_, hostIp_, bridge_;
  std::map<uint64_t, Node> nodes_;
  std::set<std::pair<uint64_t, uint64_t>> dropped_;
  bool tornDown_ = false;
};

}  // namespace keel::nemesis
