// keel nemesis: the register and set workloads (workload.h).
#include "workload.h"

#include <keel/client.h>

#include <kj/async-io.h>

#include <map>
#include <memory>
#include <random>

namespace keel::nemesis {

namespace {

std::chrono::steady_clock::time_point clockStart = std::chrono::steady_clock::now();

using checker::Outcome;

// An operation's result after the harness deadline: nullopt when the deadline won.
template <typename T>
kj::Promise<std::optional<keel::Outcome<T>>> guarded(kj::Timer& timer, uint32_t ms, kj::Promise<keel::Outcome<T>> p) {
  return p
      .then([](keel::Outcome<T> o) { return std::optional<keel::Outcome<T>>(std::move(o)); },
            [](kj::Exception&&) { return std::optional<keel::Outcome<T>>(); })
      .exclusiveJoin(timer.afterDelay(ms * kj::MILLISECONDS).then([]() { return std::optional<keel::Outcome<T>>(); }));
}

struct Shared {
  kj::AsyncIoContext& io;
  const WorkloadConfig& cfg;
  WorkloadResult& res;
  const std::atomic<bool>& stop;
  const std::atomic<int64_t>& healedAt;
  std::mt19937_64 rng;
  uint64_t nextProcess = 0;
  uint64_t nextValue = 0;
  uint64_t registerOps = 0;
  uint64_t nextElement = 0;
  std::map<std::string, std::optional<std::string>> lastSeen;  // per register key
  std::set<std::string> keysUsed;

  void ok(Counts& c, int64_t invoked) {
    ++c.ok;
    int64_t h = healedAt.load();
    if (h >= 0 && invoked >= h) {
      if (res.okAfterHeal++ == 0) res.firstOkAfterHealNs = nowNs() - h;
    }
  }
};

struct Worker {
  Shared& s;
  bool isSet;
  std::string address;
  uint64_t process = 0;
  std::unique_ptr<Client> client;
  // Reads go through a fresh session-less client each time, so that they reach this worker's
  // node: a Client follows the leader that every reply names, and would otherwise read only
  // from the leader after its first call (a node serving stale reads would never be asked).
  std::unique_ptr<Client> reader;

  Worker(Shared& shared, bool set, std::string addr) : s(shared), isSet(set), address(std::move(addr)) { fresh(); }

  // A fresh process number and client (session): after an operation ended in info.
  void fresh() {
    process = s.nextProcess++;
    Client::Options o;
    o.addresses = {address};
    o.timeoutMs = s.cfg.opTimeoutMs > 1000 ? s.cfg.opTimeoutMs - 500 : s.cfg.opTimeoutMs;
    o.sessions = true;
    o.tls = s.cfg.tls;
    client = std::make_unique<Client>(o, s.io);
    ++s.res.clients;
  }

  kj::Promise<void> loop() {
    if (s.stop.load()) return kj::READY_NOW;
    std::exponential_distribution<double> think(1.0 / std::max<uint32_t>(1, s.cfg.thinkMs));
    uint64_t ms = std::min<uint64_t>(uint64_t(think(s.rng)), 10ull * s.cfg.thinkMs);
    return s.io.provider->getTimer()
        .afterDelay(ms * kj::MILLISECONDS)
        .then([this]() { return s.stop.load() ? kj::Promise<void>(kj::READY_NOW) : one(); })
        .then([this]() { return loop(); });
  }

  kj::Promise<void> one() { return isSet ? add() : registerOp(); }

  kj::Promise<void> add() {
    std::string e = "e" + std::to_string(s.nextElement++);
    std::string key = "s/" + e;
    s.res.setAttempted.insert(e);
    int64_t t0 = nowNs();
    auto h = s.res.set.invokeWrite(process, key, e, t0);
    auto& timer = s.io.provider->getTimer();
    return guarded(timer, s.cfg.opTimeoutMs, client->putAsync(key, e))
        .then([this, h, e, t0](std::optional<keel::Outcome<bool>> r) {
          if (r && r->ok()) {
            s.res.set.complete(h, Outcome::Ok, nowNs());
            s.res.setAcked.insert(e);
            s.ok(s.res.setCounts, t0);
          } else {
            s.res.set.complete(h, Outcome::Info, nowNs());
            ++s.res.setCounts.info;
            fresh();
          }
        });
  }

