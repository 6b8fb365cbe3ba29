// keel: the command-line tool of a keel cluster. `keel --help` lists the commands.
//
// Exit status: 0 success; 1 failure (unavailable, timeout, unknown outcome, rejected);
// 2 bad usage; 3 the key was not found (get, del); 4 a compare-and-set found another value.
#include <keel/client.h>

#include <kj/vector.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

const char* kUsage = R"(keel: talk to a keel cluster.

usage: keel [--cluster ADDR,ADDR,...] [--json] [--timeout MS]
            [--tls-cert FILE --tls-key FILE --tls-ca FILE [--tls-name NAME]] COMMAND [ARGS]

commands:
  put KEY VALUE                 set KEY to VALUE
  get KEY [--stale]             print KEY's value (exit 3 when absent); --stale: local read
  del KEY                       delete KEY (exit 3 when absent)
  cas KEY EXPECTED NEW          set KEY to NEW if it holds EXPECTED (exit 4 otherwise);
                                --absent instead of EXPECTED: only if KEY does not exist;
                                --delete instead of NEW: delete KEY when it matches
  scan [START [END]] [--limit N]  list keys in [START, END) in order
  status                        a table of every node
  members                       list the members
  members add-learner ID ADDR   add node ID (listening at ADDR) as a learner
  members promote ID            make learner ID a voter (also adds a new voter: ADDR after ID)
  members remove ID             remove node ID
  transfer-leader [ID]          hand leadership to ID (default: the most up-to-date follower)
  snapshot [ADDR]               snapshot and compact the log of the node at ADDR (default: all)
  bench [--clients N] [--count N | --duration S] [--value-size B] [--reads] [--connections M]
                                sequential writes (or linearizable reads) of distinct keys by N
                                concurrent clients sharing M connections (default: N); a live
                                progress line and a summary

--tls-*: mutual TLS to a cluster that runs with --tls-* (this client's certificate and key,
signed by the cluster's CA; --tls-name: the name in the nodes' certificates, default keel).

The cluster comes from --cluster, else $KEEL_CLUSTER, else the local cluster of ./run.sh
(127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103).

exit status: 0 ok, 1 failure, 2 bad usage, 3 not found, 4 compare failed
)";

struct Args {
  std::vector<std::string> addresses;
  bool json = false;
  uint32_t timeoutMs = 5000;
  keel::TlsOptions tls;
  std::vector<std::string> rest;

  keel::Client::Options clientOptions() const {
    keel::Client::Options o;
    o.addresses = addresses;
    o.timeoutMs = timeoutMs;
    o.tls = tls;
    return o;
  }
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    size_t b = s.find(sep, a);
    if (b == std::string::npos) b = s.size();
    if (b > a) out.push_back(s.substr(a, b - a));
    a = b + 1;
  }
  return out;
}

int usage(const std::string& why) {
  std::fprintf(stderr, "keel: %s\n(try keel --help)\n", why.c_str());
  return 2;
}

std::string jsonString(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += char(c);
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else o += char(c);
  }
  return o + "\"";
}

template <typename T>
int report(const keel::Outcome<T>& o, const Args& a) {
  if (o.ok()) return 0;
  if (a.json) {
    std::printf("{\"error\":%s,\"detail\":%s}\n", jsonString(keel::toString(o.error)).c_str(),
                jsonString(o.detail).c_str());
  } else {
    std::fprintf(stderr, "keel: %s%s%s\n", keel::toString(o.error), o.detail.empty() ? "" : ": ", o.detail.c_str());
  }
  switch (o.error) {
    case keel::ClientError::NotFound: return 3;
    case keel::ClientError::CompareFailed: return 4;
    default: return 1;
  }
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, size_t(p * double(v.size())));
  std::nth_element(v.begin(), v.begin() + long(i), v.end());
  return v[i];
}

