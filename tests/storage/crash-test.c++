// keel tests: SegmentedLog across crashes, corruption and failing syncs.
//
// A seeded workload (appends, conflicting appends, hard-state changes, compaction, snapshot
// installation, batches left in flight) runs on the recording file layer. Then, for every prefix
// of the recorded operations, every crash state the layer can derive is reopened and checked:
//   * it opens (a crash never looks like corruption);
//   * the log is a prefix of what some batch at or after the last acknowledged one held;
//   * it holds every entry of the last acknowledged batch that no later batch replaced;
//   * the snapshot, term and vote are never older than the acknowledged ones.
#include <keel/segmented-log.h>

#include "../../src/log/format.h"
#include "fault-file-system.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace keel {
namespace {

using test::FaultFileSystem;
const std::string kDir = "/log";

uint64_t fingerprint(const Entry& e) {
  uint64_t h = XXH3_64bits_withSeed(e.data.data(), e.data.size(), e.term.value * 3 + uint64_t(e.type));
  return h | 1;  // 0 means "covered by an installed snapshot: unknown"
}

// What the log was asked to hold when a batch was closed.
struct State {
  HardState hs;
  uint64_t snapIndex = 0, snapTerm = 0, snapData = 0;
  std::vector<uint64_t> fp;  // fp[i - 1]: entry i, compacted ones included
  uint64_t last() const { return fp.size(); }
};

SegmentedLog::Options options(FileSystem& fs) {
  SegmentedLog::Options o;
  o.fs = &fs;
  o.segmentBytes = 4096;
  o.writeBufferBytes = 1500;
  return o;
}

std::string randomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = char(1 + rng() % 255);  // never zero: see the torn-tail rule
  return s;
}

struct Workload {
  FaultFileSystem fs;
  // Every state the log was asked to hold, in order: the empty log, then for each batch the
  // state before its compaction or snapshot installation (if any) and the state it closed.
  std::vector<State> states;
  std::vector<size_t> seqPos;                // seqPos[seq]: the state batch `seq` closed
  std::map<uint64_t, size_t> snapshotBatch;  // snapshot data hash -> first state holding it
};

// Runs `batches` batches of random work. Every few batches it waits for durability; otherwise
// batches pile up in flight.
void runWorkload(Workload& w, uint64_t seed, int batches, bool direct) {
  std::mt19937_64 rng(seed);
  w.fs.takeDirectIo(direct);
  State cur;
  w.states.push_back(cur);
  w.seqPos.push_back(0);
  SegmentedLog log(kDir, options(w.fs));
  log.onDurable([&](uint64_t seq) { w.fs.mark(seq); });
  uint64_t term = 1;
  for (int b = 1; b <= batches; ++b) {
    if (rng() % 5 == 0) {
      cur.hs.term = Term{++term};
      cur.hs.vote = NodeId{1 + rng() % 3};
      log.setHardState(cur.hs);
    } else if (rng() % 4 == 0) {
      cur.hs.commit = Index{cur.snapIndex + rng() % 5};
      log.setHardState(cur.hs);
    }
    uint64_t first = cur.last() + 1;
    if (rng() % 6 == 0 && cur.last() > cur.snapIndex) {  // a conflicting suffix
      first = cur.snapIndex + 1 + rng() % (cur.last() - cur.snapIndex);
      term = std::max(term, cur.hs.term.value) + 1;
    }
    std::vector<Entry> es;
    uint64_t n = 1 + rng() % 5;
    for (uint64_t k = 0; k < n; ++k) {
      Entry e;
      e.index = Index{first + k};
      e.term = Term{term};
      e.type = rng() % 8 == 0 ? EntryType::Membership : EntryType::Normal;
      e.data = Bytes(randomBytes(rng, rng() % 900));
      es.push_back(e);
    }
    log.append(es);
    cur.fp.resize(first - 1);
    for (auto& e : es) cur.fp.push_back(fingerprint(e));
    int r = int(rng() % 20);
    if (r <= 1) w.states.push_back(cur);
    if (r == 0 && cur.last() > cur.snapIndex) {
      Snapshot s;
      s.meta.index = Index{cur.snapIndex + 1 + rng() % (cur.last() - cur.snapIndex)};
      s.meta.term = log.term(s.meta.index);
      s.data = Bytes(randomBytes(rng, 100 + rng() % 2000));
      log.compact(s);
      cur.snapIndex = s.meta.index.value;
      cur.snapTerm = s.meta.term.value;
      cur.snapData = XXH3_64bits(s.data.data(), s.data.size());
      w.snapshotBatch.emplace(cur.snapData, w.states.size());
    } else if (r == 1) {
      Snapshot s;
      s.meta.index = Index{cur.last() + rng() % 4};
      s.meta.term = Term{++term};
      s.data = Bytes(randomBytes(rng, 50 + rng() % 1000));
      if (rng() % 2 == 0) {
        // As the server receives one: streamed into snapshot.recv, then installed from there.
        auto rx = log.receiveSnapshot(s.meta, s.data.size());
        size_t half = s.data.size() / 2;
        rx->write(s.data.data(), half);
        rx->write(s.data.data() + half, s.data.size() - half);
        s.data = rx->finish();
      }
      log.installSnapshot(s);
      cur.snapIndex = s.meta.index.value;
      cur.snapTerm = s.meta.term.value;
      cur.snapData = XXH3_64bits(s.data.data(), s.data.size());
      w.snapshotBatch.emplace(cur.snapData, w.states.size());
      cur.fp.assign(cur.snapIndex, 0);
    }
    // Half the batches are synced on this thread when the I/O thread is idle.
    uint64_t seq = rng() % 2 ? log.syncAsync() : log.syncHere(1 << 20);
    ASSERT_EQ(seq, uint64_t(b));
    w.states.push_back(cur);
    w.seqPos.push_back(w.states.size() - 1);
    if (rng() % 4 == 0) log.waitDurable(seq);
  }
  log.sync();
  w.seqPos.push_back(w.states.size() - 1);
  w.seqPos.push_back(w.states.size() - 1);  // the destructor's final batch
}

