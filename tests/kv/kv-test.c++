#include <keel/kv.h>

#include <gtest/gtest.h>

#include <random>

namespace keel {
namespace {

using kv::Op;
using kv::Reply;
using kv::SessionRef;
using kv::Status;

struct Collect final : SnapshotSink {
  std::vector<std::string> chunks;
  void write(std::string_view c) override { chunks.emplace_back(c); }
  std::string all() const {
    std::string s;
    for (auto& c : chunks) s += c;
    return s;
  }
};

std::string stamped(std::string cmd, uint64_t clock) {
  EXPECT_TRUE(kv::stampClock(reinterpret_cast<uint8_t*>(cmd.data()), cmd.size(), clock));
  return cmd;
}

Reply decode(Op op, const std::string& bytes) {
  Reply r;
  EXPECT_TRUE(kv::decodeReply(op, bytes, r)) << "undecodable reply";
  return r;
}

class Kv : public ::testing::Test {
 protected:
  Reply put(std::string_view k, std::string_view v, SessionRef s = {}) {
    return decode(Op::Put, sm.apply(Index{++index}, stamped(kv::encodePut(s, k, v), clock)));
  }
  Reply get(std::string_view k) { return decode(Op::Get, sm.query(kv::encodeGet(k))); }
  Reply del(std::string_view k, SessionRef s = {}) {
    return decode(Op::Delete, sm.apply(Index{++index}, stamped(kv::encodeDelete(s, k), clock)));
  }
  Reply cas(std::string_view k, std::optional<std::string_view> e, std::optional<std::string_view> v) {
    return decode(Op::Cas, sm.apply(Index{++index}, stamped(kv::encodeCas({}, k, e, v), clock)));
  }
  uint64_t registerSession() {
    Reply r = decode(Op::RegisterSession,
                     sm.apply(Index{++index}, stamped(kv::encodeRegisterSession(), clock)));
    EXPECT_TRUE(r.ok());
    return r.client;
  }
  Reply scan(std::string_view a, std::string_view b, uint32_t limit = 0) {
    return decode(Op::Scan, sm.query(kv::encodeScan(a, b, limit)));
  }

