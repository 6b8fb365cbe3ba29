// keel tests: SegmentedLog's behaviour as a Log, on the real file system (a directory under
// /tmp), and against MemoryLog as the model.
#include <keel/memory-log.h>
#include <keel/segmented-log.h>

#include "../../src/log/format.h"
#include "fault-file-system.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

namespace keel {
namespace {

namespace fsys = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/keel-log-test-XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    path_ = tmpl;
  }
  ~TempDir() { fsys::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string log() const { return path_ + "/log"; }

 private:
  std::string path_;
};

Entry entry(uint64_t index, uint64_t term, std::string data, EntryType type = EntryType::Normal) {
  Entry e;
  e.index = Index{index};
  e.term = Term{term};
  e.type = type;
  e.data = Bytes(data);
  return e;
}

std::string payload(uint64_t i, size_t n) {
  std::string s(n, '\0');
  for (size_t k = 0; k < n; ++k) s[k] = char('a' + (i * 7 + k) % 26);
  return s;
}

std::vector<Entry> all(const Log& log) {
  std::vector<Entry> out;
  log.entries(log.firstIndex(), log.lastIndex().next(), UINT64_MAX, out);
  return out;
}

void expectSame(const Log& a, const Log& b) {
  ASSERT_EQ(a.firstIndex(), b.firstIndex());
  ASSERT_EQ(a.lastIndex(), b.lastIndex());
  EXPECT_EQ(a.hardState(), b.hardState());
  EXPECT_EQ(a.snapshotMeta(), b.snapshotMeta());
  for (Index i = a.firstIndex().prev(); i <= a.lastIndex(); i = i.next())
    ASSERT_EQ(a.term(i), b.term(i)) << "index " << i.value;
  auto ea = all(a), eb = all(b);
  ASSERT_EQ(ea.size(), eb.size());
  for (size_t k = 0; k < ea.size(); ++k) {
    EXPECT_EQ(ea[k].index, eb[k].index);
    EXPECT_EQ(ea[k].term, eb[k].term);
    EXPECT_EQ(ea[k].type, eb[k].type);
    EXPECT_EQ(ea[k].data, eb[k].data) << "index " << ea[k].index.value;
  }
}

SegmentedLog::Options small() {
  SegmentedLog::Options o;
  o.segmentBytes = 4096;
  o.writeBufferBytes = 4096;
  return o;
}

TEST(SegmentedLog, EmptyLogHasTheInitialMembership) {
  TempDir t;
  SegmentedLog::Options o;
  o.initialMembership.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
  SegmentedLog log(t.log(), o);
  EXPECT_EQ(log.firstIndex(), Index{1});
  EXPECT_EQ(log.lastIndex(), Index{0});
  EXPECT_EQ(log.term(Index{0}), Term{0});
  EXPECT_EQ(log.hardState(), HardState{});
  EXPECT_EQ(log.snapshotMeta().membership, o.initialMembership);
  EXPECT_THROW(log.term(Index{1}), std::out_of_range);
}

TEST(SegmentedLog, AppendReadBackAndReopen) {
  TempDir t;
  {
    SegmentedLog log(t.log());
    std::vector<Entry> es;
    for (uint64_t i = 1; i <= 100; ++i) es.push_back(entry(i, 1 + i / 10, payload(i, i * 3)));
    es[4].type = EntryType::Membership;
    log.append(es);
    log.setHardState({Term{10}, NodeId{2}, Index{50}});
    EXPECT_EQ(log.lastIndex(), Index{100});
    EXPECT_EQ(log.term(Index{55}), Term{6});
    auto got = all(log);  // from the write buffer
    ASSERT_EQ(got.size(), 100u);
    EXPECT_EQ(got[41].data.str(), payload(42, 126));
    log.sync();
    got = all(log);  // from the file
    EXPECT_EQ(got[99].data.str(), payload(100, 300));
  }
  SegmentedLog log(t.log());
  EXPECT_EQ(log.hardState(), (HardState{Term{10}, NodeId{2}, Index{50}}));
  EXPECT_EQ(log.lastIndex(), Index{100});
  auto got = all(log);
  ASSERT_EQ(got.size(), 100u);
  for (uint64_t i = 1; i <= 100; ++i) {
    EXPECT_EQ(got[i - 1].index, Index{i});
    EXPECT_EQ(got[i - 1].term, Term{1 + i / 10});
    EXPECT_EQ(got[i - 1].data.str(), payload(i, i * 3));
  }
  EXPECT_EQ(got[4].type, EntryType::Membership);
  EXPECT_FALSE(log.recoveryReport().tornTail);
}

TEST(SegmentedLog, EntriesRespectsMaxBytesLikeMemoryLog) {
  TempDir t;
  SegmentedLog log(t.log(), small());
  MemoryLog mem;
  std::vector<Entry> es;
  for (uint64_t i = 1; i <= 40; ++i) es.push_back(entry(i, 1, payload(i, 100 + i)));
  log.append(es);
  mem.append(es);
  for (int synced = 0; synced < 2; ++synced) {
    for (uint64_t lo = 1; lo <= 41; lo += 3)
      for (uint64_t hi = lo; hi <= 41; hi += 5)
        for (uint64_t max : {0ull, 1ull, 150ull, 1000ull, 5000ull, ~0ull}) {
          std::vector<Entry> a, b;
          log.entries(Index{lo}, Index{hi}, max, a);
          mem.entries(Index{lo}, Index{hi}, max, b);
          ASSERT_EQ(a.size(), b.size()) << lo << " " << hi << " " << max;
          for (size_t k = 0; k < a.size(); ++k) EXPECT_EQ(a[k].data, b[k].data);
        }
    log.sync();
  }
  std::vector<Entry> out;
  EXPECT_THROW(log.entries(Index{0}, Index{3}, 100, out), std::out_of_range);
  EXPECT_THROW(log.entries(Index{3}, Index{43}, 100, out), std::out_of_range);
}

TEST(SegmentedLog, RollsSegmentsAndReopens) {
  TempDir t;
  {
    SegmentedLog log(t.log(), small());
    for (uint64_t i = 1; i <= 200; ++i) {
      Entry e = entry(i, 1, payload(i, 200));
      log.append({&e, 1});
      if (i % 7 == 0) log.syncAsync();
    }
    log.sync();
  }
  size_t segs = 0;
  for (auto& p : fsys::directory_iterator(t.log()))
    if (p.path().extension() == ".seg") {
      ++segs;
      EXPECT_LE(fsys::file_size(p.path()), 4096u + 232u);
    }
  EXPECT_GT(segs, 5u);
  SegmentedLog log(t.log(), small());
  EXPECT_EQ(log.recoveryReport().segments, segs);
  EXPECT_EQ(log.lastIndex(), Index{200});
  auto got = all(log);
  for (uint64_t i = 1; i <= 200; ++i) ASSERT_EQ(got[i - 1].data.str(), payload(i, 200));
}

TEST(SegmentedLog, BadInputIsRejected) {
  TempDir t;
  SegmentedLog log(t.log());
  Entry e3 = entry(3, 1, "x");
  EXPECT_THROW(log.append({&e3, 1}), std::invalid_argument);
  std::vector<Entry> gap = {entry(1, 1, "a"), entry(3, 1, "b")};
  EXPECT_THROW(log.append(gap), std::invalid_argument);
  EXPECT_EQ(log.lastIndex(), Index{0});
  Snapshot s;
  s.meta.index = Index{5};
  EXPECT_THROW(log.compact(s), std::invalid_argument);
}

// Random operations applied to SegmentedLog and MemoryLog; the read side must agree after
// every step and after every reopen.
TEST(SegmentedLog, AgreesWithMemoryLogUnderRandomOperations) {
  TempDir t;
  std::mt19937_64 rng(42);
  MemoryLog mem;
  auto log = std::make_unique<SegmentedLog>(t.log(), small());
  uint64_t term = 1;
  for (int step = 0; step < 600; ++step) {
    int op = int(rng() % 100);
    if (op < 55) {
      uint64_t n = 1 + rng() % 6;
      uint64_t first = mem.lastIndex().value + 1;
      if (rng() % 8 == 0 && mem.lastIndex() >= mem.firstIndex()) {  // conflict
        first = mem.firstIndex().value + rng() % (mem.lastIndex().value - mem.firstIndex().value + 1);
        ++term;
      }
      std::vector<Entry> es;
      for (uint64_t k = 0; k < n; ++k)
        es.push_back(entry(first + k, term, payload(first + k + step, rng() % 700),
                           rng() % 10 == 0 ? EntryType::Membership : EntryType::Normal));
      log->append(es);
      mem.append(es);
    } else if (op < 62) {
      HardState hs = mem.hardState();
      if (rng() % 2) { hs.term = Term{++term}; hs.vote = NodeId{rng() % 4}; }
      hs.commit = Index{rng() % (mem.lastIndex().value + 1)};
      log->setHardState(hs);
      mem.setHardState(hs);
    } else if (op < 67 && mem.lastIndex() >= mem.firstIndex()) {
      Snapshot s;
      s.meta.index = Index{mem.firstIndex().value +
                           rng() % (mem.lastIndex().value - mem.firstIndex().value + 1)};
      s.meta.term = mem.term(s.meta.index);
      s.meta.membership.voters = {NodeId{1}, NodeId{uint64_t(step)}};
      s.data = Bytes(payload(step, rng() % 3000));
      log->compact(s);
      mem.compact(s);
    } else if (op < 69) {
      Snapshot s;
      s.meta.index = Index{mem.lastIndex().value + rng() % 20};
      s.meta.term = Term{++term};
      s.meta.membership.voters = {NodeId{7}};
      s.data = Bytes(payload(step, rng() % 5000));
      log->installSnapshot(s);
      mem.installSnapshot(s);
    } else if (op < 78) {
      log->syncAsync();
    } else if (op < 85) {
      log->syncHere(rng() % 2 ? 1 << 20 : 512);
    } else if (op < 93) {
      log->sync();
    } else {
      log.reset();
      log = std::make_unique<SegmentedLog>(t.log(), small());
      ASSERT_FALSE(log->recoveryReport().tornTail);
      Snapshot a = log->snapshot(), b = mem.snapshot();
      EXPECT_EQ(a.data, b.data);
      EXPECT_EQ(log->snapshotSize(), b.data.size());
    }
    ASSERT_NO_FATAL_FAILURE(expectSame(*log, mem)) << "step " << step;
  }
}

TEST(SegmentedLog, SuffixTruncationAcrossSegmentsSurvivesReopen) {
  TempDir t;
  {
    SegmentedLog log(t.log(), small());
    for (uint64_t i = 1; i <= 100; ++i) {
      Entry e = entry(i, 1, payload(i, 300));
      log.append({&e, 1});
    }
    log.sync();
    // Cut back into an early segment, and exactly at a segment's first entry.
    std::vector<Entry> es = {entry(20, 2, "new20"), entry(21, 2, "new21")};
    log.append(es);
    log.sync();
  }
  {
    SegmentedLog log(t.log(), small());
    EXPECT_EQ(log.lastIndex(), Index{21});
    EXPECT_EQ(log.term(Index{19}), Term{1});
    EXPECT_EQ(log.term(Index{20}), Term{2});
    auto es = all(log);
    EXPECT_EQ(es[20].data.str(), "new21");
    // The first entry of the second segment.
    uint64_t second = 0;
    for (auto& p : fsys::directory_iterator(t.log())) {
      uint64_t f;
      if (logformat::parseSegmentName(p.path().filename().string(), f) && f > 1 &&
          (second == 0 || f < second))
        second = f;
    }
    ASSERT_GT(second, 1u);
    Entry e = entry(second, 3, "at-boundary");
    log.append({&e, 1});
    log.sync();
  }
  SegmentedLog log(t.log(), small());
  auto es = all(log);
  ASSERT_FALSE(es.empty());
  EXPECT_EQ(es.back().data.str(), "at-boundary");
  EXPECT_EQ(es.back().term, Term{3});
}

TEST(SegmentedLog, CompactionRemovesCoveredSegments) {
  TempDir t;
  auto countSegs = [&] {
    size_t n = 0;
    for (auto& p : fsys::directory_iterator(t.log())) n += p.path().extension() == ".seg";
    return n;
  };
  {
    SegmentedLog log(t.log(), small());
    for (uint64_t i = 1; i <= 100; ++i) {
      Entry e = entry(i, 1, payload(i, 300));
      log.append({&e, 1});
    }
    log.sync();
    size_t before = countSegs();
    Snapshot s;
    s.meta.index = Index{90};
    s.meta.term = Term{1};
    s.meta.membership.voters = {NodeId{1}};
    s.data = Bytes(payload(0, 10000));
    log.compact(s);
    log.sync();
    EXPECT_LT(countSegs(), before);
    EXPECT_EQ(log.firstIndex(), Index{91});
    EXPECT_EQ(log.term(Index{90}), Term{1});
    EXPECT_EQ(log.snapshotChunk(9990, 100).str(), payload(0, 10000).substr(9990));
  }
  SegmentedLog log(t.log(), small());
  EXPECT_EQ(log.firstIndex(), Index{91});
  EXPECT_EQ(log.lastIndex(), Index{100});
  EXPECT_EQ(log.snapshotMeta().membership.voters, std::vector<NodeId>{NodeId{1}});
  EXPECT_EQ(log.snapshotSize(), 10000u);
  std::string got;
  for (uint64_t off = 0;; off += 777) {
    Bytes c = log.snapshotChunk(off, 777);
    if (c.empty()) break;
    got += c.str();
  }
  EXPECT_EQ(got, payload(0, 10000));
  EXPECT_EQ(all(log).front().data.str(), payload(91, 300));
}

TEST(SegmentedLog, InstallSnapshotReplacesTheLog) {
  TempDir t;
  {
    SegmentedLog log(t.log(), small());
    for (uint64_t i = 1; i <= 50; ++i) {
      Entry e = entry(i, 1, payload(i, 300));
      log.append({&e, 1});
    }
    Snapshot s;
    s.meta.index = Index{30};  // inside the log: every entry still goes
    s.meta.term = Term{4};
    s.data = Bytes(std::string("state"));
    log.installSnapshot(s);
    EXPECT_EQ(log.lastIndex(), Index{30});
    Entry e = entry(31, 4, "after");
    log.append({&e, 1});
    log.sync();
  }
  SegmentedLog log(t.log(), small());
  EXPECT_EQ(log.firstIndex(), Index{31});
  EXPECT_EQ(log.lastIndex(), Index{31});
  EXPECT_EQ(log.term(Index{30}), Term{4});
  EXPECT_EQ(all(log)[0].data.str(), "after");
  EXPECT_EQ(log.snapshot().data.str(), "state");
}

TEST(SegmentedLog, GroupCommitReportsBatchesInOrder) {
  TempDir t;
  std::vector<uint64_t> seen;  // outlives the log: its destructor's final batch reports too
  std::mutex mu;
  SegmentedLog log(t.log());
  log.onDurable([&](uint64_t seq) {
    std::lock_guard<std::mutex> lk(mu);
    seen.push_back(seq);
  });
  uint64_t last = 0;
  for (uint64_t i = 1; i <= 50; ++i) {
    Entry e = entry(i, 1, payload(i, 1000));
    log.append({&e, 1});
    uint64_t seq = log.syncAsync();
    EXPECT_EQ(seq, last + 1);
    last = seq;
    // Reads while the batch is in flight.
    EXPECT_EQ(log.term(Index{i}), Term{1});
    std::vector<Entry> out;
    log.entries(Index{i}, Index{i + 1}, 0, out);
    EXPECT_EQ(out[0].data.str(), payload(i, 1000));
  }
  log.waitDurable(last);
  EXPECT_GE(log.durableSeq(), last);
  std::lock_guard<std::mutex> lk(mu);
  ASSERT_EQ(seen.size(), 50u);
  for (size_t k = 0; k < seen.size(); ++k) EXPECT_EQ(seen[k], k + 1);
}

TEST(SegmentedLog, ChangesOfCommitAloneAreWrittenOnceWithTheNextBatch) {
  test::FaultFileSystem fs;
  SegmentedLog::Options o;
  o.fs = &fs;
  auto metaWrites = [&] {
    size_t n = 0;
    for (auto& r : fs.journal())
      n += r.kind == test::FaultFileSystem::Rec::Write && r.path.find("/meta-") != std::string::npos;
    return n;
  };
  {
    SegmentedLog log("/d", o);
    std::vector<Entry> es;
    for (uint64_t i = 1; i <= 5; ++i) es.push_back(entry(i, 1, payload(i, 100)));
    log.append(es);
    log.setHardState({Term{1}, NodeId{1}, Index{0}});
    log.sync();
    size_t before = metaWrites();
    for (uint64_t c = 1; c <= 4; ++c) log.setHardState({Term{1}, NodeId{1}, Index{c}});
    EXPECT_EQ(log.hardState().commit, Index{4});  // the read side sees it at once
    log.sync();
    EXPECT_EQ(metaWrites(), before + 1);  // one record for the four changes
    log.setHardState({Term{1}, NodeId{1}, Index{5}});
    // A change of term or vote in between supersedes it: its record carries the commit too.
    log.setHardState({Term{2}, NodeId{3}, Index{5}});
    log.sync();
    EXPECT_EQ(metaWrites(), before + 2);
    log.setHardState({Term{2}, NodeId{3}, Index{3}});
  }  // the destructor's last batch writes it
  test::FaultFileSystem again(fs.current());
  o.fs = &again;
  SegmentedLog log("/d", o);
  EXPECT_EQ(log.hardState(), (HardState{Term{2}, NodeId{3}, Index{3}}));
}

TEST(SegmentedLog, ASmallBatchIsSyncedOnTheCallingThreadWhenTheIoThreadIsIdle) {
  TempDir t;
  std::atomic<std::thread::id> reportedOn{};
  {
    SegmentedLog log(t.log());
    log.onDurable([&](uint64_t) { reportedOn = std::this_thread::get_id(); });
    Entry e = entry(1, 1, payload(1, 100));
    log.append({&e, 1});
    log.sync();
    bool here = false;
    for (uint64_t i = 2; i <= 20 && !here; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the I/O thread goes back to wait
      e = entry(i, 1, payload(i, 100));
      log.append({&e, 1});
      // The first change is of term and vote: handed to the I/O thread at once, it keeps that
      // batch off this thread. The later ones are of commit alone.
      log.setHardState({Term{1}, NodeId{1}, Index{i - 1}});
      uint64_t seq = log.syncHere(1 << 20);
      here = log.durableSeq() >= seq;
      if (here) EXPECT_EQ(reportedOn.load(), std::this_thread::get_id());
      log.waitDurable(seq);
    }
    EXPECT_TRUE(here);
    // A batch past the bound goes to the I/O thread.
    uint64_t last = log.lastIndex().value + 1;
    e = entry(last, 1, payload(last, 5000));
    log.append({&e, 1});
    log.waitDurable(log.syncHere(1000));
    EXPECT_NE(reportedOn.load(), std::this_thread::get_id());
    std::vector<Entry> out;
    log.entries(Index{1}, Index{last + 1}, UINT64_MAX, out);
    EXPECT_EQ(out.size(), last);
  }
  SegmentedLog log(t.log());
  // The commit given with the last small batch (one behind it), written by the batch past the bound.
  EXPECT_EQ(log.hardState().commit.value + 2, log.lastIndex().value);
  std::vector<Entry> out;
  log.entries(Index{1}, log.lastIndex().next(), UINT64_MAX, out);
  for (auto& e : out) EXPECT_EQ(e.data.str(), payload(e.index.value, e.index == log.lastIndex() ? 5000 : 100));
}

TEST(SegmentedLog, TornTailOnRealFilesIsCutAndReported) {
  TempDir t;
  {
    SegmentedLog log(t.log());
    for (uint64_t i = 1; i <= 10; ++i) {
      Entry e = entry(i, 1, payload(i, 100));
      log.append({&e, 1});
    }
    log.sync();
  }
  std::string seg = t.log() + "/" + logformat::segmentName(1);
  uint64_t size = 32 + 10 * 132;  // the header and 10 records; zeros follow them
  ASSERT_GE(fsys::file_size(seg), size);
  fsys::resize_file(seg, size - 50);  // the last record loses its end
  {
    SegmentedLog log(t.log());
    EXPECT_TRUE(log.recoveryReport().tornTail);
    EXPECT_EQ(log.recoveryReport().tornFile, seg);
    EXPECT_EQ(log.recoveryReport().tornOffset, size - 132);
    EXPECT_EQ(log.lastIndex(), Index{9});
    Entry e = entry(10, 2, "again");
    log.append({&e, 1});
    log.sync();
  }
  SegmentedLog log(t.log());
  EXPECT_FALSE(log.recoveryReport().tornTail);
  EXPECT_EQ(all(log).back().data.str(), "again");
}

std::string fileBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(SegmentedLog, ZerosAheadOfTheRecordsEndTheLogAndGoWhenTheSegmentCloses) {
  TempDir t;
  SegmentedLog::Options o;
  o.segmentBytes = 64 << 10;
  o.zeroAheadBytes = 8192;
  std::string seg = t.log() + "/" + logformat::segmentName(1);
  const uint64_t end = 32 + 10 * 132;  // the header and 10 records of 100 bytes
  {
    SegmentedLog log(t.log(), o);
    for (uint64_t i = 1; i <= 10; ++i) {
      Entry e = entry(i, 1, payload(i, 100));
      log.append({&e, 1});
    }
    log.sync();
  }
  // Zeros up to the page boundary 8 KiB past the records.
  std::string bytes = fileBytes(seg);
  ASSERT_EQ(bytes.size(), 12288u);
  EXPECT_EQ(bytes.find_first_not_of('\0', end), std::string::npos);
  EXPECT_NE(bytes[end - 1], '\0');
  {
    // The zeros are the log's end, not a torn tail; appends overwrite them.
    SegmentedLog log(t.log(), o);
    EXPECT_FALSE(log.recoveryReport().tornTail);
    EXPECT_EQ(log.lastIndex(), Index{10});
    for (uint64_t i = 11; i <= 20; ++i) {
      Entry e = entry(i, 1, payload(i, 100));
      log.append({&e, 1});
    }
    log.sync();
  }
  EXPECT_EQ(fsys::file_size(seg), 12288u);  // still within the zeros written before
  {
    SegmentedLog log(t.log(), o);
    EXPECT_FALSE(log.recoveryReport().tornTail);
    auto es = all(log);
    ASSERT_EQ(es.size(), 20u);
    for (uint64_t i = 1; i <= 20; ++i) EXPECT_EQ(es[i - 1].data.str(), payload(i, 100));
    // Past the segment's size: it closes, and its zeros are cut off.
    for (uint64_t i = 21; log.firstIndex() == Index{1} && fsys::exists(seg) &&
                          !fsys::exists(t.log() + "/" + logformat::segmentName(i - 1));
         ++i) {
      Entry e = entry(i, 1, payload(i, 100));
      log.append({&e, 1});
      log.sync();
    }
  }
  const uint64_t held = ((64 << 10) - 32) / 132;  // the records that fit in 64 KiB
  EXPECT_EQ(fsys::file_size(seg), 32 + 132 * held);
  {
    SegmentedLog log(t.log(), o);
    EXPECT_FALSE(log.recoveryReport().tornTail);
    EXPECT_EQ(log.lastIndex(), Index{held + 1});
    EXPECT_EQ(all(log).back().data.str(), payload(held + 1, 100));
  }
}

TEST(SegmentedLog, ARecordTornInTheZerosAheadIsCutAndReported) {
  TempDir t;
  std::string seg = t.log() + "/" + logformat::segmentName(1);
  const uint64_t end = 32 + 5 * 132;
  {
    SegmentedLog log(t.log());
    for (uint64_t i = 1; i <= 5; ++i) {
      Entry e = entry(i, 1, payload(i, 100));
      log.append({&e, 1});
    }
    log.sync();
  }
  ASSERT_GT(fsys::file_size(seg), end + 4096);
  {
    // The next record's header never reached the disk, a sector of its payload did.
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(end + 600);
    f.put('x');
  }
  SegmentedLog log(t.log());
  EXPECT_TRUE(log.recoveryReport().tornTail);
  EXPECT_EQ(log.recoveryReport().tornOffset, end);
  EXPECT_EQ(log.lastIndex(), Index{5});
  EXPECT_EQ(fsys::file_size(seg), end);
}

TEST(SegmentedLog, CorruptionInAnEarlierSegmentNamesFileAndOffset) {
  TempDir t;
  {
    SegmentedLog log(t.log(), small());
    for (uint64_t i = 1; i <= 60; ++i) {
      Entry e = entry(i, 1, payload(i, 300));
      log.append({&e, 1});
    }
    log.sync();
  }
  std::string seg = t.log() + "/" + logformat::segmentName(1);
  {
    std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(32 + 332 + 40);  // the payload of the second record
    f.put('#');
  }
  try {
    SegmentedLog log(t.log(), small());
    FAIL() << "opened a corrupt log";
  } catch (const CorruptionError& e) {
    EXPECT_EQ(e.file(), seg);
    EXPECT_EQ(e.offset(), 32u + 332u);
    EXPECT_NE(std::string(e.what()).find(seg), std::string::npos);
  }
}

// ---- Snapshot transfer: the reader a leader streams from, the receiver a follower fills ----

std::string readAll(const SegmentedLog::SnapshotReader& r) {
  std::string out(r.size(), '\0');
  r.readInto(0, reinterpret_cast<uint8_t*>(out.data()), r.size());
  return out;
}

TEST(SegmentedLogSnapshots, AReaderKeepsItsSnapshotAcrossLaterCompactions) {
  TempDir t;
  SegmentedLog log(t.log(), small());
  for (uint64_t i = 1; i <= 40; ++i) {
    Entry e = entry(i, 1, payload(i, 100));
    log.append({&e, 1});
  }
  Snapshot a{SnapshotMeta{Index{10}, Term{1}, {}}, Bytes(payload(1, 5000))};
  log.compact(a);
  auto inMemory = log.snapshotReader();  // before the write: from memory
  log.sync();
  auto fromFile = log.snapshotReader();  // after: from the file
  Snapshot b{SnapshotMeta{Index{20}, Term{1}, {}}, Bytes(payload(2, 7000))};
  log.compact(b);
  log.sync();
  EXPECT_EQ(inMemory->meta().index, Index{10});
  EXPECT_EQ(fromFile->meta().index, Index{10});
  EXPECT_EQ(readAll(*inMemory), payload(1, 5000));
  EXPECT_EQ(readAll(*fromFile), payload(1, 5000));  // the replaced file, still open
  auto now = log.snapshotReader();
  EXPECT_EQ(now->meta().index, Index{20});
  EXPECT_EQ(readAll(*now), payload(2, 7000));
  uint8_t x;
  EXPECT_THROW(now->readInto(7000, &x, 1), std::invalid_argument);
}

// A stream reads a snapshot in order; the reader asks the file system for the bytes ahead of
// each read (posix_fadvise WILLNEED), so that a snapshot no longer in the page cache is read
// from the disk before the stream asks for it.
TEST(SegmentedLogSnapshots, AReaderAsksForTheBytesAheadOfEachRead) {
  test::FaultFileSystem fs;
  SegmentedLog::Options o;
  o.fs = &fs;
  SegmentedLog log("/keel", o);
  Entry e = entry(1, 1, "x");
  log.append({&e, 1});
  const uint64_t size = 100 << 20, chunk = 4 << 20;
  std::string data(size, '\0');
  for (uint64_t i = 0; i < size; i += 4096) data[i] = char('a' + i / 4096 % 26);
  log.compact(Snapshot{SnapshotMeta{Index{1}, Term{1}, {}}, Bytes(data)});
  log.sync();
  log.releaseWritten();
  auto reader = log.snapshotReader();
  ASSERT_EQ(reader->size(), size);
  std::string out(chunk, '\0');
  auto read = [&](uint64_t at) {
    reader->readInto(at, reinterpret_cast<uint8_t*>(out.data()), chunk);
    ASSERT_EQ(out, data.substr(at, chunk)) << at;
  };
  read(0);
  ASSERT_FALSE(fs.willNeeds().empty());
  const uint64_t fileOffset = fs.willNeeds().front().first - chunk;  // the first hint starts past the first read
  for (uint64_t at = chunk; at < size; at += chunk) {
    uint64_t advisedTo = 0;
    for (auto [off, n] : fs.willNeeds()) advisedTo = std::max(advisedTo, off + n - fileOffset);
    EXPECT_GE(advisedTo, at + chunk) << "the chunk at " << at << " was not asked for before it was read";
    read(at);
  }
  EXPECT_LE(fs.willNeeds().size(), size / (16 << 20) + 2) << "hints in steps, not one per read";
  // Read again from the start: advised from there.
  size_t before = fs.willNeeds().size();
  read(0);
  ASSERT_GT(fs.willNeeds().size(), before);
  EXPECT_EQ(fs.willNeeds().back().first, fileOffset + chunk);
}

TEST(SegmentedLogSnapshots, AWrittenSnapshotIsReadFromItsFileNotKeptInMemory) {
  TempDir t;
  SegmentedLog log(t.log(), small());
  Entry e = entry(1, 1, "x");
  log.append({&e, 1});
  Bytes data(payload(3, 10000));
  log.compact(Snapshot{SnapshotMeta{Index{1}, Term{1}, {}}, data});
  log.sync();
  EXPECT_TRUE(log.releaseWritten());  // an idle owner lets the log notice the write
  EXPECT_EQ(data.useCount(), 1u);  // the log let go of the bytes
  EXPECT_FALSE(log.releaseWritten());
  EXPECT_EQ(log.snapshot().data.str(), payload(3, 10000));
}

TEST(SegmentedLogSnapshots, AReceivedSnapshotIsInstalledFromItsFileAndSurvivesReopen) {
  TempDir t;
  Membership m;
  m.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
  std::string state = payload(4, 200000);
  {
    SegmentedLog log(t.log(), small());
    for (uint64_t i = 1; i <= 30; ++i) {
      Entry e = entry(i, 1, payload(i, 300));
      log.append({&e, 1});
    }
    log.sync();
    SnapshotMeta meta{Index{100}, Term{3}, m};
    auto rx = log.receiveSnapshot(meta, state.size());
    for (size_t off = 0; off < state.size(); off += 7000)
      rx->write(reinterpret_cast<const uint8_t*>(state.data()) + off, std::min<size_t>(7000, state.size() - off));
    EXPECT_THROW(rx->write(reinterpret_cast<const uint8_t*>("y"), 1), std::invalid_argument);
    Bytes data = rx->finish();
    EXPECT_EQ(data.view(), state);
    log.installSnapshot(Snapshot{meta, data});
    log.sync();
    EXPECT_EQ(log.snapshot().data.view(), state);
    EXPECT_FALSE(fsys::exists(t.log() + "/snapshot.recv"));
  }
  SegmentedLog log(t.log(), small());
  EXPECT_EQ(log.snapshotMeta(), (SnapshotMeta{Index{100}, Term{3}, m}));
  EXPECT_EQ(log.firstIndex(), Index{101});
  EXPECT_EQ(log.lastIndex(), Index{100});
  EXPECT_EQ(log.snapshot().data.view(), state);
}

// The real file layer, counting the direct-I/O files it opened.
struct CountingFileSystem final : FileSystem {
  FileSystem& real = posixFileSystem();
  int directOpens = 0;
  std::unique_ptr<File> open(const std::string& p, bool create) override { return real.open(p, create); }
  std::unique_ptr<File> openDirect(const std::string& p) override {
    auto f = real.openDirect(p);
    directOpens += f != nullptr;
    return f;
  }
  bool exists(const std::string& p) override { return real.exists(p); }
  void rename(const std::string& a, const std::string& b) override { real.rename(a, b); }
  void remove(const std::string& p) override { real.remove(p); }
  void makeDir(const std::string& p) override { real.makeDir(p); }
  void syncDir(const std::string& p) override { real.syncDir(p); }
  std::vector<std::string> list(const std::string& p) override { return real.list(p); }
};

// Whether the file system of `dir` takes direct I/O (so that a test knows which path ran).
bool takesDirectIo(const std::string& dir) {
  posixFileSystem().makeDir(dir);
  std::string probe = dir + "/direct-probe";
  posixFileSystem().open(probe, true);
  bool ok = posixFileSystem().openDirect(probe) != nullptr;
  posixFileSystem().remove(probe);
  return ok;
}

std::string randomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = char(rng());
  return s;
}