  kj::Promise<void> registerOp() {
    uint64_t window = s.registerOps++ / uint64_t(std::max(1, s.cfg.opsPerKeyWindow));
    std::string key = "r" + std::to_string(window * uint64_t(s.cfg.keys) + s.rng() % uint64_t(s.cfg.keys));
    s.keysUsed.insert(key);
    double r = std::uniform_real_distribution<double>(0, 1)(s.rng);
    auto& timer = s.io.provider->getTimer();
    uint32_t ms = s.cfg.opTimeoutMs;
    int64_t t0 = nowNs();
    if (r < 0.4) {
      auto h = s.res.registers.invokeRead(process, key, t0);
      Client::Options ro;
      ro.addresses = {address};
      ro.timeoutMs = s.cfg.opTimeoutMs > 1000 ? s.cfg.opTimeoutMs - 500 : s.cfg.opTimeoutMs;
      ro.sessions = false;
      ro.tls = s.cfg.tls;
      reader = std::make_unique<Client>(ro, s.io);
      return guarded(timer, ms, reader->getAsync(key)).then([this, h, key, t0](std::optional<keel::Outcome<std::string>> o) {
        if (o && (o->ok() || o->error == ClientError::NotFound)) {
          std::optional<std::string> v;
          if (o->ok()) v = o->value;
          s.res.registers.complete(h, Outcome::Ok, nowNs(), v);
          s.lastSeen[key] = v;
          s.ok(s.res.registerCounts, t0);
        } else {
          // A read that did not come back tells nothing; info is always safe.
          s.res.registers.complete(h, Outcome::Info, nowNs());
          ++s.res.registerCounts.info;
          fresh();
        }
      });
    }
    std::string v = "v" + std::to_string(s.nextValue++);
    if (r < 0.75) {
      auto h = s.res.registers.invokeWrite(process, key, v, t0);
      return guarded(timer, ms, client->putAsync(key, v)).then([this, h, key, v, t0](std::optional<keel::Outcome<bool>> o) {
        if (o && o->ok()) {
          s.res.registers.complete(h, Outcome::Ok, nowNs());
          s.lastSeen[key] = v;
          s.ok(s.res.registerCounts, t0);
        } else {
          s.res.registers.complete(h, Outcome::Info, nowNs());
          ++s.res.registerCounts.info;
          fresh();
        }
      });
    }
    std::optional<std::string> expected;
    auto it = s.lastSeen.find(key);
    if (it != s.lastSeen.end()) expected = it->second;
    auto h = s.res.registers.invokeCas(process, key, expected, v, t0);
    return guarded(timer, ms, client->casAsync(key, expected, v))
        .then([this, h, key, v, t0](std::optional<keel::Outcome<std::string>> o) {
          if (o && o->ok()) {
            s.res.registers.complete(h, Outcome::Ok, nowNs());
            s.lastSeen[key] = v;
            s.ok(s.res.registerCounts, t0);
          } else if (o && o->error == ClientError::CompareFailed) {
            // The only certain failure: the session's cached reply says it did not apply.
            s.res.registers.complete(h, Outcome::Fail, nowNs());
            ++s.res.registerCounts.fail;
          } else {
            s.res.registers.complete(h, Outcome::Info, nowNs());
            ++s.res.registerCounts.info;
            fresh();
          }
        });
  }
};

}  // namespace

void startClock() { clockStart = std::chrono::steady_clock::now(); }
int64_t nowNs() {
  return int64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - clockStart).count());
}

Workload::Workload(WorkloadConfig config) : config_(std::move(config)) {}

