// Integration tests of mutual TLS (include/keel/tls.h): keel-server processes with --tls-*, and
// clients with Client::Options::tls and the keel tool's --tls-* flags. The certificates come
// from scripts/tls-certs.sh, as an operator's would.
#include "checks.h"

#include <raft.capnp.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/compat/tls.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace keel::integration {
namespace {

using namespace std::chrono_literals;

// A CA with node and client certificates (scripts/tls-certs.sh) in a directory of its own.
class Certs {
 public:
  explicit Certs(const std::string& name = "keel") {
    char tmpl[] = "/tmp/keel-tls-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    std::string cmd = std::string(KEEL_SOURCE_DIR) + "/scripts/tls-certs.sh " + dir_ + " --name " + name + " >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  ~Certs() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string file(const std::string& base) const { return dir_ + "/" + base; }
  // A new key and certificate for `base` (node1, ...), signed by the same CA for `days` days:
  // the script keeps the files that exist, so those two go first.
  bool signAgain(const std::string& base, int days) {
    std::filesystem::remove(file(base + ".pem"));
    std::filesystem::remove(file(base + "-key.pem"));
    std::string cmd = std::string(KEEL_SOURCE_DIR) + "/scripts/tls-certs.sh " + dir_ + " --days " + std::to_string(days) + " >/dev/null";
    return std::system(cmd.c_str()) == 0;
  }
  // keel-server's flags for node {id} (ProcessCluster replaces {id}).
  std::vector<std::string> nodeFlags() const {
    return {"--tls-cert", file("node{id}.pem"), "--tls-key", file("node{id}-key.pem"), "--tls-ca", file("ca.pem")};
  }
  TlsOptions client() const { return {file("client.pem"), file("client-key.pem"), file("ca.pem"), "keel"}; }

 private:
  std::string dir_;
};

// get(key) by a client of its own (one event loop per thread: on a thread of its own).
Outcome<std::string> getWith(const Client::Options& o, const std::string& key) {
  Outcome<std::string> r;
  std::thread([&] { r = Client(o).get(key); }).join();
  return r;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Asks the node at `address` for its status over a TLS connection made by hand: trusting
// `caFile`, checking the node's name, and presenting `certFile`'s certificate (none: "").
// "" when it answered, else what failed.
std::string statusByHand(const std::string& address, const std::string& caFile, const std::string& certFile,
                         const std::string& keyFile) {
  std::string error;
  std::thread([&] {
    try {
      auto io = kj::setupAsyncIo();
      kj::TlsCertificate ca(readFile(caFile).c_str());
      kj::TlsContext::Options opts;
      opts.useSystemTrustStore = false;
      opts.trustedCertificates = kj::arrayPtr(&ca, 1);
      kj::Maybe<kj::TlsKeypair> keypair;
      if (!certFile.empty()) {
        keypair = kj::TlsKeypair{kj::TlsPrivateKey(readFile(keyFile).c_str()), kj::TlsCertificate(readFile(certFile).c_str())};
        KJ_IF_MAYBE(k, keypair) { opts.defaultKeypair = *k; }
      }
      kj::TlsContext tls(kj::mv(opts));
      size_t colon = address.rfind(':');
      auto addr = io.provider->getNetwork().parseAddress(address.substr(0, colon), uint(std::stoul(address.substr(colon + 1)))).wait(io.waitScope);
      auto stream = tls.wrapClient(addr->connect().wait(io.waitScope), "keel").wait(io.waitScope);
      capnp::TwoPartyClient client(*stream);
      auto node = client.bootstrap().castAs<wire::Node>();
      auto answer = node.statusRequest().send().wait(io.waitScope);
      if (!answer.hasStatus()) error = "no status";
    } catch (const kj::Exception& e) {
      error = e.getDescription().cStr();
      if (error.empty()) error = "failed";
    }
  }).join();
  return error;
}

double refusedHandshakes(const ProcessCluster& cluster, uint64_t nodes = 3) {
  double sum = 0;
  for (uint64_t id = 1; id <= nodes; ++id) sum += std::max(0.0, metric(cluster, id, "keel_tls_refused_connections_total"));
  return sum;
}

TEST(Tls, AClusterReplicatesAndServesOnlyOverMutualTls) {
  Certs certs, other;
  ProcessCluster cluster(3, certs.nodeFlags());
  Client::Options o = cluster.clientOptions();
  o.tls = certs.client();
  Client c(o);
  uint64_t leader = cluster.waitLeader(c);
  ASSERT_NE(leader, 0u);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c.put("k" + std::to_string(i), "v" + std::to_string(i)).ok()) << i;
  auto st = c.status(cluster.node(leader).address);
  ASSERT_TRUE(st.ok()) << st.detail;
  // Every node applied every write: the peers' connections are TLS too.
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_TRUE(cluster.waitApplied(c, id, st.value.commit)) << "n" << id;
  auto got = c.get("k7");
  ASSERT_TRUE(got.ok()) << got.detail;
  EXPECT_EQ(got.value, "v7");
  EXPECT_EQ(refusedHandshakes(cluster), 0);

  // A plaintext client gets nowhere: the nodes drop it at the handshake, and its call times
  // out saying so.
  auto plain = getWith(cluster.clientOptions(1500), "k7");
  EXPECT_EQ(plain.error, ClientError::Timeout) << plain.detail;
  EXPECT_NE(plain.detail.find("last connection lost"), std::string::npos) << plain.detail;
  EXPECT_GT(refusedHandshakes(cluster), 0);
  // A client of another CA cannot verify the nodes, and says so at once; nor can a client of
  // this CA that expects another name in the nodes' certificates.
  Client::Options f = cluster.clientOptions(1500);
  f.tls = other.client();
  auto foreign = getWith(f, "k7");
  EXPECT_FALSE(foreign.ok());
  EXPECT_NE(foreign.detail.find("certificate is not trusted"), std::string::npos) << foreign.detail;
  f.tls = certs.client();
  f.tls.name = "elsewhere";
  auto misnamed = getWith(f, "k7");
  EXPECT_FALSE(misnamed.ok());
  EXPECT_NE(misnamed.detail.find("hostname mismatch"), std::string::npos) << misnamed.detail;
  // The keel tool, with --tls-*.
  std::string keel = std::filesystem::path(ProcessCluster::serverPath()).parent_path().string() + "/keel";
  std::string tool = keel + " --cluster " + cluster.node(leader).address + " --tls-cert " + certs.file("client.pem") +
                     " --tls-key " + certs.file("client-key.pem") + " --tls-ca " + certs.file("ca.pem");
  auto [putOut, putStatus] = runCommand(tool + " put tool yes");
  EXPECT_EQ(putStatus, 0) << putOut;
  auto [getOut, getStatus] = runCommand(tool + " get tool");
  EXPECT_EQ(getStatus, 0) << getOut;
  EXPECT_EQ(getOut, "yes\n");
  // ... and its own files are checked before it connects.
  auto [badOut, badStatus] = runCommand(keel + " --cluster " + cluster.node(leader).address + " --tls-cert " +
                                 certs.file("client.pem") + " --tls-key " + certs.file("node1-key.pem") +
                                 " --tls-ca " + certs.file("ca.pem") + " get tool");
  EXPECT_EQ(badStatus, 1);
  EXPECT_NE(badOut.find("not the key of the certificate"), std::string::npos) << badOut;
}

// The nodes check clients' certificates, not only clients the nodes': a client that trusts the
// cluster's CA but presents no certificate, or one of another CA, is refused.
TEST(Tls, TheNodesRefuseAClientWithoutACertificateOfTheirCa) {
  Certs certs, other;
  ProcessCluster cluster(3, certs.nodeFlags());
  std::string at = cluster.node(1).address, ca = certs.file("ca.pem");
  ASSERT_TRUE(waitFor([&] { return statusByHand(at, ca, certs.file("client.pem"), certs.file("client-key.pem")).empty(); }, 10s))
      << statusByHand(at, ca, certs.file("client.pem"), certs.file("client-key.pem"));
  EXPECT_NE(statusByHand(at, ca, "", ""), "");
  EXPECT_NE(statusByHand(at, ca, other.file("client.pem"), other.file("client-key.pem")), "");
  EXPECT_TRUE(waitFor([&] { return metric(cluster, 1, "keel_tls_refused_connections_total") >= 2; }, 5s));
}

// A connection that never starts its handshake is dropped once the peer timeout has passed
// (1 s with the test cluster's ticks), and counted: it holds nothing for long.
TEST(Tls, AConnectionThatNeverHandshakesIsDroppedAfterThePeerTimeout) {
  Certs certs;
  ProcessCluster cluster(3, certs.nodeFlags());
  ASSERT_TRUE(waitFor([&] { return metric(cluster, 1, "keel_tls_refused_connections_total") >= 0; }, 10s));
  double before = metric(cluster, 1, "keel_tls_refused_connections_total");
  const std::string& at = cluster.node(1).address;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(std::stoul(at.substr(at.rfind(':') + 1))));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  auto start = std::chrono::steady_clock::now();
  char byte;
  ssize_t got = ::recv(fd, &byte, 1, 0);
  auto waited = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_EQ(got, 0) << "the node did not close the connection";
  EXPECT_GE(waited, 900ms);
  EXPECT_LT(waited, 4s);
  EXPECT_TRUE(waitFor([&] { return metric(cluster, 1, "keel_tls_refused_connections_total") >= before + 1; }, 2s));
}

// A node whose certificate another CA signed is a stranger: the members refuse its
// connections and it refuses theirs, so it learns nothing, while the members go on.
TEST(Tls, ANodeOfAnotherCaGetsNothingFromTheCluster) {
  Certs certs, other;
  ProcessCluster cluster(3, certs.nodeFlags());
  Client::Options o = cluster.clientOptions();
  o.tls = certs.client();
  o.addresses = {cluster.node(1).address, cluster.node(2).address};
  Client c(o);
  ASSERT_NE(cluster.waitLeader(c), 0u);
  ASSERT_TRUE(c.put("before", "1").ok());
  // n3 comes back with the other CA's files (flags given later win); it keeps its data.
  cluster.kill(3, SIGKILL);
  ASSERT_NE(cluster.waitLeader(c), 0u);
  cluster.start(3, {"--tls-cert", other.file("node3.pem"), "--tls-key", other.file("node3-key.pem"), "--tls-ca",
                    other.file("ca.pem")});
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c.put("after" + std::to_string(i), "x").ok()) << i;
  uint64_t leader = cluster.waitLeader(c);
  ASSERT_TRUE(leader == 1 || leader == 2) << leader;
  auto st = c.status(cluster.node(leader).address);
  ASSERT_TRUE(st.ok()) << st.detail;
  EXPECT_TRUE(waitFor([&] { return refusedHandshakes(cluster) > 0; }, 5s));
  // n3 is up (its HTTP port answers) but has applied none of the later writes.
  std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(cluster.running(3));
  double n3Applied = metric(cluster, 3, "keel_applied_index");
  EXPECT_GE(n3Applied, 0) << "n3's /metrics";
  EXPECT_LT(n3Applied, double(st.value.commit));
  EXPECT_NE(cluster.log(3).find("refused a connection: TLS"), std::string::npos);
}

