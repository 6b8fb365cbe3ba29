// The linearizability search: Wing & Gong's algorithm with Lowe's memoisation, one search per
// key (P-compositionality), and delta debugging of a violation down to a small core.
//
// The search, for one key (as in Porcupine's checkSingle):
//   - Every operation contributes two entries, its call and its return, to a doubly linked
//     list sorted by time (calls before returns at equal times: such operations overlap).
//     Optional operations (info) return at +infinity, after every required return.
//   - Walk the list from the head. At a call entry, try to linearize its operation next: if the
//     model allows it from the current state and the configuration (set of linearized
//     operations, new state) has not been seen before, push (entry, old state) on a stack, lift
//     the operation's two entries out of the list and restart at the head. Otherwise move on.
//   - At a return entry, the operation it closes has not been linearized although everything
//     after must come after it: undo the last choice (pop, unlift, move past its call entry).
//     With an empty stack there is nothing left to try: not linearizable.
//   - When every required (ok) operation is linearized, the history is linearizable; optional
//     operations still in the list are the ones that never took effect.
// The seen-set holds a 128-bit fingerprint of each linearized set with its state (SeenSet).
#include <algorithm>
#include <map>
#include <numeric>
#include <unordered_map>

#include "keel/check.h"

namespace keel::checker {

namespace {

using Clock = std::chrono::steady_clock;

struct Deadline {
  bool enabled = false;
  Clock::time_point at{};
  static Deadline after(std::chrono::nanoseconds d) {
    Deadline out;
    if (d.count() > 0) {
      out.enabled = true;
      out.at = Clock::now() + d;
    }
    return out;
  }
  bool passed() const { return enabled && Clock::now() >= at; }
};

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The model's view of one operation, with values interned per key (0: absent).
enum class Kind : uint8_t { Read, Set, Cas };
struct Prepared {
  Kind kind = Kind::Read;
  int32_t a = 0;  // read: value read; set: value set; cas: expected
  int32_t b = 0;  // cas: new value
  Time call = 0;
  Time ret = kInfinite;  // kInfinite for optional operations
  bool required = true;
  size_t source = 0;  // index in the key's operation list

  // The value this operation needs to find (-1: none) and the one it leaves (-1: none).
  int32_t consumes() const { return kind == Kind::Set ? -1 : a; }
  int32_t produces() const { return kind == Kind::Read ? -1 : kind == Kind::Set ? a : b; }
};

// The set of (linearized set, state) configurations already explored. A linearized set is
// represented by a 128-bit Zobrist fingerprint (the XOR of two independent random 64-bit keys
// per operation, kept incrementally as operations are linearized and undone), so that a step
// costs O(1) and a configuration 20 bytes however long the history. Two different sets share a
// fingerprint with probability 2^-128 per pair: for 10^9 configurations, about 10^-21, far
// below the rate of memory errors. (A collision could only make the checker report a violation
// that is not there; never hide one.)
class SeenSet {
 public:
  SeenSet() { slots_.assign(1024, 0); }