void writeInOddPieces(SegmentedLog::SnapshotReceiver& rx, const std::string& state, size_t upTo) {
  for (size_t off = 0, piece = 1; off < upTo; off += piece, piece = piece * 3 % 1048573 + 4093)
    rx.write(reinterpret_cast<const uint8_t*>(state.data()) + off, std::min(piece, upTo - off));
}

// A snapshot large enough to reach the file in several parts (each 8 MiB, the last not), in
// pieces that never line up with a disk block: on a file system with direct I/O (/tmp on ext4,
// where these tests run) the parts go through DirectAppender's aligned buffer, and
// the file must still hold exactly the bytes. Once with a header under a block, once (600
// voters) with one over it, so that the data starts past the first block.
TEST(SegmentedLogSnapshots, ALargeReceivedSnapshotArrivesWholeWhateverThePieces) {
  for (uint64_t voters : {uint64_t(5), uint64_t(600)}) {
    TempDir t;
    CountingFileSystem fs;
    auto opts = small();
    opts.fs = &fs;
    std::string state = randomBytes((40u << 20) + 12345, voters);
    SnapshotMeta meta{Index{70}, Term{4}, {}};
    for (uint64_t v = 1; v <= voters; ++v) meta.membership.voters.push_back(NodeId{v});
    {
      SegmentedLog log(t.log(), opts);
      auto rx = log.receiveSnapshot(meta, state.size());
      writeInOddPieces(*rx, state, state.size());
      Bytes data = rx->finish();
      log.installSnapshot(Snapshot{meta, data});
      log.sync();
      EXPECT_EQ(log.snapshot().data.view(), state);
    }
    EXPECT_EQ(fs.directOpens, takesDirectIo(t.log()) ? 1 : 0);
    SegmentedLog log(t.log(), small());
    EXPECT_EQ(log.snapshotMeta(), meta);
    EXPECT_TRUE(log.snapshot().data.view() == state) << "the reopened snapshot differs; voters " << voters;
  }
}