// A CA file may hold several CAs (the way from one CA to another): nodes and clients whose
// certificates either signed are one cluster.
TEST(Tls, ACaFileOfTwoCasTrustsTheCertificatesOfBoth) {
  Certs a, b;
  std::string both = a.file("both-cas.pem");
  std::ofstream(both) << readFile(a.file("ca.pem")) << readFile(b.file("ca.pem"));
  ProcessCluster cluster(3, {"--tls-cert", a.file("node{id}.pem"), "--tls-key", a.file("node{id}-key.pem"), "--tls-ca", both});
  Client::Options o = cluster.clientOptions();
  o.tls = {b.file("client.pem"), b.file("client-key.pem"), both, "keel"};
  Client c(o);
  ASSERT_NE(cluster.waitLeader(c), 0u);
  cluster.kill(3, SIGKILL);
  cluster.start(3, {"--tls-cert", b.file("node3.pem"), "--tls-key", b.file("node3-key.pem")});
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.put("k" + std::to_string(i), "v").ok()) << i;
  uint64_t leader = cluster.waitLeader(c);
  ASSERT_NE(leader, 0u);
  auto st = c.status(cluster.node(leader).address);
  ASSERT_TRUE(st.ok()) << st.detail;
  EXPECT_TRUE(cluster.waitApplied(c, 3, st.value.commit));
  EXPECT_EQ(refusedHandshakes(cluster), 0);
}

