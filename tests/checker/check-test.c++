// The checker on hand-made histories whose verdict is known, and on large random ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <sstream>

#include "keel/check.h"
#include "random-history.h"

namespace keel::checker {
namespace {

using std::nullopt;
using Opt = std::optional<std::string>;

// Builders: one call per operation, [a, b] its invocation and completion.
size_t write(History& h, uint64_t p, const std::string& key, const std::string& v, Time a, Time b,
             Outcome o = Outcome::Ok) {
  auto op = h.invokeWrite(p, key, v, a);
  h.complete(op, o, b);
  return op;
}
size_t read(History& h, uint64_t p, const std::string& key, Opt v, Time a, Time b,
            Outcome o = Outcome::Ok) {
  auto op = h.invokeRead(p, key, a);
  h.complete(op, o, b, std::move(v));
  return op;
}
size_t cas(History& h, uint64_t p, const std::string& key, Opt e, Opt n, Time a, Time b,
           Outcome o = Outcome::Ok) {
  auto op = h.invokeCas(p, key, std::move(e), std::move(n), a);
  h.complete(op, o, b);
  return op;
}
size_t del(History& h, uint64_t p, const std::string& key, Time a, Time b,
           Outcome o = Outcome::Ok) {
  auto op = h.invokeDelete(p, key, a);
  h.complete(op, o, b);
  return op;
}

Verdict verdictOf(const History& h) { return check(h).verdict; }

std::vector<size_t> violationIds(const CheckResult& r) {
  std::vector<size_t> ids;
  if (auto* v = r.violation()) {
    for (auto& op : v->violation) ids.push_back(op.id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(Checker, EmptyHistoryIsLinearizable) {
  History h;
  CheckResult r = check(h);
  EXPECT_EQ(r.verdict, Verdict::Linearizable);
  EXPECT_EQ(r.operations, 0u);
  EXPECT_EQ(r.keys, 0u);
}

TEST(Checker, StaleReadAfterACompletedWriteIsRejected) {
  History h;
  size_t a = write(h, 1, "x", "a", 10, 20);
  size_t b = write(h, 1, "x", "b", 30, 40);
  size_t r = read(h, 2, "x", "a", 50, 60);
  CheckResult res = check(h);
  ASSERT_EQ(res.verdict, Verdict::NotLinearizable);
  ASSERT_NE(res.violation(), nullptr);
  EXPECT_EQ(res.violation()->key, "x");
  EXPECT_TRUE(res.violation()->minimal);
  EXPECT_EQ(violationIds(res), (std::vector<size_t>{a, b, r}));
  std::string text = render(res);
  EXPECT_NE(text.find("not linearizable"), std::string::npos) << text;
  EXPECT_NE(text.find("read   \"x\" -> \"a\""), std::string::npos) << text;
}

TEST(Checker, AReadConcurrentWithAWriteMaySeeEitherValue) {
  for (Opt seen : {Opt{}, Opt{"a"}}) {
    History h;
    write(h, 1, "x", "a", 10, 30);
    read(h, 2, "x", seen, 15, 25);
    EXPECT_EQ(verdictOf(h), Verdict::Linearizable) << seen.value_or("absent");
  }
  // Two reads inside one write: old then new is fine, new then old is not.
  History ok;
  write(ok, 1, "x", "a", 10, 100);
  read(ok, 2, "x", nullopt, 20, 30);
  read(ok, 2, "x", "a", 40, 50);
  EXPECT_EQ(verdictOf(ok), Verdict::Linearizable);
  History bad;
  write(bad, 1, "x", "a", 10, 100);
  read(bad, 2, "x", "a", 20, 30);
  read(bad, 2, "x", nullopt, 40, 50);
  EXPECT_EQ(verdictOf(bad), Verdict::NotLinearizable);
}

TEST(Checker, OperationsThatTouchAtOneInstantAreConcurrent) {
  History h;
  write(h, 1, "x", "a", 10, 20);
  read(h, 2, "x", nullopt, 20, 30);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(Checker, LostUpdateWithCasIsRejected) {
  History h;
  write(h, 1, "x", "v0", 0, 5);
  cas(h, 2, "x", "v0", "v1", 10, 20);
  cas(h, 3, "x", "v0", "v2", 12, 22);
  CheckResult r = check(h);
  ASSERT_EQ(r.verdict, Verdict::NotLinearizable);
  EXPECT_EQ(r.violation()->violation.size(), 3u);
  // One of them failing is fine.
  History fine;
  write(fine, 1, "x", "v0", 0, 5);
  cas(fine, 2, "x", "v0", "v1", 10, 20);
  cas(fine, 3, "x", "v0", "v2", 12, 22, Outcome::Fail);
  read(fine, 4, "x", "v1", 30, 40);
  EXPECT_EQ(verdictOf(fine), Verdict::Linearizable);
}

TEST(Checker, CasFromAndToAbsent) {
  History h;
  cas(h, 1, "x", nullopt, "a", 0, 10);  // create if absent
  read(h, 2, "x", "a", 20, 30);
  cas(h, 1, "x", "a", nullopt, 40, 50);  // delete if a
  read(h, 2, "x", nullopt, 60, 70);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
  cas(h, 3, "x", "a", "b", 80, 90);  // a is gone
  EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
}

TEST(Checker, InfoWritesMayHaveTakenEffectOrNot) {
  History took;
  write(took, 1, "x", "a", 10, 20, Outcome::Info);
  read(took, 2, "x", "a", 30, 40);
  read(took, 2, "x", "a", 50, 60);
  EXPECT_EQ(verdictOf(took), Verdict::Linearizable);

  History didNot;
  write(didNot, 1, "x", "a", 10, 20, Outcome::Info);
  read(didNot, 2, "x", nullopt, 30, 40);
  read(didNot, 2, "x", nullopt, 50, 60);
  EXPECT_EQ(verdictOf(didNot), Verdict::Linearizable);

  // Late: absent long after the info, then the value (it took effect after its "completion").
  History late;
  write(late, 1, "x", "a", 10, 20, Outcome::Info);
  read(late, 2, "x", nullopt, 30, 40);
  read(late, 2, "x", "a", 1000, 1010);
  EXPECT_EQ(verdictOf(late), Verdict::Linearizable);

  // But once seen, it cannot vanish without a delete or another write.
  History vanished;
  write(vanished, 1, "x", "a", 10, 20, Outcome::Info);
  read(vanished, 2, "x", "a", 30, 40);
  read(vanished, 2, "x", nullopt, 50, 60);
  EXPECT_EQ(verdictOf(vanished), Verdict::NotLinearizable);
}

TEST(Checker, AReadMayObserveAnInfoWriteOnlyAfterItsInvocation) {
  History after;
  read(after, 2, "x", nullopt, 0, 5);
  write(after, 1, "x", "a", 10, 20, Outcome::Info);
  read(after, 2, "x", "a", 15, 18);  // during the info write
  EXPECT_EQ(verdictOf(after), Verdict::Linearizable);

  History before;
  read(before, 2, "x", "a", 0, 5);
  write(before, 1, "x", "a", 10, 20, Outcome::Info);
  EXPECT_EQ(verdictOf(before), Verdict::NotLinearizable);
}

TEST(Checker, AReadOfAValueNeverWrittenIsRejectedAlone) {
  History h;
  write(h, 1, "x", "a", 0, 10);
  read(h, 2, "x", "a", 20, 30);
  size_t bad = read(h, 2, "x", "zzz", 40, 50);
  read(h, 2, "x", "a", 60, 70);
  CheckResult r = check(h);
  ASSERT_EQ(r.verdict, Verdict::NotLinearizable);
  EXPECT_EQ(violationIds(r), (std::vector<size_t>{bad}));
}

TEST(Checker, FailedOperationsDidNotTakeEffect) {
  History h;
  write(h, 1, "x", "a", 0, 10, Outcome::Fail);
  read(h, 2, "x", "a", 20, 30);
  EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);

  History failedRead;  // a failed read's value means nothing
  write(failedRead, 1, "x", "a", 0, 10);
  read(failedRead, 2, "x", "junk", 20, 30, Outcome::Fail);
  EXPECT_EQ(verdictOf(failedRead), Verdict::Linearizable);
}

TEST(Checker, AnInfoReadCarriesNothing) {
  History h;
  write(h, 1, "x", "a", 0, 10);
  read(h, 2, "x", "junk", 20, 30, Outcome::Info);
  read(h, 3, "x", "a", 40, 50);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
}

TEST(Checker, AnInvocationNeverCompletedIsInfo) {
  History h;
  h.invokeWrite(1, "x", "a", 10);  // pending forever
  read(h, 2, "x", nullopt, 20, 30);
  read(h, 2, "x", "a", 40, 50);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
  EXPECT_FALSE(h.completed(0));
  EXPECT_EQ(h.operations()[0].outcome, Outcome::Info);
  read(h, 2, "x", nullopt, 60, 70);
  EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
}

TEST(Checker, InfoCasTakesEffectOnlyIfItsExpectationHeld) {
  History h;
  write(h, 1, "x", "a", 0, 10);
  cas(h, 2, "x", "a", "b", 20, 30, Outcome::Info);
  read(h, 3, "x", "b", 40, 50);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);

  History never;  // expects a value nobody wrote: it cannot have produced "b"
  write(never, 1, "x", "a", 0, 10);
  cas(never, 2, "x", "q", "b", 20, 30, Outcome::Info);
  read(never, 3, "x", "b", 40, 50);
  EXPECT_EQ(verdictOf(never), Verdict::NotLinearizable);
}

TEST(Checker, DeleteMakesTheKeyAbsent) {
  History h;
  write(h, 1, "x", "a", 0, 10);
  del(h, 1, "x", 20, 30);
  read(h, 2, "x", nullopt, 40, 50);
  del(h, 1, "x", 60, 70);  // deleting an absent key is fine
  cas(h, 2, "x", nullopt, "b", 80, 90);
  read(h, 2, "x", "b", 100, 110);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);

  History stale;
  write(stale, 1, "x", "a", 0, 10);
  size_t d = del(stale, 1, "x", 20, 30);
  size_t r = read(stale, 2, "x", "a", 40, 50);
  CheckResult res = check(stale);
  ASSERT_EQ(res.verdict, Verdict::NotLinearizable);
  EXPECT_EQ(violationIds(res), (std::vector<size_t>{0, d, r}));

  History infoDelete;  // an info delete may explain an absent read
  write(infoDelete, 1, "x", "a", 0, 10);
  del(infoDelete, 1, "x", 20, 30, Outcome::Info);
  read(infoDelete, 2, "x", nullopt, 40, 50);
  EXPECT_EQ(verdictOf(infoDelete), Verdict::Linearizable);
}

TEST(Checker, KeysAreIndependent) {
  // Interleaved keys: each alone is linearizable. Were the keys one register, reading y's
  // absence after x was written would not be.
  History h;
  write(h, 1, "x", "a", 0, 10);
  read(h, 2, "y", nullopt, 20, 30);
  write(h, 3, "y", "b", 40, 50);
  read(h, 2, "x", "a", 60, 70);
  read(h, 2, "y", "b", 80, 90);
  CheckResult r = check(h);
  EXPECT_EQ(r.verdict, Verdict::Linearizable);
  EXPECT_EQ(r.keys, 2u);
  ASSERT_EQ(r.perKey.size(), 2u);
  EXPECT_EQ(r.perKey[0].key, "x");
  EXPECT_EQ(r.perKey[1].key, "y");

  // A violation on y is reported on y alone.
  read(h, 2, "y", nullopt, 100, 110);
  r = check(h);
  ASSERT_EQ(r.verdict, Verdict::NotLinearizable);
  EXPECT_EQ(r.perKey[0].verdict, Verdict::Linearizable);
  EXPECT_EQ(r.perKey[1].verdict, Verdict::NotLinearizable);
  EXPECT_EQ(r.violation()->key, "y");
  for (auto& op : r.violation()->violation) EXPECT_EQ(op.key, "y");
}

TEST(Checker, ConcurrentWritesCanBeOrderedAnyWay) {
  History h;
  for (int i = 0; i < 6; ++i) write(h, i, "x", "v" + std::to_string(i), 0, 100);
  read(h, 10, "x", "v3", 110, 120);
  EXPECT_EQ(verdictOf(h), Verdict::Linearizable);
  read(h, 10, "x", "v4", 130, 140);
  EXPECT_EQ(verdictOf(h), Verdict::NotLinearizable);
}

// Many overlapping writes followed by reads that no order explains: the search must try every
// order of the writes (2^n sets), so a short timeout gives up.
History hardHistory(int writes) {
  History h;
  for (int i = 0; i < writes; ++i) write(h, i, "x", "v" + std::to_string(i), 0, 1000);
  read(h, 100, "x", "v0", 1001, 1002);
  read(h, 100, "x", "v1", 1003, 1004);
  return h;
}

TEST(Checker, GivesUpAtTheTimeout) {
  CheckOptions o;
  o.timeout = std::chrono::milliseconds(100);
  auto start = std::chrono::steady_clock::now();
  CheckResult r = check(hardHistory(26), o);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.verdict, Verdict::Unknown);
  EXPECT_EQ(r.perKey.at(0).verdict, Verdict::Unknown);
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_NE(render(r).find("unknown"), std::string::npos);

  // Small enough to finish: not linearizable.
  EXPECT_EQ(check(hardHistory(8)).verdict, Verdict::NotLinearizable);
}

TEST(Checker, WithoutShrinkingTheWholeKeyIsReported) {
  History h;
  write(h, 1, "x", "a", 0, 10);
  write(h, 1, "x", "b", 20, 30);
  read(h, 2, "x", "b", 40, 50);
  read(h, 2, "x", "a", 60, 70);
  CheckOptions o;
  o.shrink = false;
  CheckResult r = check(h, o);
  ASSERT_EQ(r.verdict, Verdict::NotLinearizable);
  EXPECT_EQ(r.violation()->violation.size(), 4u);
  EXPECT_FALSE(r.violation()->minimal);
  o.shrink = true;
  EXPECT_EQ(check(h, o).violation()->violation.size(), 3u);
}

TEST(Checker, BuilderRejectsMisuse) {
  History h;
  auto op = h.invokeWrite(1, "x", "a", 10);
  EXPECT_THROW(h.complete(op, Outcome::Ok, 5), std::invalid_argument);
  h.complete(op, Outcome::Ok, 20);
  EXPECT_THROW(h.complete(op, Outcome::Ok, 30), std::invalid_argument);
  EXPECT_THROW(h.complete(99, Outcome::Ok, 30), std::invalid_argument);
  Operation bad;
  bad.invokeTime = 10;
  bad.completeTime = 5;
  EXPECT_THROW(h.add(bad), std::invalid_argument);
}

TEST(Checker, JsonLinesRoundTrip) {
  History h;
  write(h, 1, "x", "a\"quoted\"\n", 0, 10);
  read(h, 2, "x", "a\"quoted\"\n", 20, 30);
  cas(h, 3, "y", nullopt, "b", 5, 15, Outcome::Fail);
  del(h, 4, "y", 40, 50, Outcome::Info);
  h.invokeRead(5, "x", 60);
  std::ostringstream out;
  h.writeJsonLines(out);
  History back = parseHistory(out.str());
  ASSERT_EQ(back.size(), h.size());
  // Parsed operations come in invocation order.
  std::vector<Operation> a = h.operations(), b = back.operations();
  auto byInvoke = [](const Operation& x, const Operation& y) { return x.invokeTime < y.invokeTime; };
  std::stable_sort(a.begin(), a.end(), byInvoke);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].process, b[i].process);
    EXPECT_EQ(a[i].f, b[i].f);
    EXPECT_EQ(a[i].key, b[i].key);
    EXPECT_EQ(a[i].value, b[i].value);
    EXPECT_EQ(a[i].expected, b[i].expected);
    EXPECT_EQ(a[i].newValue, b[i].newValue);
    EXPECT_EQ(a[i].invokeTime, b[i].invokeTime);
    EXPECT_EQ(a[i].completeTime, b[i].completeTime);
    EXPECT_EQ(a[i].outcome, b[i].outcome);
    EXPECT_NE(b[i].invokeLine, 0u);
  }
  EXPECT_EQ(check(back).verdict, Verdict::Linearizable);
}