  // Inserts; returns false if already present.
  bool insert(uint64_t h1, uint64_t h2, int32_t state) {
    if ((entries_.size() + 1) * 2 > slots_.size()) grow();
    size_t mask = slots_.size() - 1;
    for (size_t i = h1 & mask;; i = (i + 1) & mask) {
      uint32_t s = slots_[i];
      if (s == 0) {
        slots_[i] = static_cast<uint32_t>(entries_.size() + 1);
        entries_.push_back({h1, h2, state});
        return true;
      }
      const Entry& e = entries_[s - 1];
      if (e.h1 == h1 && e.h2 == h2 && e.state == state) return false;
    }
  }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    uint64_t h1, h2;
    int32_t state;
  };
  void grow() {
    std::vector<uint32_t> old(slots_.size() * 2, 0);
    old.swap(slots_);
    size_t mask = slots_.size() - 1;
    for (uint32_t s : old) {
      if (s == 0) continue;
      size_t i = entries_[s - 1].h1 & mask;
      while (slots_[i] != 0) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<uint32_t> slots_;
  std::vector<Entry> entries_;
};

struct SearchOutcome {
  Verdict verdict = Verdict::Linearizable;
  uint64_t states = 0;
  // For NotLinearizable: the operation (index in the searched list) whose return the search
  // could not get past, the one furthest in time over all branches; -1 if none.
  int32_t blocking = -1;
};

// Two reductions keep optional (info) operations from multiplying the search space, both
// preserving the verdict:
//  - Nothing that sets the value (write, delete) is linearized right after an optional
//    operation. In any linearization, an optional operation followed by a write or delete (or by
//    nothing) can be dropped: its value is overwritten unseen. So some linearization exists iff
//    one exists in which every optional operation is immediately followed by an operation that
//    reads the value it left (a read or a cas of it).
//  - At one point of the search, optional operations that do the same thing (same kind and
//    values, e.g. several info deletes) and are all already invoked are interchangeable: only
//    the first in the list is tried.
SearchOutcome search(const std::vector<Prepared>& unsorted, const Deadline& deadline) {
  SearchOutcome out;
  const size_t n = unsorted.size();
  size_t requiredCount = 0;
  for (auto& op : unsorted) requiredCount += op.required;
  if (requiredCount == 0) return out;

  // Operations in call order: the search does not depend on the order they were recorded in.
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t x, uint32_t y) {
    return unsorted[x].call < unsorted[y].call;
  });
  std::vector<Prepared> ops(n);
  for (size_t i = 0; i < n; ++i) ops[i] = unsorted[order[i]];

  // Entries 1..2n in time order; 0 is the head. -1 ends the list.
  struct Event {
    Time time;
    bool isReturn;
    uint32_t op;
  };
  std::vector<Event> events;
  events.reserve(2 * n);
  for (uint32_t i = 0; i < n; ++i) {
    events.push_back({ops[i].call, false, i});
    events.push_back({ops[i].required ? ops[i].ret : kInfinite, true, i});
  }
  std::sort(events.begin(), events.end(), [](const Event& x, const Event& y) {
    if (x.time != y.time) return x.time < y.time;
    if (x.isReturn != y.isReturn) return !x.isReturn;
    return x.op < y.op;
  });
  const size_t m = 2 * n + 1;
  std::vector<int32_t> next(m), prev(m), match(m);
  std::vector<uint32_t> entryOp(m);
  std::vector<uint8_t> isCall(m, 0);
  std::vector<int32_t> callEntry(n), returnEntry(n);
  for (size_t k = 0; k < events.size(); ++k) {
    int32_t e = static_cast<int32_t>(k + 1);
    entryOp[e] = events[k].op;
    isCall[e] = !events[k].isReturn;
    (events[k].isReturn ? returnEntry : callEntry)[events[k].op] = e;
  }
  for (size_t e = 0; e < m; ++e) {
    next[e] = e + 1 < m ? static_cast<int32_t>(e + 1) : -1;
    prev[e] = static_cast<int32_t>(e) - 1;
  }
  for (size_t i = 0; i < n; ++i) match[callEntry[i]] = returnEntry[i];

  auto unlink = [&](int32_t e) {
    next[prev[e]] = next[e];
    if (next[e] != -1) prev[next[e]] = prev[e];
  };
  auto relink = [&](int32_t e) {
    next[prev[e]] = e;
    if (next[e] != -1) prev[next[e]] = e;
  };

  std::vector<uint64_t> zobrist1(n), zobrist2(n);
  for (size_t i = 0; i < n; ++i) {
    zobrist1[i] = splitmix(2 * i);
    zobrist2[i] = splitmix(2 * i + 1 + (uint64_t{1} << 40));
  }
  uint64_t hash1 = 0, hash2 = 0;
  SeenSet seen;