// The notAfter line of the certificate a node presents to a new connection (openssl s_client
// with the client's files); "" when the handshake failed.
std::string servedExpiry(const Certs& certs, const std::string& address) {
  auto [out, status] = runCommand("openssl s_client -connect " + address + " -cert " + certs.file("client.pem") +
                                  " -key " + certs.file("client-key.pem") + " -CAfile " + certs.file("ca.pem") +
                                  " </dev/null 2>/dev/null | openssl x509 -noout -enddate");
  return status == 0 && out.rfind("notAfter=", 0) == 0 ? out : "";
}

// SIGHUP reads the --tls-* files again: connections made afterwards, accepted or to peers, get
// the new certificate, and /metrics says when it expires. Files that fail a check change nothing.
TEST(Tls, SighupReadsTheFilesAgainAndBadOnesChangeNothing) {
  Certs certs;
  ProcessCluster cluster(3, certs.nodeFlags());
  Client::Options o = cluster.clientOptions();
  o.tls = certs.client();
  Client c(o);
  ASSERT_NE(cluster.waitLeader(c), 0u);
  std::string at = cluster.node(1).address;
  std::string before = servedExpiry(certs, at);
  ASSERT_FALSE(before.empty());
  double expiry0 = metric(cluster, 1, "keel_tls_certificate_expiry_seconds");
  EXPECT_GT(expiry0, double(std::time(nullptr)));
  auto reloads = [&](const char* result) {
    return metric(cluster, 1, std::string("keel_tls_reloads_total{result=\"") + result + "\"}");
  };
  EXPECT_EQ(reloads("ok"), 0);

  // n1's certificate signed again, for 30 days instead of 825.
  ASSERT_TRUE(certs.signAgain("node1", 30));
  cluster.signal(1, SIGHUP);
  ASSERT_TRUE(waitFor([&] { return reloads("ok") == 1; }, 5s)) << cluster.log(1);
  double expiry1 = metric(cluster, 1, "keel_tls_certificate_expiry_seconds");
  EXPECT_NEAR(expiry0 - expiry1, (825 - 30) * 86400.0, 86400.0);
  std::string after = servedExpiry(certs, at);
  EXPECT_FALSE(after.empty());
  EXPECT_NE(after, before);
  EXPECT_NE(cluster.log(1).find("TLS files reloaded"), std::string::npos);
  // A node that connects to n1 anew checks the new certificate: n2, restarted, catches up.
  cluster.kill(2, SIGKILL);
  cluster.start(2);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.put("k" + std::to_string(i), "v").ok()) << i;
  uint64_t leader = cluster.waitLeader(c);
  ASSERT_NE(leader, 0u);
  auto st = c.status(cluster.node(leader).address);
  ASSERT_TRUE(st.ok()) << st.detail;
  for (uint64_t id = 1; id <= 3; ++id) EXPECT_TRUE(cluster.waitApplied(c, id, st.value.commit)) << "n" << id;
  EXPECT_EQ(refusedHandshakes(cluster), 0);

  // A certificate file that is not one: n1 says why and keeps what it had.
  std::ofstream(certs.file("node1.pem")) << "not a certificate\n";
  cluster.signal(1, SIGHUP);
  ASSERT_TRUE(waitFor([&] { return reloads("failed") == 1; }, 5s)) << cluster.log(1);
  EXPECT_EQ(reloads("ok"), 1);
  EXPECT_EQ(metric(cluster, 1, "keel_tls_certificate_expiry_seconds"), expiry1);
  EXPECT_EQ(servedExpiry(certs, at), after);
  std::string log = cluster.log(1);
  EXPECT_NE(log.find("TLS files not reloaded (those read before stay in use): --tls-cert " + certs.file("node1.pem") +
                     ": no PEM certificate"),
            std::string::npos)
      << log;
  EXPECT_TRUE(c.status(at).ok());
}