// Checks a reopened log against the workload's states; empty when it is fine.
std::string check(const SegmentedLog& log, const Workload& w, uint64_t ackSeq) {
  const size_t ack = w.seqPos[std::min<size_t>(ackSeq, w.seqPos.size() - 1)];
  const State& acked = w.states[ack];
  HardState hs = log.hardState();
  if (hs.term < acked.hs.term) return "term went back to " + toString(hs.term);
  // A node starts from this state: its commit index must lie within what it holds.
  if (hs.commit > log.lastIndex()) return "commit " + toString(hs.commit) + " past the last entry " + toString(log.lastIndex());
  bool hsOk = false;
  for (size_t c = ack; c < w.states.size() && !hsOk; ++c)
    hsOk = w.states[c].hs.term == hs.term && w.states[c].hs.vote == hs.vote;
  if (!hsOk)
    return "term " + toString(hs.term) + " vote " + toString(hs.vote) + " was never written";

  SnapshotMeta sm = log.snapshotMeta();
  if (sm.index.value < acked.snapIndex) return "the acknowledged snapshot was lost";
  Snapshot snap = log.snapshot();
  uint64_t snapHash = sm.index.value == 0 && snap.data.empty()
                          ? 0
                          : XXH3_64bits(snap.data.data(), snap.data.size());
  size_t snapFrom = 0;
  if (snapHash != 0) {
    auto it = w.snapshotBatch.find(snapHash);
    if (it == w.snapshotBatch.end()) return "unknown snapshot data";
    snapFrom = it->second;
  }
  std::vector<Entry> es;
  if (log.lastIndex() >= log.firstIndex())
    log.entries(log.firstIndex(), log.lastIndex().next(), UINT64_MAX, es);
  const uint64_t last = log.lastIndex().value;

  for (size_t b = std::max<size_t>(ack, snapFrom); b < w.states.size(); ++b) {
    const State& s = w.states[b];
    if (last > s.last()) continue;
    bool prefix = true;
    for (auto& e : es) {
      uint64_t want = s.fp[e.index.value - 1];
      if (want != 0 && want != fingerprint(e)) { prefix = false; break; }
    }
    if (!prefix) continue;
    // Every acknowledged entry must be there, unless a batch up to b + 1 replaced it (a crash
    // in the middle of a suffix truncation may leave any length in between).
    uint64_t keep = acked.last();
    for (size_t c = ack; c <= std::min(b + 1, w.states.size() - 1); ++c) {
      const State& sc = w.states[c];
      uint64_t k = 0;
      while (k < keep && k < sc.last() &&
             (acked.fp[k] == sc.fp[k] || acked.fp[k] == 0 || sc.fp[k] == 0))
        ++k;
      keep = k;
    }
    if (last < keep) continue;
    return "";
  }
  return "the log (" + toString(log.firstIndex()) + ".." + toString(log.lastIndex()) +
         ") is not a prefix of any batch from the acknowledged one (" + std::to_string(ackSeq) +
         ") on, holding its entries";
}

