// keel: the server's options (flags and config file).
#include "options.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace keel::server {

namespace {

bool parseU64(const std::string& s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint64_t(c - '0');
  }
  out = v;
  return true;
}

bool parseBool(const std::string& s, bool& out) {
  if (s == "true" || s == "1" || s == "yes" || s == "on") { out = true; return true; }
  if (s == "false" || s == "0" || s == "no" || s == "off") { out = false; return true; }
  return false;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

}  // namespace


const std::vector<OptionHelp>& optionHelp() {
  static const std::vector<OptionHelp> h = {
      {"id", "<n>", "This node's id (a positive integer). Required."},
      {"data-dir", "<dir>", "Where the log and snapshots live. Required (unless --memory-log)."},
      {"listen", "<host:port>", "Address for peers and clients. Default: this node's --peers entry."},
      {"peers", "<id=host:port,...>", "The initial members (this node included)."},
      {"join", "<true|false>", "Start empty and wait to be added by an existing cluster."},
      {"cluster-id", "<name>", "Refuse peers of any other cluster. Default: keel."},
      {"http", "<host:port>", "Serve /metrics and /status there. Default: none."},
      {"redis-listen", "<host:port>", "Serve the Redis protocol (RESP2) there. Default: off."},
      {"redis-tls", "<bool>",
       "The --redis-listen port over mutual TLS with the --tls-* files, as --listen (redis-cli --tls --cert "
       "--key --cacert). Default: false (plaintext)."},
      {"tls-cert", "<file>",
       "PEM certificate of this node, signed by --tls-ca and naming --tls-name: with --tls-key and "
       "--tls-ca, every connection of --listen (peers and clients) is mutual TLS. Default: plaintext."},
      {"tls-key", "<file>", "PEM private key of --tls-cert (unencrypted)."},
      {"tls-ca", "<file>", "PEM certificate(s) of the CA that signs every node's and client's certificate."},
      {"tls-name", "<name>", "The DNS name every node's certificate carries. Default: keel."},
      {"tick-ms", "<ms>", "Length of one tick of the consensus module. Default: 50."},
      {"election-ticks", "<n>", "Election timeout in ticks (randomized up to twice). Default: 10."},
      {"heartbeat-ticks", "<n>", "Heartbeat interval in ticks. Default: 2."},
      {"check-quorum", "<true|false>",
       "A leader steps down when a quorum has not answered within an election timeout. Default: true."},
      {"read-mode", "<readindex|lease>",
       "How linearizable reads confirm leadership: a round of heartbeats (readindex) or the leader's "
       "lease, which assumes bounded clock drift (see docs/operations.md). Default: readindex."},
      {"max-clock-drift-percent", "<n>",
       "Lease reads: how much faster (in percent) one node's clock may run than another's; the lease "
       "is shortened to match. Default: 10."},
      {"max-message-bytes", "<n>", "Largest RPC message accepted. Default: 16777216."},
      {"snapshot-entries", "<n>", "Snapshot and compact the log after this many entries. Default: 20000."},
      {"snapshot-log-ratio", "<r>",
       "Also wait until the entries applied since the last snapshot add up to r times its bytes, so "
       "that a large state is not serialized every --snapshot-entries (0: the count alone). Default: 2."},
      {"request-timeout-ms", "<ms>", "Default deadline of a client request. Default: 5000."},
      {"leader-sync-delay-ms", "<ms>",
       "While its followers alone can commit, the leader syncs its own log this long after the "
       "first write it left unsynced, one sync for all written by then (0: every write, before "
       "it counts its own copy). Default: 5."},
      {"session-timeout-ms", "<ms>", "Idle client sessions expire after this. Default: 600000."},
      {"memory-log", "<true|false>", "Keep the log in memory (not durable; for tests)."},
      {"quiet", "<true|false>", "Log only warnings."},
      // Deliberate defects for the fault tests (tests/nemesis); each needs --unsafe-test too.
      {"unsafe-test", "<true|false>", "TESTS ONLY: allow the unsafe-test-* defects below."},
      {"unsafe-test-ack-before-persist", "<true|false>",
       "TESTS ONLY (breaks durability): acknowledge writes before they are durable and write the log lazily."},
      {"unsafe-test-stale-reads", "<true|false>",
       "TESTS ONLY (breaks linearizability): serve every read from local state, without ReadIndex."},
      {"unsafe-test-clock-rate", "<rate>",
       "TESTS ONLY (clock skew): this node's clock runs <rate> times as fast as the real one (0.01..100)."},
      {"unsafe-test-sync-delay-ms", "<ms>",
       "TESTS ONLY (a slow disk): every fdatasync of this node's log takes <ms> more (1..60000)."},
  };
  return h;
}