// --redis-tls: the Redis-protocol port speaks mutual TLS with the node's files, to redis-cli
// and redis-benchmark given the client's; anything else is refused at the handshake. (Each
// command is bounded: a TLS client facing a plaintext port waits for an answer forever.)
TEST(Tls, TheRedisPortSpeaksMutualTlsWithRedisTls) {
  Certs certs, other;
  std::string resp = "127.0.0.1:" + std::to_string(freePort());
  auto flags = certs.nodeFlags();
  flags.insert(flags.end(), {"--redis-listen", resp, "--redis-tls", "true"});
  ProcessCluster cluster(1, flags);
  Client::Options o = cluster.clientOptions();
  o.tls = certs.client();
  Client c(o);
  ASSERT_NE(cluster.waitLeader(c), 0u);
  std::string port = resp.substr(resp.rfind(':') + 1);
  auto cli = [&](const Certs& who) {
    return "timeout 20 redis-cli -p " + port + " --tls --cert " + who.file("client.pem") + " --key " + who.file("client-key.pem") +
           " --cacert " + certs.file("ca.pem") + " ";
  };
  auto [set, setStatus] = runCommand(cli(certs) + "SET k v");
  EXPECT_EQ(setStatus, 0);
  EXPECT_EQ(set, "OK\n");
  EXPECT_EQ(runCommand(cli(certs) + "GET k").first, "v\n");
  // Pipelined, over many connections: redis-benchmark with the same files.
  auto [bench, benchStatus] =
      runCommand("timeout 60 redis-benchmark -p " + port + " --tls --cert " + certs.file("client.pem") + " --key " +
                 certs.file("client-key.pem") + " --cacert " + certs.file("ca.pem") + " -t set,get -n 2000 -c 8 -P 4 -q");
  EXPECT_EQ(benchStatus, 0) << bench;
  EXPECT_NE(bench.find("SET: "), std::string::npos) << bench;
  EXPECT_NE(bench.find("GET: "), std::string::npos) << bench;
  EXPECT_EQ(refusedHandshakes(cluster, 1), 0);
  // Plaintext, and a certificate of another CA, are refused; the node goes on.
  auto [plain, plainStatus] = runCommand("timeout 20 redis-cli -p " + port + " PING");
  EXPECT_EQ(plain.find("PONG"), std::string::npos) << plain;
  auto [foreign, foreignStatus] = runCommand(cli(other) + "PING");
  EXPECT_EQ(foreign.find("PONG"), std::string::npos) << foreign;
  EXPECT_TRUE(waitFor([&] { return refusedHandshakes(cluster, 1) >= 2; }, 5s)) << refusedHandshakes(cluster, 1);
  EXPECT_EQ(runCommand(cli(certs) + "PING").first, "PONG\n");
  // SIGHUP: the port's new connections get the new certificate too.
  std::string before = servedExpiry(certs, resp);
  ASSERT_FALSE(before.empty());
  ASSERT_TRUE(certs.signAgain("node1", 30));
  cluster.signal(1, SIGHUP);
  ASSERT_TRUE(waitFor([&] { return metric(cluster, 1, "keel_tls_reloads_total{result=\"ok\"}") == 1; }, 5s));
  std::string after = servedExpiry(certs, resp);
  EXPECT_FALSE(after.empty());
  EXPECT_NE(after, before);
  EXPECT_EQ(runCommand(cli(certs) + "GET k").first, "v\n");
  // The flag needs the files, and the port.
  expectRefused("--redis-listen 127.0.0.1:1 --redis-tls true", "--redis-tls needs --redis-listen and the --tls-* files");
}