// `direct`: the file system takes direct I/O, so that snapshots (a compaction's, and those
// received in parts) are written through DirectAppender: aligned blocks, the last one padded
// with zeros and cut back.
void crashTest(uint64_t seed, int batches, size_t stride, bool direct = false) {
  Workload w;
  ASSERT_NO_FATAL_FAILURE(runWorkload(w, seed, batches, direct));
  if (direct) ASSERT_GT(w.fs.directOpens(), 0u);
  auto journal = w.fs.journal();
  size_t states = 0, torn = 0;
  for (size_t p = 0;; p = std::min(p + stride, journal.size())) {
    for (auto& cs : FaultFileSystem::crashStates({}, journal, p)) {
      ++states;
      FaultFileSystem fs(cs.files);
      fs.takeDirectIo(direct);
      std::unique_ptr<SegmentedLog> log;
      try {
        log = std::make_unique<SegmentedLog>(kDir, options(fs));
      } catch (const std::exception& e) {
        FAIL() << "after " << p << " of " << journal.size() << " operations, " << cs.what
               << ": " << e.what();
      }
      torn += log->recoveryReport().tornTail;
      std::string err = check(*log, w, cs.marker);
      ASSERT_EQ(err, "") << "after " << p << " of " << journal.size() << " operations, "
                         << cs.what << " (batch " << cs.marker << " acknowledged)";
      if (p % 7 == 0) {  // the recovered log takes new writes and reopens the same
        Index next = log->lastIndex().next();
        Entry e;
        e.index = next;
        e.term = Term{1000};
        e.data = Bytes(std::string("after the crash"));
        log->append({&e, 1});
        log->sync();
        log.reset();
        SegmentedLog again(kDir, options(fs));
        ASSERT_EQ(again.lastIndex(), next);
        ASSERT_FALSE(again.recoveryReport().tornTail);
      }
    }
    if (p == journal.size()) break;
  }
  EXPECT_GT(torn, 0u) << "no crash state had a torn tail";
  std::printf("seed %llu: %zu operations, %zu crash states, %zu with a torn tail\n",
              (unsigned long long)seed, journal.size(), states, torn);
}

TEST(SegmentedLogCrash, EveryCrashStateKeepsAcknowledgedEntriesSeed1) { crashTest(1, 80, 1); }
TEST(SegmentedLogCrash, EveryCrashStateKeepsAcknowledgedEntriesSeed2) { crashTest(2, 80, 1); }
TEST(SegmentedLogCrash, EveryCrashStateKeepsAcknowledgedEntriesSeed3) { crashTest(3, 80, 1); }
TEST(SegmentedLogCrash, EveryCrashStateKeepsAcknowledgedEntriesSeed4) { crashTest(4, 80, 1); }
TEST(SegmentedLogCrash, LongerRunEveryOtherOperation) { crashTest(5, 300, 2); }
TEST(SegmentedLogCrash, SnapshotsThroughDirectIoSeed1) { crashTest(1, 80, 1, true); }
TEST(SegmentedLogCrash, SnapshotsThroughDirectIoSeed2) { crashTest(2, 80, 1, true); }
TEST(SegmentedLogCrash, SnapshotsThroughDirectIoSeed3) { crashTest(3, 80, 1, true); }
TEST(SegmentedLogCrash, LongerRunSnapshotsThroughDirectIo) { crashTest(5, 300, 2, true); }

// ---- corruption: a flipped bit anywhere is found, and named ----

struct FlipTarget {
  std::string file;
  uint64_t offset;
  uint64_t recordStart;  // the offset CorruptionError must name (at most)
};