int bench(const Args& a, std::vector<std::string> args) {
  uint32_t clients = 16, valueSize = 16, connections = 0;
  uint64_t count = 0;
  double duration = 10;
  bool reads = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto val = [&]() -> std::string { return i + 1 < args.size() ? args[++i] : ""; };
    if (args[i] == "--clients") clients = uint32_t(std::atoi(val().c_str()));
    else if (args[i] == "--count") count = std::strtoull(val().c_str(), nullptr, 10);
    else if (args[i] == "--duration") duration = std::atof(val().c_str());
    else if (args[i] == "--value-size") valueSize = uint32_t(std::atoi(val().c_str()));
    else if (args[i] == "--connections") connections = uint32_t(std::atoi(val().c_str()));
    else if (args[i] == "--reads") reads = true;
    else return usage("bench: unknown option " + args[i]);
  }
  if (clients == 0 || (count == 0 && duration <= 0)) return usage("bench: bad --clients, --count or --duration");
  // Each keel::Client is one connection and one session, and carries any number of concurrent
  // operations: --connections N spreads the clients over N of them (default: one each).
  if (connections == 0 || connections > clients) connections = clients;
  auto io = kj::setupAsyncIo();
  std::vector<std::unique_ptr<keel::Client>> cs;
  for (uint32_t i = 0; i < connections; ++i) {
    cs.push_back(std::make_unique<keel::Client>(a.clientOptions(), io));
  }
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  std::vector<double> lat;
  uint64_t started = 0, done = 0, failed = 0;
  std::string value(valueSize, 'v');
  bool tty = isatty(2);
  struct Worker {
    static kj::Promise<void> run(keel::Client& c, uint32_t w, uint64_t n, const std::string& value, bool reads,
                                 uint64_t count, Clock::time_point end, uint64_t& started, uint64_t& done,
                                 uint64_t& failed, std::vector<double>& lat) {
      if (count ? started >= count : Clock::now() >= end) return kj::READY_NOW;
      ++started;
      auto t0 = Clock::now();
      std::string key = "bench/" + std::to_string(w) + "/" + std::to_string(reads ? n % 100 : n);
      auto step = [&, t0](bool ok) {
        lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        ++done;
        if (!ok) ++failed;
      };
      kj::Promise<void> p = reads ? c.getAsync(key).then([step](keel::Outcome<std::string> o) mutable {
        step(o.ok() || o.error == keel::ClientError::NotFound);
      })
                                  : c.putAsync(key, value).then([step](keel::Outcome<bool> o) mutable { step(o.ok()); });
      return p.then([&c, w, n, &value, reads, count, end, &started, &done, &failed, &lat]() {
        return run(c, w, n + 1, value, reads, count, end, started, done, failed, lat);
      });
    }
  };
  kj::Vector<kj::Promise<void>> ps;
  for (uint32_t i = 0; i < clients; ++i) {
    ps.add(Worker::run(*cs[i % connections], i, 0, value, reads, count, end, started, done, failed, lat));
  }
  auto all = kj::joinPromises(ps.releaseAsArray());
  auto& timer = io.provider->getTimer();
  struct Progress {
    static kj::Promise<void> run(kj::Timer& t, uint64_t& done, Clock::time_point start, bool tty) {
      return t.afterDelay(1 * kj::SECONDS).then([&t, &done, start, tty]() {
        double s = std::chrono::duration<double>(Clock::now() - start).count();
        if (tty) std::fprintf(stderr, "\r%8.1fs %10llu ops %10.0f ops/s", s, (unsigned long long)done, double(done) / s);
        return run(t, done, start, tty);
      });
    }
  };
  all.exclusiveJoin(Progress::run(timer, done, start, tty)).wait(io.waitScope);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (tty) std::fprintf(stderr, "\n");
  double p50 = percentile(lat, 0.5), p99 = percentile(lat, 0.99), p999 = percentile(lat, 0.999);
  double mx = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  if (a.json) {
    std::printf("{\"op\":\"%s\",\"clients\":%u,\"ops\":%llu,\"failed\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.1f,"
                "\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.0f}\n",
                reads ? "get" : "put", clients, (unsigned long long)done, (unsigned long long)failed, secs,
                double(done) / secs, p50, p99, p999, mx);
  } else {
    std::printf("%s: %u clients, %llu ops (%llu failed) in %.2f s: %.0f ops/s; latency p50 %.2f ms, p99 %.2f ms, "
                "p99.9 %.2f ms, max %.2f ms\n",
                reads ? "get" : "put", clients, (unsigned long long)done, (unsigned long long)failed, secs,
                double(done) / secs, p50 / 1000, p99 / 1000, p999 / 1000, mx / 1000);
  }
  return failed ? 1 : 0;
}

std::string ids(const std::vector<uint64_t>& v) {
  std::string s;
  for (uint64_t i : v) s += (s.empty() ? "" : ",") + std::to_string(i);
  return s.empty() ? "-" : s;
}