// SIGHUP no longer stops a node (its default action): without --tls-* it only says so.
TEST(Tls, ANodeWithoutTlsFilesLivesThroughSighup) {
  ProcessCluster cluster(1);
  Client c(cluster.clientOptions());
  ASSERT_NE(cluster.waitLeader(c), 0u);
  cluster.signal(1, SIGHUP);
  EXPECT_TRUE(waitFor([&] { return cluster.log(1).find("SIGHUP: no --tls-* files") != std::string::npos; }, 5s));
  EXPECT_TRUE(cluster.running(1));
  EXPECT_TRUE(c.put("k", "v").ok());
}

TEST(Tls, UnusableFilesAreRefusedAtStartNamingTheFile) {
  Certs certs, misnamed("elsewhere");
  auto f = [&](const std::string& base) { return certs.file(base); };
  std::string ca = " --tls-ca " + f("ca.pem");
  expectRefused("--tls-cert " + f("node1.pem"), "needs all three of --tls-cert, --tls-key and --tls-ca");
  expectRefused("--tls-cert " + f("node1.pem") + " --tls-key " + f("node2-key.pem") + ca,
                "--tls-key " + f("node2-key.pem") + ": not the key of the certificate");
  expectRefused("--tls-cert " + misnamed.file("node1.pem") + " --tls-key " + misnamed.file("node1-key.pem") + ca,
                "does not verify against --tls-ca");
  // A client's certificate names no node; another CA's node names another cluster.
  expectRefused("--tls-cert " + f("client.pem") + " --tls-key " + f("client-key.pem") + ca, "does not name keel");
  expectRefused("--tls-cert " + misnamed.file("node1.pem") + " --tls-key " + misnamed.file("node1-key.pem") +
                    " --tls-ca " + misnamed.file("ca.pem"),
                "does not name keel");
  expectRefused("--tls-cert " + f("missing.pem") + " --tls-key " + f("node1-key.pem") + ca,
                "--tls-cert " + f("missing.pem") + ": cannot read the file");
  expectRefused("--tls-cert " + f("node1-key.pem") + " --tls-key " + f("node1-key.pem") + ca, "no PEM certificate");
  expectRefused("--tls-cert " + f("node1.pem") + " --tls-key " + f("node1.pem") + ca, "not an unencrypted PEM private key");
  expectRefused("--tls-cert ''", "--tls-cert: expected a file");
  // The name is the flag's: with it, the other cluster's node starts.
  std::string cmd = ProcessCluster::serverPath() + " --id 1 --memory-log true --peers 1=127.0.0.1:" +
                    std::to_string(freePort()) + " --tls-cert " + misnamed.file("node1.pem") + " --tls-key " +
                    misnamed.file("node1-key.pem") + " --tls-ca " + misnamed.file("ca.pem") + " --tls-name elsewhere";
  auto [out, status] = runCommand("timeout -s TERM 1 " + cmd);
  EXPECT_EQ(status, 124) << out;  // still running when timeout(1) stopped it
}

}  // namespace
}  // namespace keel::integration