TEST(SegmentedLogCorruption, BitFlipsInEveryRegionAreDetected) {
  FaultFileSystem fs;
  std::mt19937_64 rng(9);
  {
    SegmentedLog log(kDir, options(fs));
    log.setHardState({Term{3}, NodeId{2}, Index{0}});
    log.sync();
    log.setHardState({Term{4}, NodeId{1}, Index{1}});  // both meta files are written
    std::vector<Entry> es;
    for (uint64_t i = 1; i <= 30; ++i) {
      Entry e;
      e.index = Index{i};
      e.term = Term{4};
      e.data = Bytes(randomBytes(rng, 10 + rng() % 600));
      es.push_back(e);
    }
    Entry noop;  // an empty payload (the leader's no-op)
    noop.index = Index{31};
    noop.term = Term{4};
    es.push_back(noop);
    log.append(es);
    Snapshot s;
    s.meta.index = Index{3};
    s.meta.term = Term{4};
    s.meta.membership.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
    s.data = Bytes(randomBytes(rng, 700));
    log.compact(s);
    log.sync();
  }
  auto files = fs.current();
  std::vector<FlipTarget> targets;
  for (auto& [path, data] : files) {
    std::string name = path.substr(kDir.size() + 1);
    uint64_t first;
    if (logformat::parseSegmentName(name, first)) {
      for (uint64_t o = 0; o < logformat::kSegmentHeaderBytes; ++o) targets.push_back({path, o, 0});
      for (uint64_t off = logformat::kSegmentHeaderBytes; off < data.size();) {
        // The active segment's zeros ahead of its records (Options::zeroAheadBytes) are past
        // the log's end: a flipped bit there is a torn tail, not a damaged entry.
        if (data.size() - off >= logformat::kRecordHeaderBytes &&
            std::all_of(data.begin() + off, data.begin() + off + logformat::kRecordHeaderBytes,
                        [](uint8_t b) { return b == 0; }))
          break;
        uint32_t len = logformat::get32(data.data() + off);
        for (uint64_t o = 0; o < logformat::kRecordHeaderBytes; ++o)
          targets.push_back({path, off + o, off});
        for (uint64_t o = 0; o < len; o += 37)
          targets.push_back({path, off + logformat::kRecordHeaderBytes + o, off});
        off += logformat::kRecordHeaderBytes + len;
      }
    } else if (name == "meta-a" || name == "meta-b") {
      for (uint64_t o = 0; o < data.size(); ++o) targets.push_back({path, o, 0});
    } else if (name == "snapshot") {
      for (uint64_t o = 0; o < data.size(); o += o < 100 ? 1 : 29) targets.push_back({path, o, o});
    }
  }
  ASSERT_GT(targets.size(), 500u);
  size_t segTargets = 0;
  for (auto& t : targets) {
    auto copy = files;
    copy[t.file][t.offset] ^= uint8_t(1u << (t.offset % 8));
    FaultFileSystem broken(copy);
    try {
      SegmentedLog log(kDir, options(broken));
      ADD_FAILURE() << "a flipped bit at " << t.file << ":" << t.offset << " was not detected";
    } catch (const CorruptionError& e) {
      EXPECT_EQ(e.file(), t.file);
      EXPECT_LE(e.offset(), std::max(t.recordStart, t.offset)) << e.what();
      if (t.file.find(".seg") != std::string::npos) {
        ++segTargets;
        EXPECT_GE(e.offset(), t.recordStart) << e.what();
      }
    }
  }
  EXPECT_GT(segTargets, 300u);
}

// ---- a failing sync ends the process ----

TEST(SegmentedLogDeathTest, FailedFdatasyncEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        FaultFileSystem fs;
        SegmentedLog log(kDir, options(fs));
        fs.failSyncAfter(1);
        Entry e;
        e.index = Index{1};
        e.term = Term{1};
        e.data = Bytes(std::string("x"));
        log.append({&e, 1});
        log.sync();
      },
      "FATAL: fdatasync of /log/0+1.seg failed: Input/output error");
}

TEST(SegmentedLogDeathTest, FailedDirectorySyncEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        FaultFileSystem fs;
        SegmentedLog log(kDir, options(fs));
        fs.failSyncAfter(2);  // the segment's fdatasync passes, the directory's fsync fails
        Entry e;
        e.index = Index{1};
        e.term = Term{1};
        log.append({&e, 1});
        log.sync();
      },
      "FATAL: fsync of directory of /log failed");
}

TEST(SegmentedLogDeathTest, PosixLayerEndsTheProcessOnAFailedSync) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(fatalIoError("fdatasync", "/some/file", EIO),
               "keel: FATAL: fdatasync of /some/file failed: Input/output error \\(errno 5\\)");
}

}  // namespace
}  // namespace keel