  struct Frame {
    int32_t entry;
    int32_t state;
    bool afterOptional;
  };
  std::vector<Frame> stack;
  // Optional operations considered at each depth: (depth, operation).
  std::vector<std::pair<size_t, uint32_t>> considered;
  auto sameAs = [&](uint32_t x, uint32_t y) {
    return ops[x].kind == ops[y].kind && ops[x].a == ops[y].a && ops[x].b == ops[y].b;
  };
  int32_t state = 0;
  bool afterOptional = false;
  size_t requiredDone = 0;
  Time blockingTime = 0;
  uint64_t iterations = 0;
  int32_t entry = next[0];

  for (;;) {
    if (requiredDone == requiredCount) break;
    if ((++iterations & 0xFFF) == 0 && deadline.passed()) {
      out.verdict = Verdict::Unknown;
      break;
    }
    if (isCall[entry]) {
      uint32_t i = entryOp[entry];
      const Prepared& op = ops[i];
      if (!op.required) {
        bool twin = false;
        for (size_t k = considered.size(); k-- > 0 && considered[k].first == stack.size();) {
          if (sameAs(considered[k].second, i)) {
            twin = true;
            break;
          }
        }
        if (twin) {
          entry = next[entry];
          continue;
        }
        considered.emplace_back(stack.size(), i);
      }
      bool legal;
      int32_t after = state;
      switch (op.kind) {
        case Kind::Read: legal = state == op.a; break;
        case Kind::Set: legal = !afterOptional; after = op.a; break;
        case Kind::Cas: legal = state == op.a; after = op.b; break;
        default: legal = false;
      }
      if (legal) {
        uint64_t h1 = hash1 ^ zobrist1[i], h2 = hash2 ^ zobrist2[i];
        int32_t key = after * 2 + (op.required ? 0 : 1);
        if (seen.insert(h1 ^ splitmix(static_cast<uint64_t>(key) + 0x5151), h2, key)) {
          stack.push_back({entry, state, afterOptional});
          state = after;
          afterOptional = !op.required;
          hash1 = h1;
          hash2 = h2;
          requiredDone += op.required;
          unlink(entry);
          unlink(match[entry]);
          entry = next[0];
          continue;
        }
      }
      entry = next[entry];
    } else {
      uint32_t i = entryOp[entry];
      if (out.blocking < 0 || ops[i].ret > blockingTime) {
        out.blocking = static_cast<int32_t>(i);
        blockingTime = ops[i].ret;
      }
      if (stack.empty()) {
        out.verdict = Verdict::NotLinearizable;
        break;
      }
      while (!considered.empty() && considered.back().first >= stack.size()) {
        considered.pop_back();
      }
      Frame f = stack.back();
      stack.pop_back();
      uint32_t j = entryOp[f.entry];
      state = f.state;
      afterOptional = f.afterOptional;
      hash1 ^= zobrist1[j];
      hash2 ^= zobrist2[j];
      requiredDone -= ops[j].required;
      relink(match[f.entry]);
      relink(f.entry);
      entry = next[f.entry];
    }
  }
  out.states = seen.size();
  if (out.verdict != Verdict::NotLinearizable) out.blocking = -1;
  if (out.blocking >= 0) out.blocking = static_cast<int32_t>(order[out.blocking]);
  return out;
}

// One key's sub-history, prepared for searching subsets of it.
class KeyChecker {
 public:
  explicit KeyChecker(std::vector<const Operation*> ops) : ops_(std::move(ops)) {
    values_.emplace(std::string(), 0);  // placeholder so that ids start at 1
    for (size_t i = 0; i < ops_.size(); ++i) {
      const Operation& op = *ops_[i];
      if (op.outcome == Outcome::Fail) continue;  // certainly did not take effect
      if (op.f == Function::Read && op.outcome != Outcome::Ok) continue;  // returned nothing
      Prepared p;
      p.call = op.invokeTime;
      p.required = op.outcome == Outcome::Ok;
      p.ret = p.required ? op.completeTime : kInfinite;
      p.source = i;
      switch (op.f) {
        case Function::Read: p.kind = Kind::Read; p.a = intern(op.value); break;
        case Function::Write: p.kind = Kind::Set; p.a = intern(op.value); break;
        case Function::Delete: p.kind = Kind::Set; p.a = 0; break;
        case Function::Cas:
          p.kind = Kind::Cas;
          p.a = intern(op.expected);
          p.b = intern(op.newValue);
          break;
      }
      all_.push_back(p);
    }
    producers_.resize(values_.size());
    for (size_t k = 0; k < all_.size(); ++k) {
      int32_t v = all_[k].produces();
      if (v >= 0) producers_[v].push_back(k);
    }
  }