int status(keel::Client& c, const Args& a) {
  std::vector<keel::NodeInfo> nodes;
  std::vector<std::string> down;
  for (const auto& addr : a.addresses) {
    auto s = c.status(addr);
    if (s.ok()) nodes.push_back(s.value);
    else down.push_back(addr);
  }
  // The leader's view gives each follower's lag.
  std::map<uint64_t, uint64_t> lag;
  for (auto& n : nodes)
    if (n.role == "leader")
      for (auto& p : n.peers) lag[p.id] = p.lag;
  if (a.json) {
    std::printf("[");
    for (size_t i = 0; i < nodes.size(); ++i) {
      auto& n = nodes[i];
      std::printf("%s{\"id\":%llu,\"address\":%s,\"role\":%s,\"term\":%llu,\"leader\":%llu,\"commit\":%llu,"
                  "\"applied\":%llu,\"last_index\":%llu,\"lag\":%llu}",
                  i ? "," : "", (unsigned long long)n.id, jsonString(n.address).c_str(), jsonString(n.role).c_str(),
                  (unsigned long long)n.term, (unsigned long long)n.leader, (unsigned long long)n.commit,
                  (unsigned long long)n.applied, (unsigned long long)n.lastIndex, (unsigned long long)lag[n.id]);
    }
    for (size_t i = 0; i < down.size(); ++i)
      std::printf("%s{\"address\":%s,\"role\":\"unreachable\"}", nodes.empty() && i == 0 ? "" : ",",
                  jsonString(down[i]).c_str());
    std::printf("]\n");
  } else {
    std::printf("%-4s %-21s %-12s %6s %10s %10s %10s %6s\n", "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED",
                "LAST", "LAG");
    for (auto& n : nodes)
      std::printf("%-4llu %-21s %-12s %6llu %10llu %10llu %10llu %6s\n", (unsigned long long)n.id, n.address.c_str(),
                  n.role.c_str(), (unsigned long long)n.term, (unsigned long long)n.commit,
                  (unsigned long long)n.applied, (unsigned long long)n.lastIndex,
                  n.role == "leader" ? "-" : std::to_string(lag[n.id]).c_str());
    for (auto& d : down) std::printf("%-4s %-21s %-12s\n", "?", d.c_str(), "unreachable");
  }
  return nodes.empty() ? 1 : 0;
}