std::string setOption(Options& o, const std::string& name, const std::string& value) {
  uint64_t n = 0;
  auto num = [&](uint64_t lo, uint64_t hi) -> bool { return parseU64(value, n) && n >= lo && n <= hi; };
  auto bad = [&](const char* what) { return "--" + name + ": " + what + " (got '" + value + "')"; };
  if (name == "id") {
    if (!num(1, UINT64_MAX >> 1)) return bad("expected a positive integer");
    o.id = n;
  } else if (name == "data-dir") {
    if (value.empty()) return bad("expected a directory");
    o.dataDir = value;
  } else if (name == "listen" || name == "http" || name == "redis-listen") {
    std::string h;
    uint16_t p;
    if (!splitAddress(value, h, p)) return bad("expected host:port");
    (name == "listen" ? o.listen : name == "http" ? o.http : o.redisListen) = value;
  } else if (name == "tls-cert" || name == "tls-key" || name == "tls-ca" || name == "tls-name") {
    if (value.empty()) return bad(name == "tls-name" ? "expected a name" : "expected a file");
    (name == "tls-cert" ? o.tls.certFile : name == "tls-key" ? o.tls.keyFile : name == "tls-ca" ? o.tls.caFile : o.tls.name) = value;
  } else if (name == "peers") {
    o.peers.clear();
    std::stringstream ss(value);
    std::string item;
    while (std::getline(ss, item, ',')) {
      item = trim(item);
      size_t eq = item.find('=');
      std::string h;
      uint16_t p;
      uint64_t id;
      if (eq == std::string::npos || !parseU64(item.substr(0, eq), id) || id == 0 ||
          !splitAddress(item.substr(eq + 1), h, p)) {
        return bad("expected id=host:port,id=host:port,...");
      }
      if (o.peers.count(id)) return bad("a node id appears twice");
      o.peers[id] = item.substr(eq + 1);
    }
    if (o.peers.empty()) return bad("expected at least one member");
  } else if (name == "join" || name == "memory-log" || name == "quiet" || name == "check-quorum" || name == "redis-tls") {
    bool b;
    if (!parseBool(value, b)) return bad("expected true or false");
    (name == "join"           ? o.join
     : name == "quiet"        ? o.quiet
     : name == "check-quorum" ? o.checkQuorum
     : name == "redis-tls"    ? o.redisTls
                              : o.memoryLog) = b;
  } else if (name == "read-mode") {
    if (value == "readindex") o.readMode = ReadMode::Safe;
    else if (value == "lease") o.readMode = ReadMode::Lease;
    else return bad("expected readindex or lease");
  } else if (name == "unsafe-test" || name == "unsafe-test-ack-before-persist" ||
             name == "unsafe-test-stale-reads") {
    bool b;
    if (!parseBool(value, b)) return bad("expected true or false");
    (name == "unsafe-test" ? o.unsafeTest
     : name == "unsafe-test-stale-reads" ? o.unsafeTestStaleReads
                                         : o.unsafeTestAckBeforePersist) = b;
  } else if (name == "unsafe-test-clock-rate") {
    char* end = nullptr;
    double r = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !(r >= 0.01 && r <= 100)) return bad("expected a rate from 0.01 to 100");
    o.unsafeTestClockRate = r;
  } else if (name == "unsafe-test-sync-delay-ms") {
    if (!num(1, 60000)) return bad("expected 1..60000");
    o.unsafeTestSyncDelayMs = uint32_t(n);
  } else if (name == "cluster-id") {
    if (value.empty() || value.size() > 128) return bad("expected a name of 1 to 128 characters");
    o.clusterId = value;
  } else if (name == "tick-ms") {
    if (!num(1, 60000)) return bad("expected 1..60000");
    o.tickMs = uint32_t(n);
  } else if (name == "election-ticks") {
    if (!num(2, 100000)) return bad("expected 2..100000");
    o.electionTicks = uint32_t(n);
  } else if (name == "heartbeat-ticks") {
    if (!num(1, 100000)) return bad("expected 1..100000");
    o.heartbeatTicks = uint32_t(n);
  } else if (name == "max-message-bytes") {
    if (!num(4096, 1ull << 31)) return bad("expected 4096..2147483648");
    o.maxMessageBytes = n;
  } else if (name == "snapshot-entries") {
    if (!num(1, UINT64_MAX >> 1)) return bad("expected a positive integer");
    o.snapshotEntries = n;
  } else if (name == "snapshot-log-ratio") {
    char* end = nullptr;
    double r = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !(r >= 0 && r <= 1000)) return bad("expected a ratio from 0 to 1000");
    o.snapshotLogRatio = r;
  } else if (name == "leader-sync-delay-ms") {
    if (!num(0, 10000)) return bad("expected 0..10000");
    o.leaderSyncDelayMs = uint32_t(n);
  } else if (name == "request-timeout-ms") {
    if (!num(1, 3600000)) return bad("expected 1..3600000");
    o.requestTimeoutMs = uint32_t(n);
  } else if (name == "max-clock-drift-percent") {
    if (!num(0, 1000)) return bad("expected 0..1000");
    o.maxClockDriftPercent = uint32_t(n);
  } else if (name == "session-timeout-ms") {
    if (!num(1, UINT64_MAX >> 1)) return bad("expected a positive integer");
    o.sessionTimeoutMs = n;
  } else {
    return "unknown option '" + name + "'";
  }
  return "";
}

