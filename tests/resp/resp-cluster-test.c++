// The Redis-protocol port end to end: a 3-node keel cluster on 127.0.0.1 (real keel-server
// processes, durable logs in a temporary directory), driven by Debian's redis-cli and
// redis-benchmark and by raw sockets. Bounded: every external command runs under `timeout`;
// the servers die with the test (PR_SET_PDEATHSIG) and the fixture kills them and removes
// their directory.
#include "processes.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

uint16_t freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs a shell command; returns its standard output (and its exit status in `status`).
std::string sh(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = ::pclose(f);
  if (status) *status = st;
  return out;
}

// A client on a raw TCP socket, for what redis-cli would hide.
class Raw {
 public:
  explicit Raw(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Raw() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += size_t(n);
    }
  }
  // Reads until `want` bytes arrived, the peer closed (eof = true) or `within` passed.
  std::string read(size_t want, std::chrono::milliseconds within, bool* eof = nullptr) {
    std::string out;
    auto end = std::chrono::steady_clock::now() + within;
    if (eof) *eof = false;
    while (out.size() < want && std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        if (eof) *eof = true;
        break;
      }
      out.append(buf, size_t(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class RespCluster : public ::testing::Test {
 protected:
  struct Proc {
    pid_t pid = -1;
    uint16_t port = 0, redis = 0;
  };
  static inline std::string root;
  static inline std::map<int, Proc> nodes;

  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/keel-resp-XXXXXX";
    root = ::mkdtemp(tmpl);
    for (int i = 1; i <= 3; ++i) nodes[i] = Proc{-1, freePort(), freePort()};
    std::string peers;
    for (auto& [id, n] : nodes) peers += (peers.empty() ? "" : ",") + std::to_string(id) + "=127.0.0.1:" + std::to_string(n.port);
    for (auto& [id, n] : nodes) {
      std::vector<std::string> args = {KEEL_SERVER_PATH, "--id", std::to_string(id), "--data-dir",
                                       root + "/n" + std::to_string(id), "--peers", peers, "--redis-listen",
                                       "127.0.0.1:" + std::to_string(n.redis), "--tick-ms", "20",
                                       "--election-ticks", "10", "--request-timeout-ms", "5000"};
      std::string logFile = root + "/n" + std::to_string(id) + ".log";
      pid_t pid = ::fork();
      if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      n.pid = pid;
    }
  }

  static void TearDownTestSuite() {
    // Gracefully: the Redis-protocol port runs in the servers alone, and a coverage build
    // counts it only when they exit cleanly (ctest sets KJ_CLEAN_SHUTDOWN, CMakeLists.txt).
    std::vector<pid_t*> pids;
    for (auto& [id, n] : nodes) pids.push_back(&n.pid);
    keel::testing::stopGracefully(pids);
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }

  void TearDown() override {
    if (!HasFailure()) return;
    for (auto& [id, n] : nodes) {
      std::ifstream in(root + "/n" + std::to_string(id) + ".log");
      std::stringstream ss;
      ss << in.rdbuf();
      std::string l = ss.str();
      if (l.size() > 4000) l = "...\n" + l.substr(l.size() - 4000);
      std::fprintf(stderr, "---- log of n%d ----\n%s\n", id, l.c_str());
    }
  }

  static std::string cli(uint16_t port, const std::string& args, int* status = nullptr) {
    return sh("timeout 20 redis-cli -h 127.0.0.1 -p " + std::to_string(port) + " " + args + " 2>&1", status);
  }

  // The id of a follower of a cluster that has a leader (0 when none within 15 s).
  static int follower() {
    auto end = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < end) {
      int leader = 0, follower = 0;
      for (auto& [id, n] : nodes) {
        std::string info = cli(n.redis, "INFO");
        if (info.find("role:leader") != std::string::npos) leader = id;
        if (info.find("role:follower") != std::string::npos && info.find("leader:0") == std::string::npos) follower = id;
      }
      if (leader && follower) return follower;
      std::this_thread::sleep_for(50ms);
    }
    return 0;
  }
};

TEST_F(RespCluster, RedisCliThroughAFollower) {
  int status = 0;
  sh("command -v redis-cli redis-benchmark", &status);
  ASSERT_EQ(status, 0) << "redis-cli and redis-benchmark are needed (Debian's redis-tools; scripts/deps.sh installs it)";
  int f = follower();
  ASSERT_NE(f, 0) << "no leader elected";
  uint16_t p = nodes[f].redis;
  EXPECT_EQ(cli(p, "PING"), "PONG\n");
  EXPECT_EQ(cli(p, "SET greeting hello"), "OK\n");
  // Reads are linearizable from any node: every node sees the write at once.
  for (auto& [id, n] : nodes) EXPECT_EQ(cli(n.redis, "GET greeting"), "hello\n") << "n" << id;
  EXPECT_EQ(cli(p, "APPEND greeting ' world'"), "11\n");
  EXPECT_EQ(cli(p, "STRLEN greeting"), "11\n");
  EXPECT_EQ(cli(p, "GETSET greeting bye"), "hello world\n");
  EXPECT_EQ(cli(p, "INCR n"), "1\n");
  EXPECT_EQ(cli(p, "INCRBY n 41"), "42\n");
  EXPECT_EQ(cli(p, "DECR n"), "41\n");
  EXPECT_EQ(cli(p, "MSET a 1 b 2"), "OK\n");
  EXPECT_EQ(cli(p, "MGET a b nope"), "1\n2\n\n");
  EXPECT_EQ(cli(p, "EXISTS a b nope"), "2\n");
  EXPECT_EQ(cli(p, "SET a 9 NX"), "\n");
  EXPECT_EQ(cli(p, "SET c 9 NX"), "OK\n");
  EXPECT_EQ(cli(p, "DEL a c"), "2\n");
  EXPECT_EQ(cli(p, "DBSIZE"), "3\n");
  EXPECT_EQ(cli(p, "KEYS '*'"), "b\ngreeting\nn\n");
  EXPECT_EQ(cli(p, "--scan --pattern '*'"), "b\ngreeting\nn\n");
  EXPECT_NE(cli(p, "SET a 1 EX 10").find("does not expire keys"), std::string::npos);
  EXPECT_EQ(cli(p, "FOO bar").rfind("ERR unknown command 'FOO', with args beginning with: 'bar' \n", 0), 0u);
  EXPECT_EQ(cli(p, "GET").rfind("ERR wrong number of arguments for 'get' command\n", 0), 0u);
  std::string info = cli(p, "INFO");
  EXPECT_NE(info.find("role:follower"), std::string::npos) << info;
  EXPECT_NE(info.find("term:"), std::string::npos);
  EXPECT_NE(info.find("commit:"), std::string::npos);
  EXPECT_EQ(cli(p, "COMMAND COUNT").find_first_not_of("0123456789\n"), std::string::npos);
  // Interactive use: commands on standard input, one connection.
  EXPECT_EQ(sh("printf 'SET k v\\nGET k\\n' | timeout 20 redis-cli -p " + std::to_string(p)), "OK\nv\n");
}

TEST_F(RespCluster, RedisBenchmarkRunsAgainstAFollowerAndTheLeader) {
  int f = follower();
  ASSERT_NE(f, 0);
  for (auto& [id, n] : nodes) {
    int status = -1;
    std::string out = sh("timeout 120 redis-benchmark -h 127.0.0.1 -p " + std::to_string(n.redis) +
                             " -t set,get -n 2000 -q 2>&1 | tr '\\r' '\\n' | grep 'requests per second'",
                         &status);
    EXPECT_EQ(status, 0) << "n" << id << ": " << out;
    EXPECT_NE(out.find("SET: "), std::string::npos) << out;
    EXPECT_NE(out.find("GET: "), std::string::npos) << out;
  }
  EXPECT_EQ(cli(nodes[f].redis, "GET key:__rand_int__"), "VXK\n");  // redis-benchmark's 3-byte value
}

TEST_F(RespCluster, PipelinedCommandsAnswerInOrderAndSeeEarlierWrites) {
  int f = follower();
  ASSERT_NE(f, 0);
  Raw c(nodes[f].redis);
  ASSERT_TRUE(c.connected());
  std::string req, want;
  for (int i = 0; i < 200; ++i) {
    std::string k = "p" + std::to_string(i % 7), v = std::to_string(i);
    req += "*3\r\n$3\r\nSET\r\n$" + std::to_string(k.size()) + "\r\n" + k + "\r\n$" + std::to_string(v.size()) + "\r\n" + v + "\r\n";
    req += "*2\r\n$3\r\nGET\r\n$" + std::to_string(k.size()) + "\r\n" + k + "\r\n";
    req += "PING\r\n";
    want += "+OK\r\n$" + std::to_string(v.size()) + "\r\n" + v + "\r\n+PONG\r\n";
  }
  c.send(req);
  EXPECT_EQ(c.read(want.size(), 30s), want);
}

TEST_F(RespCluster, AMalformedStreamClosesThatConnectionOnly) {
  int f = follower();
  ASSERT_NE(f, 0);
  Raw good(nodes[f].redis), bad(nodes[f].redis);
  ASSERT_TRUE(good.connected() && bad.connected());
  good.send("PING\r\n");
  EXPECT_EQ(good.read(7, 10s), "+PONG\r\n");
  // A command, then garbage: the command is answered, then the error, then the close.
  bad.send("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n:3\r\n");
  bool eof = false;
  std::string got = bad.read(1 << 20, 10s, &eof);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got, "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n");
  // An oversized inline request, on another connection.
  Raw big(nodes[f].redis);
  big.send(std::string(70000, 'a'));
  got = big.read(1 << 20, 10s, &eof);
  EXPECT_TRUE(eof);
  EXPECT_NE(got.find("Protocol error: too big inline request"), std::string::npos);
  // The first connection and the node carry on.
  good.send("*2\r\n$4\r\nECHO\r\n$2\r\nok\r\n");
  EXPECT_EQ(good.read(8, 10s), "$2\r\nok\r\n");
  EXPECT_EQ(cli(nodes[f].redis, "PING"), "PONG\n");
  // QUIT answers, then closes.
  Raw q(nodes[f].redis);
  q.send("QUIT\r\nPING\r\n");
  got = q.read(1 << 20, 10s, &eof);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got, "+OK\r\n");
}

