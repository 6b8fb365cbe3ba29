#include <keel/memory-log.h>

#include <gtest/gtest.h>

namespace keel {
namespace {

std::vector<Entry> entries(uint64_t from, std::vector<uint64_t> terms) {
  std::vector<Entry> v;
  for (uint64_t t : terms) v.push_back(Entry{Term{t}, Index{from++}, EntryType::Normal, Bytes("data")});
  return v;
}

TEST(MemoryLog, StartsFromItsInitialMembership) {
  Membership m;
  m.voters = {NodeId{1}};
  MemoryLog log(m);
  EXPECT_EQ(log.firstIndex(), Index{1});
  EXPECT_EQ(log.lastIndex(), Index{0});
  EXPECT_EQ(log.term(Index{0}), Term{0});
  EXPECT_EQ(log.snapshotMeta().membership, m);
}

TEST(MemoryLog, AppendReplacesAConflictingSuffix) {
  MemoryLog log;
  log.append(entries(1, {1, 1, 1}));
  log.append(entries(2, {2}));
  EXPECT_EQ(log.lastIndex(), Index{2});
  EXPECT_EQ(log.term(Index{2}), Term{2});
  EXPECT_THROW(log.append(entries(4, {2})), std::invalid_argument);  // a gap
  EXPECT_THROW(log.term(Index{3}), std::out_of_range);
}

TEST(MemoryLog, EntriesRespectsMaxBytesButGivesOne) {
  MemoryLog log;
  log.append(entries(1, {1, 1, 1, 1}));
  std::vector<Entry> out;
  log.entries(Index{1}, Index{5}, 9, out);
  EXPECT_EQ(out.size(), 2u);
  out.clear();
  log.entries(Index{1}, Index{5}, 0, out);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_THROW(log.entries(Index{0}, Index{2}, 100, out), std::out_of_range);
}

TEST(MemoryLog, CompactAndInstallSnapshot) {
  MemoryLog log;
  log.append(entries(1, {1, 1, 2, 2}));
  Snapshot s;
  s.meta.index = Index{2};
  s.meta.term = Term{1};
  s.meta.membership.voters = {NodeId{1}};
  s.data = Bytes("state");
  log.compact(s);
  EXPECT_EQ(log.firstIndex(), Index{3});
  EXPECT_EQ(log.term(Index{2}), Term{1});
  EXPECT_EQ(log.term(Index{4}), Term{2});
  EXPECT_THROW(log.term(Index{1}), std::out_of_range);
  EXPECT_THROW(log.compact(Snapshot{SnapshotMeta{Index{9}, Term{2}, {}}, {}}), std::invalid_argument);
  EXPECT_EQ(log.snapshot().data.str(), "state");
  s.meta.index = Index{10};
  s.meta.term = Term{5};
  log.installSnapshot(s);
  EXPECT_EQ(log.firstIndex(), Index{11});
  EXPECT_EQ(log.lastIndex(), Index{10});
  log.setHardState(HardState{Term{5}, NodeId{1}, Index{10}});
  EXPECT_EQ(log.hardState().vote, NodeId{1});
}

}  // namespace
}  // namespace keel