TEST(Checker, RendersOperationsReadably) {
  Operation op;
  op.process = 3;
  op.f = Function::Cas;
  op.key = "k7";
  op.expected = "v42";
  op.newValue = "v43";
  op.invokeTime = 100;
  op.completeTime = 200;
  op.outcome = Outcome::Ok;
  op.invokeLine = 4;
  op.completeLine = 9;
  std::string s = render(op);
  EXPECT_NE(s.find("p3"), std::string::npos) << s;
  EXPECT_NE(s.find("cas"), std::string::npos) << s;
  EXPECT_NE(s.find("\"v42\" -> \"v43\""), std::string::npos) << s;
  EXPECT_NE(s.find("[100, 200]"), std::string::npos) << s;
  EXPECT_NE(s.find("(lines 4-9)"), std::string::npos) << s;
  op.outcome = Outcome::Info;
  EXPECT_NE(render(op).find("[100, inf)"), std::string::npos) << render(op);
}

// A brute-force oracle for tiny histories: tries every subset of the info operations in every
// order that respects real time. Keys are checked together (as one search over all
// operations, each key its own register), independently of the checker's partitioning.
bool bruteForceLinearizable(const History& h) {
  std::vector<Operation> ops;
  for (auto& op : h.operations()) {
    if (op.outcome == Outcome::Fail) continue;
    if (op.f == Function::Read && op.outcome != Outcome::Ok) continue;
    ops.push_back(op);
  }
  size_t n = ops.size();
  auto required = [&](size_t i) { return ops[i].outcome == Outcome::Ok; };
  std::map<std::string, Opt> reg;
  std::vector<bool> placed(n, false);
  std::function<bool()> dfs = [&]() -> bool {
    bool done = true;
    for (size_t i = 0; i < n; ++i) done = done && (placed[i] || !required(i));
    if (done) return true;
    for (size_t x = 0; x < n; ++x) {
      if (placed[x]) continue;
      bool allowed = true;  // no unplaced ok operation completed before x was invoked
      for (size_t y = 0; y < n && allowed; ++y) {
        if (y != x && !placed[y] && required(y) && ops[y].completeTime < ops[x].invokeTime) {
          allowed = false;
        }
      }
      if (!allowed) continue;
      Opt& cur = reg[ops[x].key];
      Opt saved = cur;
      bool legal = true;
      switch (ops[x].f) {
        case Function::Read: legal = cur == ops[x].value; break;
        case Function::Write: cur = ops[x].value; break;
        case Function::Delete: cur.reset(); break;
        case Function::Cas:
          legal = cur == ops[x].expected;
          if (legal) cur = ops[x].newValue;
          break;
      }
      if (legal) {
        placed[x] = true;
        bool ok = dfs();
        placed[x] = false;
        if (ok) {
          cur = saved;
          return true;
        }
      }
      cur = saved;
    }
    return false;
  };
  return dfs();
}