  KvStateMachine::Options options() {
    KvStateMachine::Options o;
    o.sessionTimeoutMs = 1000;
    o.maxSessions = 3;
    o.snapshotChunkBytes = 64;
    return o;
  }
  KvStateMachine sm{options()};
  uint64_t index = 0;
  uint64_t clock = 1;
};

TEST_F(Kv, PutGetDelete) {
  EXPECT_EQ(get("a").status, Status::NotFound);
  EXPECT_TRUE(put("a", "1").ok());
  EXPECT_EQ(get("a").value, "1");
  EXPECT_TRUE(put("a", "2").ok());
  EXPECT_EQ(get("a").value, "2");
  EXPECT_TRUE(put("", "").ok());  // the empty key and value are ordinary
  EXPECT_EQ(get("").status, Status::Ok);
  EXPECT_TRUE(del("a").ok());
  EXPECT_EQ(del("a").status, Status::NotFound);
  EXPECT_EQ(get("a").status, Status::NotFound);
  EXPECT_EQ(sm.size(), 1u);
}

// A key and its value share one record: inline while they fit in 32 bytes together, else on
// the heap; a value that grows or shrinks moves between the two.
TEST_F(Kv, ValuesMoveBetweenInlineAndHeapStorageIntact) {
  static_assert(sizeof(kv::detail::Record) == 40);
  std::string longKey(40, 'k'), big(1000, 'b');
  EXPECT_TRUE(put("k", "0123456789abcdef").ok());  // 1 + 16: inline
  EXPECT_TRUE(put(longKey, "v").ok());             // 41: heap
  EXPECT_TRUE(put("k", big).ok());                 // inline -> heap
  EXPECT_EQ(get("k").value, big);
  EXPECT_TRUE(put("k", "small").ok());             // heap -> inline
  EXPECT_EQ(get("k").value, "small");
  EXPECT_TRUE(put(longKey, "").ok());
  EXPECT_EQ(get(longKey).value, "");
  EXPECT_EQ(get(longKey).status, Status::Ok);
  // APPEND grows a value across the boundary (31 bytes inline, then 32 + 1 on the heap).
  for (int i = 0; i < 40; ++i) {
    Reply r;
    ASSERT_TRUE(kv::decodeReply(Op::Append, sm.apply(Index{++index}, kv::encodeAppend({}, "a", "x")), r));
    EXPECT_EQ(r.count, uint64_t(i + 1));
  }
  EXPECT_EQ(get("a").value, std::string(40, 'x'));
  auto all = sm.data();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all.at("k"), "small");
  // A copy of the machine (its records copied) is equal and independent.
  KvStateMachine copy = sm;
  EXPECT_TRUE(put("k", big).ok());
  EXPECT_EQ(copy.data().at("k"), "small");
}

TEST_F(Kv, CompareAndSet) {
  // Expected absent: create only.
  EXPECT_TRUE(cas("k", std::nullopt, "v1").ok());
  Reply r = cas("k", std::nullopt, "v2");
  EXPECT_EQ(r.status, Status::CompareFailed);
  EXPECT_TRUE(r.present);
  EXPECT_EQ(r.value, "v1");
  EXPECT_EQ(cas("k", "zz", "v2").status, Status::CompareFailed);
  EXPECT_TRUE(cas("k", "v1", "v2").ok());
  EXPECT_EQ(get("k").value, "v2");
  // Value absent: delete when it matches.
  EXPECT_TRUE(cas("k", "v2", std::nullopt).ok());
  r = cas("k", "v2", "x");
  EXPECT_EQ(r.status, Status::CompareFailed);
  EXPECT_FALSE(r.present);
}

TEST_F(Kv, ScanIsOrderedBoundedAndLimited) {
  for (const char* k : {"b", "a", "d", "c", "e"}) put(k, std::string(k) + "!");
  Reply r = scan("b", "e");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.pairs.size(), 3u);
  EXPECT_EQ(r.pairs[0].first, "b");
  EXPECT_EQ(r.pairs[2].first, "d");
  EXPECT_EQ(r.pairs[2].second, "d!");
  EXPECT_FALSE(r.more);
  r = scan("", "", 2);
  EXPECT_EQ(r.pairs.size(), 2u);
  EXPECT_TRUE(r.more);
  r = scan("c", "");
  EXPECT_EQ(r.pairs.size(), 3u);
  EXPECT_FALSE(r.more);
}

TEST_F(Kv, RetriedWriteInASessionAppliesOnce) {
  uint64_t c = registerSession();
  ASSERT_NE(c, 0u);
  EXPECT_TRUE(put("x", "1", {c, 1, 1}).ok());
  EXPECT_TRUE(put("x", "2", {c, 2, 1}).ok());
  // A retry of seq 1 (its reply was lost) returns the cached reply and changes nothing.
  EXPECT_TRUE(put("x", "1", {c, 1, 1}).ok());
  EXPECT_EQ(get("x").value, "2");
  // A delete retried: the first reply (Ok) comes back, not NotFound.
  EXPECT_TRUE(del("x", {c, 3, 3}).ok());
  EXPECT_TRUE(del("x", {c, 3, 3}).ok());
  // Once acknowledged, an old seq is a duplicate.
  EXPECT_EQ(put("x", "1", {c, 1, 4}).status, Status::Duplicate);
  EXPECT_EQ(get("x").status, Status::NotFound);
}

TEST_F(Kv, UnknownSessionIsRefusedNotApplied) {
  EXPECT_EQ(put("x", "1", {999, 1, 1}).status, Status::SessionExpired);
  EXPECT_EQ(get("x").status, Status::NotFound);
}

TEST_F(Kv, SessionsExpireByTheLogsClockOnly) {
  uint64_t c = registerSession();
  clock = 900;
  EXPECT_TRUE(put("a", "1", {c, 1, 1}).ok());  // keeps it alive
  clock = 1800;
  EXPECT_TRUE(put("b", "1").ok());
  EXPECT_TRUE(sm.hasSession(c));
  // A command stamped with an older clock (a new leader whose clock lags) moves nothing back.
  clock = 5;
  EXPECT_TRUE(put("c", "1").ok());
  EXPECT_EQ(sm.clock(), 1800u);
  sm.apply(Index{++index}, kv::encodeClock(1901));
  EXPECT_FALSE(sm.hasSession(c));
  EXPECT_EQ(put("a", "2", {c, 2, 2}).status, Status::SessionExpired);
  EXPECT_EQ(get("a").value, "1");
}

