// Seeded random histories of a real (simulated) register per key, for testing the checker.
//
// Clients issue reads, writes, compare-and-sets and deletes on random keys. Each operation
// takes effect atomically at a random instant between its invocation and its completion, on
// an actual register, so the history is linearizable by construction. Some operations end in
// info (the client gave up): half of those took effect, half did not, and some of them never
// get a completion in the history at all. A client takes a fresh process number after info.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "keel/check.h"

namespace keel::checker::testing {

struct RandomHistoryOptions {
  uint64_t seed = 1;
  size_t operations = 10000;
  size_t keys = 10;
  size_t clients = 8;
  double infoRate = 0.05;
};

inline History randomHistory(const RandomHistoryOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };

  struct Pending {
    History::Handle handle;
    Function f;
    std::string key;
    std::optional<std::string> expected, newValue, value;
    bool info = false, takesEffect = true, recordInfo = true;
    bool casOk = false;
    std::optional<std::string> read;
  };
  struct Client {
    uint64_t process;
    Pending op;
  };
  // (time, sequence, kind 0 = take effect / 1 = complete, client)
  using Event = std::tuple<Time, uint64_t, int, size_t>;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  std::map<std::string, std::optional<std::string>> reg;
  std::map<std::string, std::vector<std::string>> written;
  std::vector<Client> clients(o.clients);
  History h;
  uint64_t nextProcess = 0, seq = 0, counter = 0;
  size_t issued = 0;

  auto issue = [&](size_t c, Time t) {
    if (issued >= o.operations) return;
    ++issued;
    Client& cl = clients[c];
    Pending p;
    p.key = "k" + std::to_string(uniform(0, static_cast<int64_t>(o.keys) - 1));
    int r = static_cast<int>(uniform(0, 99));
    p.f = r < 50 ? Function::Read : r < 80 ? Function::Write : r < 95 ? Function::Cas
                                                                      : Function::Delete;
    p.info = chance(o.infoRate);
    p.takesEffect = !p.info || chance(0.5);
    p.recordInfo = !p.info || chance(0.8);
    auto fresh = [&] { return p.key + "-v" + std::to_string(++counter); };
    switch (p.f) {
      case Function::Read: p.handle = h.invokeRead(cl.process, p.key, t); break;
      case Function::Write:
        p.value = fresh();
        p.handle = h.invokeWrite(cl.process, p.key, *p.value, t);
        break;
      case Function::Delete: p.handle = h.invokeDelete(cl.process, p.key, t); break;
      case Function::Cas: {
        auto& w = written[p.key];
        if (chance(0.7) || w.empty()) {
          p.expected = reg[p.key];
        } else {
          p.expected = w[uniform(0, static_cast<int64_t>(w.size()) - 1)];
        }
        p.newValue = fresh();
        p.handle = h.invokeCas(cl.process, p.key, p.expected, p.newValue, t);
        break;
      }
    }
    cl.op = std::move(p);
    Time effect = t + uniform(1, 50);
    events.emplace(effect, ++seq, 0, c);
    events.emplace(effect + uniform(0, 50), ++seq, 1, c);
  };

  for (size_t c = 0; c < clients.size(); ++c) {
    clients[c].process = nextProcess++;
    issue(c, uniform(0, 20));
  }
  while (!events.empty()) {
    auto [t, s, kind, c] = events.top();
    events.pop();
    Client& cl = clients[c];
    Pending& p = cl.op;
    if (kind == 0) {
      if (!p.takesEffect) continue;
      auto& cur = reg[p.key];
      switch (p.f) {
        case Function::Read: p.read = cur; break;
        case Function::Write:
          cur = p.value;
          written[p.key].push_back(*p.value);
          break;
        case Function::Delete: cur.reset(); break;
        case Function::Cas:
          if (cur == p.expected) {
            cur = p.newValue;
            written[p.key].push_back(*p.newValue);
            p.casOk = true;
          }
          break;
      }
      continue;
    }
    if (p.info) {
      if (p.recordInfo) h.complete(p.handle, Outcome::Info, t);
      cl.process = nextProcess++;
    } else if (p.f == Function::Cas && !p.casOk) {
      h.complete(p.handle, Outcome::Fail, t);
    } else {
      h.complete(p.handle, Outcome::Ok, t, p.read);
    }
    issue(c, t + uniform(0, 20));
  }
  return h;
}

// Returns a copy of `h` in which one ok read (near the middle of the history) returns a value
// that a completed write had certainly overwritten before the read was invoked; sets
// `*corrupted` to that read's id. Returns `h` unchanged and *corrupted = SIZE_MAX if there is
// no such read.
inline History corruptOneRead(const History& h, size_t* corrupted) {
  const auto& ops = h.operations();
  *corrupted = SIZE_MAX;
  std::optional<std::string> stale;
  for (size_t i = ops.size() / 2; i < ops.size() && *corrupted == SIZE_MAX; ++i) {
    const Operation& r = ops[i];
    if (r.f != Function::Read || r.outcome != Outcome::Ok) continue;
    // w1 (ok write of u) completed before w2 (ok write) was invoked; w2 completed before r.
    for (size_t j = 0; j < i && *corrupted == SIZE_MAX; ++j) {
      const Operation& w2 = ops[j];
      if (w2.key != r.key || w2.f != Function::Write || w2.outcome != Outcome::Ok ||
          w2.completeTime >= r.invokeTime) {
        continue;
      }
      for (size_t k = 0; k < j; ++k) {
        const Operation& w1 = ops[k];
        if (w1.key == r.key && w1.f == Function::Write && w1.outcome == Outcome::Ok &&
            w1.completeTime < w2.invokeTime && w1.value != r.value) {
          stale = w1.value;
          *corrupted = i;
          break;
        }
      }
    }
  }
  History out;
  for (Operation op : ops) {
    if (op.id == *corrupted) op.value = stale;
    out.add(std::move(op));
  }
  return out;
}

}  // namespace keel::checker::testing