std::string loadConfigFile(Options& o, const std::string& path) {
  std::ifstream in(path);
  if (!in) return "cannot read config file " + path;
  std::string line;
  int lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    line = trim(line);
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) return path + ":" + std::to_string(lineNo) + ": expected name = value";
    std::string err = setOption(o, trim(line.substr(0, eq)), trim(line.substr(eq + 1)));
    if (!err.empty()) return path + ":" + std::to_string(lineNo) + ": " + err;
  }
  return "";
}

std::string validate(const Options& o) {
  if (o.id == 0) return "--id is required";
  if (o.dataDir.empty() && !o.memoryLog) return "--data-dir is required";
  if (o.peers.empty()) return "--peers is required (it names the members and their addresses)";
  if (!o.join && !o.peers.count(o.id)) return "--peers must include this node's id (" + std::to_string(o.id) + ")";
  if (o.listen.empty() && !o.peers.count(o.id)) return "--listen is required";
  if (o.heartbeatTicks >= o.electionTicks) return "--heartbeat-ticks must be below --election-ticks";
  if (o.redisTls && (o.redisListen.empty() || !o.tls.enabled()))
    return "--redis-tls needs --redis-listen and the --tls-* files";
  if (o.readMode == ReadMode::Lease && !o.checkQuorum) {
    return "--read-mode lease requires --check-quorum true: the lease relies on the followers' promise "
           "to vote for no one else within an election timeout of hearing from the leader, which comes "
           "with check-quorum (dissertation §4.2.3, §6.4.1)";
  }
  if (o.readMode == ReadMode::Lease) {
    Config c;
    c.id = NodeId{1};
    c.electionTicks = o.electionTicks;
    c.heartbeatTicks = o.heartbeatTicks;
    c.maxClockDriftPercent = o.maxClockDriftPercent;
    c.readMode = ReadMode::Lease;
    if (c.leaseTicks() < 1) {
      return "--read-mode lease: --election-ticks " + std::to_string(o.electionTicks) +
             " leaves no lease with --max-clock-drift-percent " + std::to_string(o.maxClockDriftPercent) +
             " (the lease is (election ticks - 1) / (1 + drift) ticks); raise --election-ticks";
    }
  }
  if (o.readMode == ReadMode::Lease && o.unsafeTestStaleReads) {
    return "--read-mode lease and --unsafe-test-stale-reads together: the stale reads bypass every read "
           "mode, so the combination tests nothing";
  }
  if ((o.unsafeTestAckBeforePersist || o.unsafeTestStaleReads || o.unsafeTestClockRate != 1.0 ||
       o.unsafeTestSyncDelayMs) && !o.unsafeTest) {
    return "--unsafe-test-ack-before-persist, --unsafe-test-stale-reads, --unsafe-test-clock-rate and "
           "--unsafe-test-sync-delay-ms are for tests only: they need --unsafe-test as well";
  }
  return "";
}

}  // namespace keel::server