TEST_F(Kv, TooManySessionsEvictsTheLeastRecentlyActive) {
  uint64_t a = registerSession();
  clock = 2;
  uint64_t b = registerSession();
  clock = 3;
  uint64_t c = registerSession();
  clock = 4;
  put("k", "v", {a, 1, 1});  // a is now the most recent
  clock = 5;
  uint64_t d = registerSession();
  EXPECT_TRUE(sm.hasSession(a));
  EXPECT_FALSE(sm.hasSession(b));
  EXPECT_TRUE(sm.hasSession(c));
  EXPECT_TRUE(sm.hasSession(d));
}

TEST_F(Kv, MalformedInputIsABadRequestAndChangesNothing) {
  EXPECT_EQ(decode(Op::Put, sm.apply(Index{1}, "")).status, Status::BadRequest);
  EXPECT_EQ(decode(Op::Put, sm.apply(Index{2}, std::string(9, '\x01'))).status, Status::BadRequest);
  std::string cmd = kv::encodePut({}, "key", "value");
  cmd.pop_back();
  EXPECT_EQ(decode(Op::Put, sm.apply(Index{3}, cmd)).status, Status::BadRequest);
  std::string q = kv::encodeGet("k");
  q += "junk";
  EXPECT_EQ(decode(Op::Get, sm.query(q)).status, Status::BadRequest);
  EXPECT_EQ(decode(Op::Get, sm.query("")).status, Status::BadRequest);
  EXPECT_EQ(decode(Op::Get, sm.query("\x63")).status, Status::BadRequest);
  EXPECT_EQ(sm.size(), 0u);
  std::string buf = "\x01";
  EXPECT_FALSE(kv::stampClock(reinterpret_cast<uint8_t*>(buf.data()), buf.size(), 1));
  Reply r;
  EXPECT_FALSE(kv::decodeReply(Op::Get, "", r));
  EXPECT_FALSE(kv::decodeReply(Op::Get, std::string(1, '\0'), r));
  EXPECT_FALSE(kv::decodeReply(Op::Scan, std::string("\0\x05", 2), r));
}

TEST_F(Kv, SnapshotRestoresEverythingAndIsStreamedInChunks) {
  uint64_t c = registerSession();
  for (int i = 0; i < 50; ++i) put("key" + std::to_string(i), std::string(20, 'a' + i % 26), {c, uint64_t(i + 1), 1});
  Collect sink;
  sm.snapshot(sink);
  EXPECT_GT(sink.chunks.size(), 5u);
  KvStateMachine other(options());
  ASSERT_TRUE(other.restore(sink.all()));
  EXPECT_EQ(other.data(), sm.data());
  EXPECT_EQ(other.clock(), sm.clock());
  EXPECT_TRUE(other.hasSession(c));
  // The restored session still deduplicates.
  std::string retry = kv::encodePut({c, 3, 1}, "key2", "changed");
  EXPECT_EQ(other.apply(Index{1000}, retry), sm.apply(Index{1000}, retry));
  EXPECT_EQ(decode(Op::Get, other.query(kv::encodeGet("key2"))).value, std::string(20, 'c'));
  // A snapshot of the restored machine is byte for byte the same.
  Collect again;
  other.snapshot(again);
  EXPECT_EQ(again.all(), sink.all());
}

TEST_F(Kv, RestoreRefusesForeignOrDamagedBytesAndKeepsState) {
  put("a", "1");
  Collect sink;
  sm.snapshot(sink);
  std::string snap = sink.all();
  EXPECT_FALSE(sm.restore("not a snapshot"));
  std::string bad = snap;
  bad[bad.size() / 2] ^= 1;
  EXPECT_FALSE(sm.restore(bad));
  EXPECT_FALSE(sm.restore(snap.substr(0, snap.size() - 1)));
  EXPECT_EQ(get("a").value, "1");
  KvStateMachine empty;
  Collect e;
  empty.snapshot(e);
  EXPECT_TRUE(sm.restore(e.all()));
  EXPECT_EQ(sm.size(), 0u);
}