  size_t candidates() const { return all_.size(); }

  // The operations (indices into all_) to search for subset `s`: optional operations that
  // produce a value no operation in `s` needs are left out (they can always be left out of a
  // linearization: whatever follows them must overwrite their value before anyone looks).
  std::vector<Prepared> compile(const std::vector<size_t>& s) const {
    std::vector<uint8_t> needed(values_.size(), 0);
    for (size_t k : s) {
      int32_t v = all_[k].consumes();
      if (v >= 0) needed[v] = 1;
    }
    std::vector<Prepared> out;
    out.reserve(s.size());
    for (size_t k : s) {
      const Prepared& p = all_[k];
      if (!p.required && !needed[p.produces()]) continue;
      out.push_back(p);
      out.back().source = k;  // index into all_
    }
    return out;
  }

  std::vector<size_t> everything() const {
    std::vector<size_t> s(all_.size());
    std::iota(s.begin(), s.end(), 0);
    return s;
  }

  // Adds, for every value that a required operation in `s` needs and that no operation in `s`
  // produces, every operation that produces it: so that a shrunk set never blames a read for
  // the mere absence of the write it observed.
  std::vector<size_t> closure(std::vector<size_t> s) const {
    std::vector<uint8_t> in(all_.size(), 0);
    for (size_t k : s) in[k] = 1;
    for (size_t pos = 0; pos < s.size(); ++pos) {
      const Prepared& p = all_[s[pos]];
      int32_t v = p.consumes();
      if (!p.required || v < 0) continue;
      bool produced = false;
      for (size_t k : producers_[v]) produced = produced || in[k];
      if (produced) continue;
      for (size_t k : producers_[v]) {
        in[k] = 1;
        s.push_back(k);
      }
    }
    std::sort(s.begin(), s.end());
    return s;
  }

  SearchOutcome run(const std::vector<size_t>& s, const Deadline& d, size_t* searched) const {
    auto compiled = compile(s);
    if (searched) *searched = compiled.size();
    SearchOutcome r = search(compiled, d);
    if (r.blocking >= 0) r.blocking = static_cast<int32_t>(compiled[r.blocking].source);
    return r;
  }

  bool fails(const std::vector<size_t>& s, const Deadline& d) const {
    return run(s, d, nullptr).verdict == Verdict::NotLinearizable;
  }

  // Delta debugging (ddmin, complement removal) of a failing set, within `d`.
  std::vector<size_t> shrink(std::vector<size_t> core, const Deadline& d, bool* minimal) const {
    *minimal = false;
    size_t chunks = 2;
    while (core.size() >= 2) {
      if (d.passed()) return core;
      chunks = std::min(chunks, core.size());
      size_t size = (core.size() + chunks - 1) / chunks;
      bool reduced = false;
      for (size_t c = 0; c * size < core.size(); ++c) {
        std::vector<size_t> rest;
        rest.reserve(core.size());
        for (size_t k = 0; k < core.size(); ++k) {
          if (k / size != c) rest.push_back(core[k]);
        }
        rest = closure(std::move(rest));
        if (rest.size() >= core.size()) continue;
        if (fails(rest, d)) {
          core = std::move(rest);
          chunks = std::max<size_t>(chunks - 1, 2);
          reduced = true;
          break;
        }
        if (d.passed()) return core;
      }
      if (!reduced) {
        if (chunks >= core.size()) break;
        chunks = std::min(chunks * 2, core.size());
      }
    }
    *minimal = true;
    return core;
  }