TEST(Checker, AgreesWithBruteForceOnTinyRandomHistories) {
  std::mt19937_64 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  const Opt values[] = {nullopt, Opt{"a"}, Opt{"b"}, Opt{"c"}};
  size_t rejected = 0;
  for (int round = 0; round < 4000; ++round) {
    History h;
    int count = 2 + pick(6);
    int keys = 1 + (pick(4) == 0);
    for (int i = 0; i < count; ++i) {
      std::string key = keys == 1 ? "x" : std::string(1, static_cast<char>('x' + pick(2)));
      Time a = pick(20), b = a + pick(10);
      int r = pick(100);
      Outcome o = r < 70 ? Outcome::Ok : r < 90 ? Outcome::Info : Outcome::Fail;
      int f = pick(10);
      size_t id;
      if (f < 4) {
        id = h.invokeRead(i, key, a);
      } else if (f < 7) {
        id = h.invokeWrite(i, key, *values[1 + pick(3)], a);
      } else if (f < 9) {
        id = h.invokeCas(i, key, values[pick(4)], values[1 + pick(3)], a);
      } else {
        id = h.invokeDelete(i, key, a);
      }
      if (pick(10) != 0) h.complete(id, o, b, values[pick(4)]);
    }
    bool expected = bruteForceLinearizable(h);
    CheckResult r = check(h);
    ASSERT_EQ(r.verdict, expected ? Verdict::Linearizable : Verdict::NotLinearizable)
        << "round " << round << "\n" << [&] {
             std::ostringstream out;
             h.writeJsonLines(out);
             return out.str();
           }();
    if (!expected) {
      ++rejected;
      // The reported operations cannot be ordered on their own either.
      History core;
      for (auto& op : r.violation()->violation) core.add(op);
      EXPECT_FALSE(bruteForceLinearizable(core)) << "round " << round;
      EXPECT_TRUE(r.violation()->minimal);
    }
  }
  // Both verdicts were exercised.
  EXPECT_GT(rejected, 400u);
  EXPECT_LT(rejected, 3600u);
}