// Snapshots end with an XXH3-64 under magic KEELKV02; those written before (KEELKV01, with an
// FNV-1a) still restore, and a damaged one of either kind does not.
TEST_F(Kv, RestoreReadsTheOlderFnvSnapshots) {
  put("a", "1");
  put("b", std::string(300, 'x'));
  Collect sink;
  sm.snapshot(sink);
  std::string snap = sink.all();
  ASSERT_EQ(snap.substr(0, 8), "KEELKV02");
  std::string old = "KEELKV01" + snap.substr(8, snap.size() - 16);
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : old) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  for (int i = 0; i < 8; ++i) old.push_back(char(h >> (8 * i)));
  KvStateMachine other(options());
  ASSERT_TRUE(other.restore(old));
  EXPECT_EQ(other.data(), sm.data());
  old[old.size() / 2] ^= 1;
  EXPECT_FALSE(other.restore(old));
  std::string xx = "KEELKV02" + old.substr(8);  // the FNV checksum under the new magic
  EXPECT_FALSE(other.restore(xx));
}

// A snapshot restored as it streams in, cut anywhere, gives the state restore() gives; damaged
// or older bytes fail finish() and change nothing.
TEST_F(Kv, StreamedRestoreEqualsWholeRestoreWhereverTheBytesAreCut) {
  uint64_t c = registerSession();
  for (int i = 0; i < 300; ++i)
    put("key" + std::to_string(i), std::string(i % 7 == 0 ? 5000 : 20, char('a' + i % 26)), {c, uint64_t(i + 1), 1});
  Collect sink;
  sm.snapshot(sink);
  std::string snap = sink.all();
  KvStateMachine whole(options());
  ASSERT_TRUE(whole.restore(snap));
  for (size_t piece : {size_t(1), size_t(3), size_t(7), size_t(100), size_t(4096), size_t(10000), snap.size()}) {
    KvStateMachine other(options());
    auto r = other.beginRestore();
    ASSERT_TRUE(r);
    for (size_t at = 0; at < snap.size(); at += piece) r->write(std::string_view(snap).substr(at, piece));
    EXPECT_EQ(other.size(), 0u) << "nothing changes before apply()";
    ASSERT_TRUE(r->finish()) << "pieces of " << piece;
    r->apply();
    EXPECT_EQ(other.data(), whole.data()) << piece;
    EXPECT_EQ(other.clock(), whole.clock());
    EXPECT_TRUE(other.hasSession(c));
    Collect again;
    other.snapshot(again);
    EXPECT_EQ(again.all(), snap) << piece;
  }
  // Damaged anywhere, truncated, or with bytes after the checksum: finish() fails.
  for (size_t flip : {size_t(3), size_t(20), snap.size() / 2, snap.size() - 3}) {
    std::string bad = snap;
    bad[flip] ^= 0x40;
    KvStateMachine other(options());
    auto r = other.beginRestore();
    r->write(bad.substr(0, bad.size() / 3));
    r->write(bad.substr(bad.size() / 3));
    EXPECT_FALSE(r->finish()) << flip;
    EXPECT_THROW(r->apply(), std::logic_error);
  }
  for (std::string bad : {snap.substr(0, snap.size() - 1), snap + "x", std::string("KEELKV01") + snap.substr(8)}) {
    KvStateMachine other(options());
    auto r = other.beginRestore();
    r->write(bad);
    EXPECT_FALSE(r->finish());
  }
  KvStateMachine empty(options());
  Collect e;
  empty.snapshot(e);
  auto r = sm.beginRestore();
  r->write(e.all());
  ASSERT_TRUE(r->finish());
  r->apply();
  EXPECT_EQ(sm.size(), 0u);
}

