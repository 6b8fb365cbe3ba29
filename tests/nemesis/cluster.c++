// keel nemesis: the cluster of processes in network namespaces (cluster.h).
#include "cluster.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace keel::nemesis {

namespace {

constexpr uint16_t kPort = 7100;
constexpr uint16_t kHttpPort = 7200;

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

std::string describeStatus(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

int shell(const std::string& command, std::string* out) {
  std::string cmd = command + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  std::string text;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  int status = pclose(f);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int cleanupLeftovers(const std::string& prefix) {
  // A run's names: kn + 4 hex digits, then br, n<i>, h<i> or p<i>.
  std::regex any("^kn[0-9a-f]{4}(br|[nhp][0-9]+)$");
  auto ours = [&](const std::string& name) {
    if (prefix == "all") return std::regex_match(name, any);
    return name.rfind(prefix, 0) == 0 && std::regex_match(name, any);
  };
  int removed = 0;
  std::string text;
  shell("ip netns list", &text);
  for (const std::string& l : lines(text)) {
    std::string ns = l.substr(0, l.find(' '));
    if (!ours(ns)) continue;
    std::string pids;
    shell("ip netns pids " + ns, &pids);
    for (const std::string& p : lines(pids)) {
      pid_t pid = pid_t(std::strtol(p.c_str(), nullptr, 10));
      if (pid > 1) ::kill(pid, SIGKILL);
    }
    shell("ip netns del " + ns);
    ++removed;
  }
  shell("ip -o link show", &text);
  for (const std::string& l : lines(text)) {
    // "12: kn3f2ah1@if11: <...>"
    size_t a = l.find(": ");
    if (a == std::string::npos) continue;
    size_t b = l.find_first_of("@:", a + 2);
    std::string name = l.substr(a + 2, b - a - 2);
    if (!ours(name)) continue;
    shell("ip link del " + name);
    ++removed;
  }
  return removed;
}

Cluster::Cluster(std::string prefix, int nodes, ServerConfig config)
    : prefix_(std::move(prefix)), config_(std::move(config)) {
  if (nodes < 1 || nodes > 9) throw std::runtime_error("between 1 and 9 nodes");
  // A subnet number that no interface of this machine uses yet.
  std::string addrs;
  shell("ip -4 -o addr show", &addrs);
  int s = 0;
  for (int cand = 1 + int(std::hash<std::string>{}(prefix_) % 200); cand < 255 && !s; ++cand) {
    if (addrs.find("10.77." + std::to_string(cand) + ".") == std::string::npos) s = cand;
  }
  if (!s) throw std::runtime_error("no free 10.77.x.0/24 subnet");
  subnet_ = "10.77." + std::to_string(s) + ".";
  hostIp_ = subnet_ + "1";
  bridge_ = prefix_ + "br";
  try {
    auto must = [](const std::string& cmd) {
      std::string out;
      if (shell(cmd, &out) != 0) throw std::runtime_error("`" + cmd + "` failed: " + out);
    };
    must("ip link add " + bridge_ + " type bridge");
    must("ip addr add " + hostIp_ + "/24 dev " + bridge_);
    must("ip link set " + bridge_ + " up");
    for (int i = 1; i <= nodes; ++i) {
      Node n;
      n.id = uint64_t(i);
      n.ns = prefix_ + "n" + std::to_string(i);
      n.ip = subnet_ + std::to_string(10 + i);
      n.address = n.ip + ":" + std::to_string(kPort);
      n.http = n.ip + ":" + std::to_string(kHttpPort);
      n.dataDir = config_.outDir + "/data/n" + std::to_string(i);
      n.logPath = config_.outDir + "/n" + std::to_string(i) + ".log";
      nodes_[n.id] = n;
      std::string host = prefix_ + "h" + std::to_string(i), peer = prefix_ + "p" + std::to_string(i);
      must("ip netns add " + n.ns);
      must("ip link add " + host + " type veth peer name " + peer + " netns " + n.ns);
      must("ip link set " + host + " master " + bridge_ + " up");
      must("ip netns exec " + n.ns + " ip addr add " + n.ip + "/24 dev " + peer);
      must("ip netns exec " + n.ns + " ip link set " + peer + " up");
      must("ip netns exec " + n.ns + " ip link set lo up");
      std::filesystem::create_directories(n.dataDir);
    }
    // Links come up asynchronously; servers and clients retry their connections anyway.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } catch (...) {
    teardown();
    throw;
  }
}

Cluster::~Cluster() { teardown(); }

void Cluster::teardown() noexcept {
  if (tornDown_) return;
  tornDown_ = true;
  for (auto& [id, n] : nodes_) {
    if (n.pid > 0) {
      ::kill(n.pid, SIGKILL);
      int st;
      waitpid(n.pid, &st, 0);
      n.pid = 0;
    }
  }
  cleanupLeftovers(prefix_);
}

std::vector<uint64_t> Cluster::ids() const {
  std::vector<uint64_t> v;
  for (auto& [id, n] : nodes_) v.push_back(id);
  return v;
}

std::vector<std::string> Cluster::addresses() const {
  std::vector<std::string> v;
  for (auto& [id, n] : nodes_) v.push_back(n.address);
  return v;
}

void Cluster::start(uint64_t id) {
  Node& n = nodes_.at(id);
  if (n.pid) return;
  std::vector<std::string> args = {config_.serverPath, "--id", std::to_string(id), "--data-dir", n.dataDir,
                                   "--listen", n.address, "--http", n.http, "--tick-ms",
                                   std::to_string(config_.tickMs), "--election-ticks",
                                   std::to_string(config_.electionTicks)};
  std::string peers;
  for (auto& [pid, p] : nodes_) peers += (peers.empty() ? "" : ",") + std::to_string(pid) + "=" + p.address;
  args.push_back("--peers");
  args.push_back(peers);
  if (n.join) {
    args.push_back("--join");
    args.push_back("true");
  }
  for (auto& f : config_.extraFlags) args.push_back(f);
  // A skewed clock: the server's injected test clock (--unsafe-test-clock-rate). libfaketime
  // cannot be preloaded into keel-server, which is linked with jemalloc (the two recurse
  // into each other at start-up). `faketime` holds a libfaketime-style spec, "+0 x<rate>".
  if (!n.faketime.empty()) {
    size_t x = n.faketime.find('x');
    if (x == std::string::npos) throw std::runtime_error("a clock spec without a rate: " + n.faketime);
    for (std::string a : {"--unsafe-test", "true", "--unsafe-test-clock-rate"}) args.push_back(a);
    args.push_back(n.faketime.substr(x + 1));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string nsPath = "/run/netns/" + n.ns;
  // Everything the child needs is prepared before fork (no allocation after it).
  int nsFd = open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsFd < 0) throw std::runtime_error("cannot open " + nsPath);
  int logFd = open(n.logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logFd < 0) {
    close(nsFd);
    throw std::runtime_error("cannot open " + n.logPath);
  }
  char banner[200];
  int len = snprintf(banner, sizeof banner, "---- nemesis: start %u of n%llu%s%s%s ----\n", n.starts + 1,
                     (unsigned long long)id, n.faketime.empty() ? "" : " with the clock '", n.faketime.c_str(),
                     n.faketime.empty() ? "" : "'");
  if (write(logFd, banner, size_t(len)) < 0) {
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(nsFd);
    close(logFd);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    // The harness blocks SIGINT/SIGTERM in all its threads (a signal thread handles them);
    // the server must receive them.
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    if (setns(nsFd, CLONE_NEWNET) != 0) _exit(126);
    dup2(logFd, 1);
    dup2(logFd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execv(argv[0], argv.data());
    _exit(125);
  }
  close(nsFd);
  close(logFd);
  n.pid = pid;
  n.paused = false;
  ++n.starts;
}

void Cluster::kill(uint64_t id) {
  Node& n = nodes_.at(id);
  if (!n.pid) return;
  ::kill(n.pid, SIGKILL);
  int st = 0;
  waitpid(n.pid, &st, 0);
  n.lastExit = describeStatus(st);
  n.pid = 0;
  n.paused = false;
}

void Cluster::stop(uint64_t id) {
  Node& n = nodes_.at(id);
  if (!n.pid) return;
  if (n.paused) resume(id);
  ::kill(n.pid, SIGTERM);
  int st = 0;
  for (int i = 0; i < 100; ++i) {
    pid_t r = waitpid(n.pid, &st, WNOHANG);
    if (r == n.pid) {
      n.lastExit = describeStatus(st);
      n.pid = 0;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(id);
}

void Cluster::pause(uint64_t id) {
  Node& n = nodes_.at(id);
  if (!n.pid || n.paused) return;
  ::kill(n.pid, SIGSTOP);
  n.paused = true;
}

void Cluster::resume(uint64_t id) {
  Node& n = nodes_.at(id);
  if (!n.pid || !n.paused) return;
  ::kill(n.pid, SIGCONT);
  n.paused = false;
}

std::vector<std::string> Cluster::reapUnexpected() {
  std::vector<std::string> out;
  for (auto& [id, n] : nodes_) {
    if (!n.pid) continue;
    int st = 0;
    if (waitpid(n.pid, &st, WNOHANG) == n.pid) {
      n.lastExit = describeStatus(st);
      out.push_back("n" + std::to_string(id) + " exited on its own (" + n.lastExit + "); see " + n.logPath);
      n.pid = 0;
      n.paused = false;
    }
  }
  return out;
}

void Cluster::wipe(uint64_t id) {
  Node& n = nodes_.at(id);
  if (n.pid) throw std::logic_error("wipe of a running node");
  std::filesystem::remove_all(n.dataDir);
  std::filesystem::create_directories(n.dataDir);
}

void Cluster::drop(uint64_t from, uint64_t to) {
  if (from == to || dropped_.count({from, to})) return;
  Node& f = nodes_.at(from);
  Node& t = nodes_.at(to);
  std::string out;
  if (shell("ip netns exec " + t.ns + " iptables -w -A INPUT -s " + f.ip + " -j DROP", &out) != 0) {
    throw std::runtime_error("iptables failed in " + t.ns + ": " + out);
  }
  dropped_.insert({from, to});
}

void Cluster::cut(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  for (uint64_t x : a) {
    for (uint64_t y : b) {
      drop(x, y);
      drop(y, x);
    }
  }
}

void Cluster::heal() {
  std::set<uint64_t> touched;
  for (auto& [from, to] : dropped_) touched.insert(to);
  for (uint64_t id : touched) {
    std::string out;
    if (shell("ip netns exec " + nodes_.at(id).ns + " iptables -w -F INPUT", &out) != 0) {
      throw std::runtime_error("iptables -F failed in " + nodes_.at(id).ns + ": " + out);
    }
  }
  dropped_.clear();
}

}  // namespace keel::nemesis