// The big one: 10,000 operations over 10 keys from 8 clients with 5% info outcomes.
class RandomHistory : public ::testing::TestWithParam<uint64_t> {};

TEST_P(RandomHistory, LinearizableHistoryIsAcceptedAndACorruptedReadRejected) {
  testing::RandomHistoryOptions o;
  o.seed = GetParam();
  History h = testing::randomHistory(o);
  ASSERT_EQ(h.size(), 10000u);

  auto start = std::chrono::steady_clock::now();
  CheckResult r = check(h);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.verdict, Verdict::Linearizable) << render(r);
  EXPECT_EQ(r.keys, 10u);
  EXPECT_LT(secs, 20.0);
  std::cout << "  10000 operations checked in " << secs << " s\n";

  size_t bad = SIZE_MAX;
  History corrupted = testing::corruptOneRead(h, &bad);
  ASSERT_NE(bad, SIZE_MAX);
  start = std::chrono::steady_clock::now();
  CheckResult c = check(corrupted);
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(c.verdict, Verdict::NotLinearizable);
  EXPECT_LT(secs, 20.0);
  const KeyResult* v = c.violation();
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->key, corrupted.operations()[bad].key);
  auto ids = violationIds(c);
  EXPECT_TRUE(std::find(ids.begin(), ids.end(), bad) != ids.end()) << render(c);
  std::cout << "  corrupted read found in " << secs << " s; " << ids.size()
            << " operations cannot be ordered" << (v->minimal ? " (minimal)" : "") << "\n"
            << render(c);
  if (v->minimal) {
    EXPECT_LE(ids.size(), 6u) << render(c);
  }

  // The reported operations, on their own, are not linearizable either.
  History core;
  for (auto& op : v->violation) core.add(op);
  EXPECT_EQ(check(core).verdict, Verdict::NotLinearizable);
}

INSTANTIATE_TEST_SUITE_P(Seeds, RandomHistory, ::testing::Values(1, 2));

TEST(Checker, TenThousandOperationsOnOneKeyAreAccepted) {
  testing::RandomHistoryOptions o;
  o.seed = 3;
  o.keys = 1;
  History h = testing::randomHistory(o);
  auto start = std::chrono::steady_clock::now();
  CheckResult r = check(h);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.verdict, Verdict::Linearizable);
  EXPECT_LT(secs, 20.0);
  std::cout << "  10000 operations on one key checked in " << secs << " s, "
            << r.perKey.at(0).states << " states\n";
}

TEST(Checker, ManySmallRandomHistoriesAreLinearizable) {
  for (uint64_t seed = 100; seed < 140; ++seed) {
    testing::RandomHistoryOptions o;
    o.seed = seed;
    o.operations = 300;
    o.keys = 2;
    o.clients = 6;
    o.infoRate = 0.15;
    History h = testing::randomHistory(o);
    EXPECT_EQ(check(h).verdict, Verdict::Linearizable) << "seed " << seed;
  }
}

}  // namespace
}  // namespace keel::checker