// A receive passes through at most 8 staging buffers of 8 MiB, whatever the snapshot's size,
// when its caller waits while it is backlogged (as the server's sink does). A held piece keeps
// its buffer from being used again: with every piece held (a parse that does not keep up) the
// receiver is backlogged once 8 buffers are in use, and no longer once they are let go and
// written. The bytes come back whole from finish() and from the file after reopening (their
// checksum, taken as they arrived, checks out).
TEST(SegmentedLogSnapshots, AReceivePassesThroughABoundedSetOfStagingBuffers) {
  TempDir t;
  std::string state = randomBytes((100u << 20) + 777, 9);
  SnapshotMeta meta{Index{70}, Term{4}, {}};
  meta.membership.voters = {NodeId{1}};
  const auto* bytes = reinterpret_cast<const uint8_t*>(state.data());
  const size_t piece = 1 << 20;
  std::set<const uint8_t*> buffers;  // by where each begins
  auto waitRoom = [](SegmentedLog::SnapshotReceiver& rx) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (rx.backlogged() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return !rx.backlogged();
  };
  {
    SegmentedLog log(t.log(), small());
    auto rx = log.receiveSnapshot(meta, state.size());
    std::vector<SegmentedLog::SnapshotReceiver::Piece> held;
    size_t off = 0;
    while (!rx->backlogged() && off < state.size()) {
      held.push_back(rx->write(bytes + off, piece));
      EXPECT_EQ(held.back().bytes, std::string_view(state).substr(off, piece));
      buffers.insert(held.back().holder.data());
      off += piece;
    }
    EXPECT_EQ(buffers.size(), 8u);
    EXPECT_LE(off, size_t(64) << 20);
    held.clear();
    ASSERT_TRUE(waitRoom(*rx)) << "the buffers let go of were never written";
    while (off < state.size()) {
      ASSERT_TRUE(waitRoom(*rx));
      size_t n = std::min(piece, state.size() - off);
      buffers.insert(rx->write(bytes + off, n).holder.data());
      off += n;
    }
    EXPECT_EQ(buffers.size(), 8u) << "buffers were not used again";
    Bytes data = rx->finish();
    EXPECT_TRUE(data.view() == state);
    log.installSnapshot(Snapshot{meta, data});
    log.sync();
  }
  SegmentedLog log(t.log(), small());
  EXPECT_EQ(log.snapshotMeta(), meta);
  EXPECT_TRUE(log.snapshot().data.view() == state);
}