  const Operation& original(size_t k) const { return *ops_[all_[k].source]; }
  const Prepared& prepared(size_t k) const { return all_[k]; }

 private:
  int32_t intern(const std::optional<std::string>& v) {
    if (!v) return 0;
    auto [it, fresh] = values_.emplace(*v, static_cast<int32_t>(values_.size()));
    return it->second;
  }

  std::vector<const Operation*> ops_;
  std::unordered_map<std::string, int32_t> values_;
  std::vector<Prepared> all_;
  std::vector<std::vector<size_t>> producers_;  // by value id
};

}  // namespace

const KeyResult* CheckResult::violation() const {
  for (auto& k : perKey) {
    if (k.verdict == Verdict::NotLinearizable) return &k;
  }
  return nullptr;
}

CheckResult check(const History& history, const CheckOptions& options) {
  auto start = Clock::now();
  CheckResult result;
  result.operations = history.size();
  Deadline deadline = Deadline::after(options.timeout);
  Deadline shrinkDeadline;
  bool shrinkStarted = false;

  std::map<std::string_view, std::vector<const Operation*>> byKey;
  for (auto& op : history.operations()) byKey[op.key].push_back(&op);
  result.keys = byKey.size();

  bool unknown = false, violated = false;
  for (auto& [key, ops] : byKey) {
    KeyResult kr;
    kr.key = std::string(key);
    kr.operations = ops.size();
    KeyChecker checker(ops);
    std::vector<size_t> all = checker.everything();
    SearchOutcome r = checker.run(all, deadline, &kr.searched);
    kr.verdict = r.verdict;
    kr.states = r.states;
    if (r.verdict == Verdict::Unknown) unknown = true;
    if (r.verdict == Verdict::NotLinearizable) {
      violated = true;
      std::vector<size_t> core = all;
      if (options.shrink) {
        if (!shrinkStarted) {
          shrinkStarted = true;
          shrinkDeadline = Deadline::after(options.shrinkTimeout);
        }
        // First cuts: the last w operations invoked before the completion the search could
        // not get past (w = 8, 16, 32, ...), with the writes of the values they observed. The
        // first such window that is still not linearizable is where delta debugging starts.
        if (r.blocking >= 0) {
          Time limit = checker.prepared(r.blocking).ret;
          std::vector<size_t> before;
          for (size_t k : all) {
            if (checker.prepared(k).call <= limit) before.push_back(k);
          }
          std::stable_sort(before.begin(), before.end(), [&](size_t x, size_t y) {
            return checker.prepared(x).call < checker.prepared(y).call;
          });
          for (size_t w = 8;; w *= 2) {
            w = std::min(w, before.size());
            std::vector<size_t> cut(before.end() - static_cast<ptrdiff_t>(w), before.end());
            std::sort(cut.begin(), cut.end());
            cut = checker.closure(std::move(cut));
            if (cut.size() < core.size() && checker.fails(cut, shrinkDeadline)) {
              core = std::move(cut);
              break;
            }
            if (w == before.size() || shrinkDeadline.passed()) break;
          }
        }
        core = checker.shrink(std::move(core), shrinkDeadline, &kr.minimal);
      }
      for (size_t k : core) kr.violation.push_back(checker.original(k));
      std::stable_sort(kr.violation.begin(), kr.violation.end(),
                       [](const Operation& x, const Operation& y) {
                         return x.invokeTime < y.invokeTime;
                       });
    }
    result.perKey.push_back(std::move(kr));
  }
  result.verdict = violated  ? Verdict::NotLinearizable
                   : unknown ? Verdict::Unknown
                             : Verdict::Linearizable;
  result.elapsed = Clock::now() - start;
  return result;
}

}  // namespace keel::checker