void Workload::run(const std::atomic<bool>& stop, const std::atomic<int64_t>& healedAt) {
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  Shared s{io, config_, result_, stop, healedAt, std::mt19937_64(config_.seed * 7919 + 17), 0, 0, 0, 0, {}, {}};
  std::vector<std::unique_ptr<Worker>> workers;
  const auto& addrs = config_.addresses;
  for (int i = 0; i < config_.registerWorkers; ++i) {
    workers.push_back(std::make_unique<Worker>(s, false, addrs[size_t(i) % addrs.size()]));
  }
  for (int i = 0; i < config_.setWorkers; ++i) {
    workers.push_back(std::make_unique<Worker>(s, true, addrs[size_t(i + 1) % addrs.size()]));
  }
  {
    auto loops = kj::heapArrayBuilder<kj::Promise<void>>(workers.size());
    for (auto& w : workers) loops.add(w->loop());
    auto all = kj::joinPromises(loops.finish());
    // Wait for the stop flag; then give outstanding operations their deadline to finish.
    struct Poll {
      static kj::Promise<void> until(kj::Timer& t, const std::atomic<bool>& stop) {
        if (stop.load()) return kj::READY_NOW;
        return t.afterDelay(50 * kj::MILLISECONDS).then([&t, &stop]() { return until(t, stop); });
      }
    };
    auto finished = all.fork();
    auto stopped = Poll::until(timer, stop).exclusiveJoin(finished.addBranch());
    stopped.wait(io.waitScope);
    finished.addBranch()
        .exclusiveJoin(timer.afterDelay((config_.opTimeoutMs + 2000) * kj::MILLISECONDS))
        .wait(io.waitScope);
  }
  workers.clear();

  // ---- Final reads, through a client that knows every node, each retried (bounded). ----
  Client::Options o;
  o.addresses = addrs;
  o.timeoutMs = config_.opTimeoutMs;
  o.tls = config_.tls;
  auto reader = std::make_unique<Client>(o, io);
  uint64_t process = s.nextProcess++;
  auto freshReader = [&]() {
    reader = std::make_unique<Client>(o, io);
    process = s.nextProcess++;
    ++result_.clients;
  };
  auto budgetEnd = std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.finalReadBudgetMs);
  for (const std::string& key : s.keysUsed) {
    if (std::chrono::steady_clock::now() >= budgetEnd) {
      ++result_.finalReadsSkipped;
      continue;
    }
    for (int attempt = 0; attempt < 10; ++attempt) {
      auto h = result_.registers.invokeRead(process, key, nowNs());
      auto r = guarded(timer, config_.opTimeoutMs + 500, reader->getAsync(key)).wait(io.waitScope);
      if (r && (r->ok() || r->error == ClientError::NotFound)) {
        std::optional<std::string> v;
        if (r->ok()) v = r->value;
        result_.registers.complete(h, Outcome::Ok, nowNs(), v);
        ++result_.registerCounts.ok;
        break;
      }
      result_.registers.complete(h, Outcome::Info, nowNs());
      ++result_.registerCounts.info;
      freshReader();
      timer.afterDelay(200 * kj::MILLISECONDS).wait(io.waitScope);
    }
  }
  // The set: a paginated scan of "s/" (no writes run any more, so the pages compose).
  for (int attempt = 0; attempt < 20 && !result_.setFinalRead; ++attempt) {
    std::set<std::string> seen;
    std::string start = "s/";
    bool failed = false;
    for (int page = 0; page < 100000; ++page) {
      auto r = guarded(timer, config_.opTimeoutMs + 500, reader->scanAsync(start, "s0", 1000)).wait(io.waitScope);
      if (!r || !r->ok()) {
        result_.finalReadError = r ? r->detail : "deadline passed";
        failed = true;
        break;
      }
      for (auto& [k, v] : r->value) seen.insert(k.substr(2));
      if (r->value.size() < 1000) break;
      start = r->value.back().first + std::string(1, '\0');
    }
    if (failed) {
      freshReader();
      timer.afterDelay(500 * kj::MILLISECONDS).wait(io.waitScope);
      continue;
    }
    result_.setFinal = std::move(seen);
    result_.setFinalRead = true;
    result_.finalReadError.clear();
  }
}

}  // namespace keel::nemesis