// A local compaction writes its snapshot past the page cache too (where the file system takes
// direct I/O): header and state, padded to a block and cut back, read back whole after reopen.
TEST(SegmentedLogSnapshots, ACompactionIsWrittenWholeThroughDirectIo) {
  for (uint64_t voters : {uint64_t(3), uint64_t(600)}) {
    TempDir t;
    CountingFileSystem fs;
    auto opts = small();
    opts.fs = &fs;
    std::string state = randomBytes((5u << 20) + 777, voters);
    SnapshotMeta meta{Index{2}, Term{1}, {}};
    for (uint64_t v = 1; v <= voters; ++v) meta.membership.voters.push_back(NodeId{v});
    {
      SegmentedLog log(t.log(), opts);
      Entry e[2] = {entry(1, 1, "a"), entry(2, 1, "b")};
      log.append({e, 2});
      log.compact(Snapshot{meta, Bytes(state)});
      log.sync();
      EXPECT_EQ(log.snapshot().data.view(), state);
    }
    EXPECT_EQ(fs.directOpens, takesDirectIo(t.log()) ? 1 : 0);
    SegmentedLog log(t.log(), small());
    EXPECT_EQ(log.snapshotMeta(), meta);
    EXPECT_TRUE(log.snapshot().data.view() == state) << "the reopened snapshot differs; voters " << voters;
  }
}