// A snapshot written a slice at a time while commands keep changing the state (every kind of
// write: new keys before and after the job's position, changed, deleted and re-added keys,
// values growing past the inline size) is, byte for byte, the snapshot of the state when it began.
TEST(KvSnapshotJob, WritesTheStateAsItWasWhenItBegan) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    KvStateMachine::Options o;
    o.snapshotChunkBytes = 100;
    KvStateMachine sm(o);
    std::mt19937_64 rng(seed);
    uint64_t index = 0;
    auto key = [&]() { return "k" + std::to_string(rng() % 400); };
    auto random = [&]() {
      std::string k = key(), v = std::string(rng() % 40, char('a' + rng() % 26));
      std::string cmd;
      switch (rng() % 8) {
        case 0: cmd = kv::encodeDelete({}, k); break;
        case 1: cmd = kv::encodeAppend({}, k, v); break;
        case 2: cmd = kv::encodeIncr({}, "n" + std::to_string(rng() % 20), 1); break;
        case 3: cmd = kv::encodeCas({}, k, std::nullopt, v); break;
        case 4: cmd = kv::encodeGetSet({}, k, v); break;
        case 5: cmd = kv::encodePutMany({}, {{key(), v}, {key(), v}}); break;
        case 6: {
          std::string a = key(), b = key();
          cmd = kv::encodeDeleteMany({}, {a, b});
          break;
        }
        default: cmd = kv::encodePut({}, k, v); break;
      }
      sm.apply(Index{++index}, cmd);
    };
    for (int i = 0; i < 300; ++i) random();
    Collect before;
    sm.snapshot(before);
    auto stateBefore = sm.data();
    Collect sliced;
    auto job = sm.beginSnapshot(sliced);
    ASSERT_NE(job, nullptr);
    // Snapshotting twice at once, or restoring under the job, is refused.
    Collect other;
    EXPECT_THROW(sm.snapshot(other), std::logic_error);
    EXPECT_THROW(sm.restore(before.all()), std::logic_error);
    int steps = 0;
    while (!job->step(1 + rng() % 64)) {
      for (int i = int(rng() % 4); i > 0; --i) random();
      ++steps;
    }
    EXPECT_GT(steps, 10);
    EXPECT_TRUE(job->step(100));  // done stays done
    ASSERT_EQ(sliced.all(), before.all()) << "seed " << seed;
    KvStateMachine restored;
    ASSERT_TRUE(restored.restore(sliced.all()));
    EXPECT_EQ(restored.data(), stateBefore);
    // The job is over: a new snapshot may start, of the state as it is now.
    Collect now, copy;
    sm.snapshot(now);
    ASSERT_TRUE(restored.restore(now.all()));
    EXPECT_EQ(restored.data(), sm.data());
  }
}

TEST(KvSnapshotJob, AnAbandonedJobLeavesTheMachineFree) {
  KvStateMachine sm;
  for (int i = 0; i < 100; ++i) sm.apply(Index{uint64_t(i + 1)}, kv::encodePut({}, "k" + std::to_string(i), "v"));
  Collect sink;
  auto job = sm.beginSnapshot(sink);
  EXPECT_FALSE(job->step(10));
  sm.apply(Index{101}, kv::encodeDelete({}, "k99"));
  job.reset();
  Collect whole;
  sm.snapshot(whole);
  KvStateMachine restored;
  ASSERT_TRUE(restored.restore(whole.all()));
  EXPECT_EQ(restored.size(), 99u);
  ASSERT_TRUE(sm.restore(whole.all()));
}

// Two replicas given the same random commands agree on every reply and on their snapshots.
TEST(KvDeterminism, SameCommandsSameStateAndReplies) {
  KvStateMachine::Options o;
  o.sessionTimeoutMs = 50;
  o.maxSessions = 4;
  KvStateMachine a(o), b(o);
  std::mt19937_64 rng(42);
  std::vector<uint64_t> clients;
  uint64_t clock = 0;
  for (uint64_t i = 1; i <= 5000; ++i) {
    clock += rng() % 3;
    SessionRef s;
    if (!clients.empty() && rng() % 2) s = {clients[rng() % clients.size()], rng() % 20, rng() % 10};
    std::string key = "k" + std::to_string(rng() % 30);
    std::string cmd;
    switch (rng() % 5) {
      case 0: cmd = kv::encodePut(s, key, std::to_string(rng() % 5)); break;
      case 1: cmd = kv::encodeDelete(s, key); break;
      case 2: cmd = kv::encodeCas(s, key, std::to_string(rng() % 5), std::to_string(rng() % 5)); break;
      case 3: cmd = kv::encodeRegisterSession(); break;
      default: cmd = kv::encodeClock(clock); break;
    }
    kv::stampClock(reinterpret_cast<uint8_t*>(cmd.data()), cmd.size(), clock);
    std::string ra = a.apply(Index{i}, cmd);
    ASSERT_EQ(ra, b.apply(Index{i}, cmd));
    Reply r;
    ASSERT_TRUE(kv::decodeReply(static_cast<Op>(cmd[0]), ra, r));
    if (cmd[0] == static_cast<char>(Op::RegisterSession)) clients.push_back(r.client);
  }
  Collect sa, sb;
  a.snapshot(sa);
  b.snapshot(sb);
  EXPECT_EQ(sa.all(), sb.all());
  EXPECT_LE(a.sessionCount(), 4u);
}

