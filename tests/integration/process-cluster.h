// keel integration tests: a cluster of real keel-server processes on 127.0.0.1.
//
// Ports are picked by binding port 0 (the kernel hands out a free one), so tests may run in
// parallel. Data lives in a fresh temporary directory that the destructor removes, after it has
// killed every process it started.
#pragma once

#include "processes.h"

#include <keel/client.h>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace keel::integration {

// Polls `done` every `step` until it holds (true) or `within` has passed (false).
template <typename Pred>
bool waitFor(Pred done, std::chrono::milliseconds within, std::chrono::milliseconds step = std::chrono::milliseconds(5)) {
  auto end = std::chrono::steady_clock::now() + within;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(step);
  }
  return true;
}

inline uint16_t freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class ProcessCluster {
 public:
  struct NodeProc {
    uint64_t id = 0;
    std::string address, http;
    pid_t pid = -1;
    std::string dir, logFile;
    std::vector<std::string> extra;
  };

  // `extra` flags go to every node, each "{id}" in them replaced by the node's id.
  explicit ProcessCluster(int n, std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
    char tmpl[] = "/tmp/keel-it-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    for (int i = 1; i <= n; ++i) define(uint64_t(i));
    for (auto& [id, node] : nodes_) start(id);
  }

  ~ProcessCluster() {
    std::vector<pid_t*> pids;
    for (auto& [id, n] : nodes_) pids.push_back(&n.pid);
    keel::testing::stopGracefully(pids);
    if (::testing::Test::HasFailure() || getenv("KEEL_DUMP")) dumpLogs();
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  NodeProc& define(uint64_t id) {
    NodeProc& n = nodes_[id];
    n.id = id;
    n.address = "127.0.0.1:" + std::to_string(freePort());
    n.http = "127.0.0.1:" + std::to_string(freePort());
    n.dir = root_ + "/n" + std::to_string(id);
    n.logFile = root_ + "/n" + std::to_string(id) + ".log";
    return n;
  }

  std::string peersFlag(bool all = false) const {
    std::string s;
    for (auto& [id, n] : nodes_) {
      if (!all && joiners_.count(id)) continue;
      s += (s.empty() ? "" : ",") + std::to_string(id) + "=" + n.address;
    }
    return s;
  }

  // Starts (or restarts) node `id` with its data dir.
  void start(uint64_t id, std::vector<std::string> more = {}) {
    NodeProc& n = nodes_.at(id);
    std::vector<std::string> args = {serverPath(), "--id", std::to_string(id), "--data-dir", n.dir,
                                     "--listen", n.address, "--http", n.http, "--peers",
                                     joiners_.count(id) ? peersFlag(true) : peersFlag(), "--tick-ms", "20",
                                     "--election-ticks", "10", "--heartbeat-ticks", "2",
                                     "--request-timeout-ms", "2000"};
    for (std::string e : extra_) {
      for (size_t at; (at = e.find("{id}")) != std::string::npos;) e.replace(at, 4, std::to_string(id));
      args.push_back(e);
    }
    for (auto& e : n.extra) args.push_back(e);
    for (auto& e : more) args.push_back(e);
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(n.logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      // KJ ends a program with _Exit() unless this is set; a clean exit lets a coverage build
      // write its counters and the leak checker look at the heap.
      ::setenv("KJ_CLEAN_SHUTDOWN", "1", 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    n.pid = pid;
  }

  // Adds a node that starts empty with --join (it knows the others; they do not know it yet).
  uint64_t addJoiner(uint64_t id) {
    define(id);
    joiners_.insert(id);
    nodes_.at(id).extra = {"--join", "true"};
    start(id);
    return id;
  }

  void kill(uint64_t id, int sig) {
    NodeProc& n = nodes_.at(id);
    if (n.pid <= 0) return;
    ::kill(n.pid, sig);
    int status = 0;
    ::waitpid(n.pid, &status, 0);
    n.pid = -1;
    lastStatus_ = status;
  }
  // Sends a signal without waiting for the process (SIGSTOP, SIGCONT).
  void signal(uint64_t id, int sig) {
    if (nodes_.at(id).pid > 0) ::kill(nodes_.at(id).pid, sig);
  }
  // Stops with SIGTERM and returns the exit status (as waitpid gives it).
  int terminate(uint64_t id) {
    kill(id, SIGTERM);
    return lastStatus_;
  }
  bool running(uint64_t id) const { return nodes_.at(id).pid > 0; }

  std::vector<std::string> addresses() const {
    std::vector<std::string> v;
    for (auto& [id, n] : nodes_)
      if (!joiners_.count(id)) v.push_back(n.address);
    return v;
  }
  const NodeProc& node(uint64_t id) const { return nodes_.at(id); }
  const std::string& root() const { return root_; }

  Client::Options clientOptions(uint32_t timeoutMs = 5000) const {
    Client::Options o;
    o.addresses = addresses();
    o.timeoutMs = timeoutMs;
    return o;
  }

  // Waits until some running node reports itself leader; returns its id (0 on timeout).
  uint64_t waitLeader(Client& c, std::chrono::milliseconds within = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
      for (auto& [id, n] : nodes_) {
        if (n.pid <= 0) continue;
        auto s = c.status(n.address);
        if (s.ok() && s.value.role == "leader") return id;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
  }

  // Waits until node `id` has applied at least `index`.
  bool waitApplied(Client& c, uint64_t id, uint64_t index, std::chrono::milliseconds within = std::chrono::seconds(15)) {
    return waitFor(
        [&] {
          auto s = c.status(nodes_.at(id).address);
          return s.ok() && s.value.applied >= index;
        },
        within, std::chrono::milliseconds(20));
  }

  std::string log(uint64_t id) const {
    std::ifstream in(nodes_.at(id).logFile);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  void dumpLogs() const {
    for (auto& [id, n] : nodes_) {
      std::string l = log(id);
      if (l.size() > 6000) l = "...\n" + l.substr(l.size() - 6000);
      std::fprintf(stderr, "---- log of n%llu ----\n%s\n", (unsigned long long)id, l.c_str());
    }
  }

  static std::string serverPath() { return KEEL_SERVER_PATH; }

 private:
  std::string root_;
  std::vector<std::string> extra_;
  std::map<uint64_t, NodeProc> nodes_;
  std::set<uint64_t> joiners_;
  int lastStatus_ = 0;
};

}  // namespace keel::integration