// A receive abandoned after several parts went to the file (through direct I/O) leaves no file,
// and the next receive, with its own parts, arrives whole.
TEST(SegmentedLogSnapshots, AReceiveAbandonedAfterSeveralPartsLeavesNothingBehind) {
  TempDir t;
  CountingFileSystem fs;
  auto opts = small();
  opts.fs = &fs;
  std::string first = randomBytes(50u << 20, 1), second = randomBytes((20u << 20) + 7, 2);
  SnapshotMeta meta{Index{90}, Term{5}, {}};
  meta.membership.voters = {NodeId{1}, NodeId{2}, NodeId{3}};
  {
    SegmentedLog log(t.log(), opts);
    {
      auto rx = log.receiveSnapshot(meta, first.size());
      writeInOddPieces(*rx, first, (35u << 20) + 3);
    }  // the transfer broke off
    log.sync();
    EXPECT_FALSE(fsys::exists(t.log() + "/snapshot.recv"));
    auto rx = log.receiveSnapshot(meta, second.size());
    writeInOddPieces(*rx, second, second.size());
    log.installSnapshot(Snapshot{meta, rx->finish()});
    log.sync();
    EXPECT_FALSE(fsys::exists(t.log() + "/snapshot.recv"));
  }
  EXPECT_EQ(fs.directOpens, takesDirectIo(t.log()) ? 2 : 0);
  SegmentedLog log(t.log(), small());
  EXPECT_TRUE(log.snapshot().data.view() == second);
}