// Lookups agree with a plain map after every kind of change, and after copies, moves and
// restores of the machine.
TEST(KvModel, LookupsAgreeWithAMapThroughCopiesMovesAndRestores) {
  using Model = std::map<std::string, std::string>;
  auto expectAgrees = [](const KvStateMachine& sm, const Model& model, const char* where) {
    for (int k = 0; k < 200; ++k) {
      std::string key = "key" + std::to_string(k);
      Reply r = decode(Op::Get, sm.query(kv::encodeGet(key)));
      auto it = model.find(key);
      if (it == model.end()) {
        ASSERT_EQ(r.status, Status::NotFound) << where << ": " << key;
      } else {
        ASSERT_EQ(r.status, Status::Ok) << where << ": " << key;
        ASSERT_EQ(r.value, it->second) << where << ": " << key;
      }
    }
    ASSERT_EQ(sm.size(), model.size()) << where;
  };
  KvStateMachine sm;
  Model model;
  std::mt19937_64 rng(7);
  uint64_t index = 0;
  auto step = [&](KvStateMachine& m, Model& mm) {
    std::string key = "key" + std::to_string(rng() % 200);
    // Values on both sides of the inline limit, so that records move between their storages.
    std::string value(rng() % 3 ? rng() % 8 : 20 + rng() % 40, char('a' + rng() % 26));
    switch (rng() % 4) {
      case 0:
      case 1:
        m.apply(Index{++index}, stamped(kv::encodePut({}, key, value), 1));
        mm[key] = value;
        break;
      case 2:
        m.apply(Index{++index}, stamped(kv::encodeDelete({}, key), 1));
        mm.erase(key);
        break;
      default: {
        auto it = mm.find(key);
        std::optional<std::string> expected;
        if (it != mm.end() && rng() % 2) expected = it->second;
        Reply r = decode(Op::Cas, m.apply(Index{++index}, stamped(kv::encodeCas({}, key, expected, value), 1)));
        if (r.ok()) mm[key] = value;
      }
    }
  };
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 1000; ++i) step(sm, model);
    expectAgrees(sm, model, "applied");
  }
  // A copy has its own index: changes to either leave the other's lookups right.
  KvStateMachine copy = sm;
  Model copyModel = model;
  for (int i = 0; i < 1000; ++i) step(sm, model);
  for (int i = 0; i < 1000; ++i) step(copy, copyModel);
  expectAgrees(sm, model, "original after copy");
  expectAgrees(copy, copyModel, "copy");
  KvStateMachine assigned;
  assigned = copy;
  expectAgrees(assigned, copyModel, "copy-assigned");
  KvStateMachine moved = std::move(copy);
  for (int i = 0; i < 1000; ++i) step(moved, copyModel);
  expectAgrees(moved, copyModel, "moved");
  // Restored whole and streamed: lookups work, and so do changes after them.
  Collect snap;
  sm.snapshot(snap);
  KvStateMachine whole;
  ASSERT_TRUE(whole.restore(snap.all()));
  expectAgrees(whole, model, "restored");
  KvStateMachine streamed;
  auto r = streamed.beginRestore();
  r->write(snap.all());
  ASSERT_TRUE(r->finish());
  r->apply();
  expectAgrees(streamed, model, "streamed restore");
  Model model2 = model;
  for (int i = 0; i < 1000; ++i) step(whole, model);
  for (int i = 0; i < 1000; ++i) step(streamed, model2);
  expectAgrees(whole, model, "changed after restore");
  expectAgrees(streamed, model2, "changed after streamed restore");
}

}  // namespace
}  // namespace keel