// A SET larger than an entry may be (1 MiB) gets an error reply; the connection carries on.
TEST_F(RespCluster, ASetLargerThanAnEntryIsAnErrorReply) {
  int f = follower();
  ASSERT_NE(f, 0);
  Raw conn(nodes[f].redis);
  ASSERT_TRUE(conn.connected());
  std::string value((1 << 20) + 1, 'x');
  conn.send("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$" + std::to_string(value.size()) + "\r\n" + value + "\r\n");
  EXPECT_EQ(conn.read(22, 10s), "-ERR keel: too large\r\n");
  conn.send("*1\r\n$4\r\nPING\r\n");
  EXPECT_EQ(conn.read(7, 10s), "+PONG\r\n");
  EXPECT_EQ(cli(nodes[f].redis, "EXISTS big"), "0\n");
}

TEST_F(RespCluster, SigtermWithOpenConnectionsStopsCleanly) {
  int f = follower();
  ASSERT_NE(f, 0);
  Raw idle(nodes[f].redis), busy(nodes[f].redis);
  ASSERT_TRUE(idle.connected() && busy.connected());
  busy.send("*3\r\n$3\r\nSET\r\n$1\r\nz\r\n$1\r\n1\r\n");
  EXPECT_EQ(busy.read(5, 10s), "+OK\r\n");
  busy.send("*3\r\n$3\r\nSET\r\n$1\r\nz\r\n$1\r\n2\r\n");  // maybe in flight at the stop
  ::kill(nodes[f].pid, SIGTERM);
  int status = 0;
  pid_t got = 0;
  for (int i = 0; i < 300 && got == 0; ++i) {
    got = ::waitpid(nodes[f].pid, &status, WNOHANG);
    if (got == 0) std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(got, nodes[f].pid) << "the node did not stop within 15 s";
  nodes[f].pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  bool eof = false;
  idle.read(1 << 20, 5s, &eof);
  EXPECT_TRUE(eof);
}

}  // namespace