TEST(SegmentedLogSnapshots, AnAbandonedReceiveLeavesNoFileAndTheLogUnchanged) {
  TempDir t;
  {
    SegmentedLog log(t.log(), small());
    Entry e = entry(1, 1, "one");
    log.append({&e, 1});
    std::string state = payload(5, 100000);
    {
      auto rx = log.receiveSnapshot(SnapshotMeta{Index{50}, Term{2}, {}}, state.size());
      rx->write(reinterpret_cast<const uint8_t*>(state.data()), 30000);
    }  // the connection dropped mid-transfer
    log.sync();
    EXPECT_FALSE(fsys::exists(t.log() + "/snapshot.recv"));
    // A second receive replaces a first one that is still going.
    auto first = log.receiveSnapshot(SnapshotMeta{Index{50}, Term{2}, {}}, state.size());
    auto second = log.receiveSnapshot(SnapshotMeta{Index{60}, Term{2}, {}}, 3);
    EXPECT_THROW(first->write(reinterpret_cast<const uint8_t*>(state.data()), 10), std::logic_error);
    second->write(reinterpret_cast<const uint8_t*>("abc"), 3);
    Bytes got = second->finish();
    // The core did not install it (nobody holds the bytes): the log drops the receive.
    got = Bytes();
    log.sync();
    log.snapshotReader();
    log.sync();
    EXPECT_FALSE(fsys::exists(t.log() + "/snapshot.recv"));
    EXPECT_EQ(log.lastIndex(), Index{1});
  }
  // A crash mid-receive leaves snapshot.recv behind: opening removes it.
  std::ofstream(t.log() + "/snapshot.recv") << "partial";
  SegmentedLog log(t.log(), small());
  EXPECT_FALSE(fsys::exists(t.log() + "/snapshot.recv"));
  EXPECT_EQ(log.lastIndex(), Index{1});
  EXPECT_EQ(all(log)[0].data.str(), "one");
}