int run(Args& a) {
  if (a.rest.empty()) return usage("no command");
  std::string cmd = a.rest[0];
  std::vector<std::string> args(a.rest.begin() + 1, a.rest.end());
  if (cmd == "bench") return bench(a, args);
  keel::Client c(a.clientOptions());
  auto need = [&](size_t n) { return args.size() == n; };
  if (cmd == "put") {
    if (!need(2)) return usage("put KEY VALUE");
    auto r = c.put(args[0], args[1]);
    if (r.ok()) a.json ? (void)std::printf("{\"ok\":true}\n") : (void)0;
    return report(r, a);
  }
  if (cmd == "get") {
    keel::Read how = keel::Read::Linearizable;
    if (args.size() == 2 && args[1] == "--stale") how = keel::Read::Stale, args.pop_back();
    if (!need(1)) return usage("get KEY [--stale]");
    auto r = c.get(args[0], how);
    if (r.ok()) {
      if (a.json) std::printf("{\"value\":%s%s}\n", jsonString(r.value).c_str(), how == keel::Read::Stale ? ",\"stale\":true" : "");
      else std::printf("%s\n", r.value.c_str());
    }
    return report(r, a);
  }
  if (cmd == "del") {
    if (!need(1)) return usage("del KEY");
    auto r = c.del(args[0]);
    if (r.ok() && a.json) std::printf("{\"ok\":true}\n");
    return report(r, a);
  }
  if (cmd == "cas") {
    if (!need(3)) return usage("cas KEY EXPECTED|--absent NEW|--delete");
    std::optional<std::string> e = args[1] == "--absent" ? std::nullopt : std::optional<std::string>(args[1]);
    std::optional<std::string> v = args[2] == "--delete" ? std::nullopt : std::optional<std::string>(args[2]);
    auto r = c.cas(args[0], e, v);
    if (r.error == keel::ClientError::CompareFailed && !a.json) {
      std::fprintf(stderr, "keel: compare failed: %s%s\n", r.detail.c_str(),
                   r.detail == "the current value differs" ? (" (it is '" + r.value + "')").c_str() : "");
      return 4;
    }
    if (r.ok() && a.json) std::printf("{\"ok\":true}\n");
    return report(r, a);
  }
  if (cmd == "scan") {
    uint32_t limit = 0;
    std::vector<std::string> pos;
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--limit" && i + 1 < args.size()) limit = uint32_t(std::atoi(args[++i].c_str()));
      else pos.push_back(args[i]);
    }
    if (pos.size() > 2) return usage("scan [START [END]] [--limit N]");
    auto r = c.scan(pos.size() > 0 ? pos[0] : "", pos.size() > 1 ? pos[1] : "", limit);
    if (r.ok()) {
      if (a.json) {
        std::printf("[");
        for (size_t i = 0; i < r.value.size(); ++i)
          std::printf("%s{\"key\":%s,\"value\":%s}", i ? "," : "", jsonString(r.value[i].first).c_str(),
                      jsonString(r.value[i].second).c_str());
        std::printf("]\n");
      } else {
        for (auto& [k, v] : r.value) std::printf("%s\t%s\n", k.c_str(), v.c_str());
      }
    }
    return report(r, a);
  }
  if (cmd == "status") return status(c, a);
  if (cmd == "members") {
    if (args.empty()) {
      for (const auto& addr : a.addresses) {
        auto s = c.status(addr);
        if (!s.ok()) continue;
        if (a.json) {
          std::printf("{\"voters\":[%s],\"learners\":[%s],\"outgoing\":[%s]}\n", ids(s.value.voters).c_str(),
                      ids(s.value.learners).c_str(), ids(s.value.outgoing).c_str());
        } else {
          std::printf("voters:   %s\nlearners: %s\n", ids(s.value.voters).c_str(), ids(s.value.learners).c_str());
          if (!s.value.outgoing.empty()) std::printf("outgoing: %s (a change is in progress)\n", ids(s.value.outgoing).c_str());
        }
        return 0;
      }
      std::fprintf(stderr, "keel: unavailable: no node answered\n");
      return 1;
    }
    uint64_t id = args.size() > 1 ? std::strtoull(args[1].c_str(), nullptr, 10) : 0;
    if (id == 0) return usage("members add-learner|promote|remove ID [ADDR]");
    std::string addr = args.size() > 2 ? args[2] : "";
    keel::Client::Change ch;
    if (args[0] == "add-learner" && args.size() == 3) ch = keel::Client::Change::AddLearner;
    else if (args[0] == "promote" && args.size() <= 3) ch = keel::Client::Change::AddVoter;
    else if (args[0] == "remove" && args.size() == 2) ch = keel::Client::Change::Remove;
    else return usage("members add-learner ID ADDR | promote ID [ADDR] | remove ID");
    auto r = c.changeMembership(ch, id, addr);
    if (r.ok()) std::printf(a.json ? "{\"ok\":true}\n" : "ok\n");
    return report(r, a);
  }
  if (cmd == "transfer-leader") {
    uint64_t to = args.empty() ? 0 : std::strtoull(args[0].c_str(), nullptr, 10);
    auto r = c.transferLeadership(to);
    if (r.ok()) a.json ? (void)std::printf("{\"leader\":%llu}\n", (unsigned long long)r.value)
                       : (void)std::printf("leader is now n%llu\n", (unsigned long long)r.value);
    return report(r, a);
  }
  if (cmd == "snapshot") {
    std::vector<std::string> targets = args.empty() ? a.addresses : args;
    int rc = 0;
    for (auto& t : targets) {
      auto r = c.snapshot(t);
      if (r.ok()) std::printf(a.json ? "{\"address\":\"%s\",\"index\":%llu}\n" : "%s: snapshot at index %llu\n",
                              t.c_str(), (unsigned long long)r.value);
      else rc = report(r, a);
    }
    return rc;
  }
  return usage("unknown command '" + cmd + "'");
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  const char* env = std::getenv("KEEL_CLUSTER");
  std::string cluster = env && *env ? env : "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";
  int i = 1;
  for (; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--help" || s == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (s == "--cluster" && i + 1 < argc) {
      cluster = argv[++i];
    } else if (s.rfind("--cluster=", 0) == 0) {
      cluster = s.substr(10);
    } else if (s == "--json") {
      a.json = true;
    } else if (s == "--timeout" && i + 1 < argc) {
      a.timeoutMs = uint32_t(std::atoi(argv[++i]));
      if (a.timeoutMs == 0) return usage("--timeout: expected milliseconds");
    } else if ((s == "--tls-cert" || s == "--tls-key" || s == "--tls-ca" || s == "--tls-name") && i + 1 < argc) {
      std::string v = argv[++i];
      if (v.empty()) return usage(s + ": expected a value");
      (s == "--tls-cert" ? a.tls.certFile : s == "--tls-key" ? a.tls.keyFile : s == "--tls-ca" ? a.tls.caFile : a.tls.name) = v;
    } else if (s.rfind("--", 0) == 0 && a.rest.empty()) {
      return usage("unknown option " + s);
    } else {
      a.rest.push_back(s);
    }
  }
  a.addresses = split(cluster, ',');
  if (a.addresses.empty()) return usage("--cluster: no addresses");
  try {
    return run(a);
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "keel: %s\n", e.getDescription().cStr());
    return 1;
  }
}