TEST(SegmentedLogSnapshots, ACompactionDuringAReceiveLeavesTheReceiveAlone) {
  TempDir t;
  SegmentedLog log(t.log(), small());
  for (uint64_t i = 1; i <= 20; ++i) {
    Entry e = entry(i, 1, payload(i, 100));
    log.append({&e, 1});
  }
  std::string state = payload(6, 50000);
  SnapshotMeta meta{Index{40}, Term{2}, {}};
  auto rx = log.receiveSnapshot(meta, state.size());
  rx->write(reinterpret_cast<const uint8_t*>(state.data()), 20000);
  log.compact(Snapshot{SnapshotMeta{Index{10}, Term{1}, {}}, Bytes(std::string("local"))});
  log.sync();
  rx->write(reinterpret_cast<const uint8_t*>(state.data()) + 20000, state.size() - 20000);
  log.installSnapshot(Snapshot{meta, rx->finish()});
  log.sync();
  EXPECT_EQ(log.snapshotMeta().index, Index{40});
  EXPECT_EQ(log.snapshot().data.view(), state);
  // Installing other bytes than the received ones writes those.
  std::string other = payload(7, 3000);
  auto rx2 = log.receiveSnapshot(SnapshotMeta{Index{50}, Term{2}, {}}, 5);
  rx2->write(reinterpret_cast<const uint8_t*>("hello"), 5);
  Bytes held = rx2->finish();
  log.installSnapshot(Snapshot{SnapshotMeta{Index{50}, Term{2}, {}}, Bytes(other)});
  log.sync();
  EXPECT_EQ(log.snapshot().data.str(), other);
}

}  // namespace
}  // namespace keel
