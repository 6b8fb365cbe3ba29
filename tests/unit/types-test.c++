#include <keel/config.h>
#include <keel/message.h>
#include <keel/types.h>

#include <gtest/gtest.h>

namespace keel {
namespace {

TEST(Bytes, SharesOnePayloadAcrossCopies) {
  Bytes a("hello, raft");
  Bytes b = a;
  EXPECT_EQ(a.data(), b.data());
  EXPECT_EQ(b.view(), "hello, raft");
  Bytes c = std::move(b);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(c, a);
  c = Bytes("other");
  EXPECT_EQ(a.str(), "hello, raft");
  EXPECT_EQ(c.size(), 5u);
  a = a;  // self-assignment keeps the payload
  EXPECT_EQ(a.str(), "hello, raft");
}

TEST(Bytes, EmptyAllocatesNothing) {
  Bytes e("");
  EXPECT_EQ(e.data(), nullptr);
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.view(), "");
  EXPECT_EQ(Bytes(), e);
}

TEST(Bytes, UninitializedIsWritableBeforeSharing) {
  Bytes b = Bytes::uninitialized(3);
  std::memcpy(b.mutableData(), "abc", 3);
  EXPECT_EQ(b.str(), "abc");
}

TEST(Bytes, ShrinkKeepsThePrefixOfAnOversizedBuffer) {
  Bytes b = Bytes::uninitialized(64);
  std::memcpy(b.mutableData(), "snapshot", 8);
  b.shrink(8);
  EXPECT_EQ(b.view(), "snapshot");
  Bytes copy = b;
  EXPECT_EQ(copy.size(), 8u);
  b = Bytes();
  copy.shrink(0);
  EXPECT_TRUE(copy.empty());
  EXPECT_EQ(copy.useCount(), 0u);
}

TEST(Bytes, ExternalBytesAreReleasedOnceWhenTheLastCopyGoes) {
  static const char kData[] = "mapped elsewhere";
  int released = 0;
  Bytes b = Bytes::external(kData, 6, [&] { ++released; });
  EXPECT_EQ(b.view(), "mapped");
  EXPECT_EQ(b.data(), reinterpret_cast<const uint8_t*>(kData));  // not copied
  Bytes copy = b;
  b = Bytes();
  EXPECT_EQ(released, 0);
  EXPECT_EQ(copy, Bytes(std::string_view("mapped")));
  copy = Bytes();
  EXPECT_EQ(released, 1);
}

TEST(StrongTypes, ArithmeticAndOrder) {
  EXPECT_EQ(Index{5} - Index{2}, 3u);
  EXPECT_EQ((Index{5} + 2).value, 7u);
  EXPECT_EQ(Index{5}.prev(), Index{4});
  EXPECT_LT(Term{1}, Term{1}.next());
  EXPECT_FALSE(bool(kNoNode));
  EXPECT_TRUE(bool(NodeId{3}));
  EXPECT_EQ(toString(NodeId{3}), "n3");
  EXPECT_EQ(toString(kNoNode), "none");
  EXPECT_EQ(toString(Term{2}), "t2");
  EXPECT_EQ(toString(Index{9}), "i9");
}

Membership make(std::vector<uint64_t> v, std::vector<uint64_t> o = {}, std::vector<uint64_t> l = {}) {
  Membership m;
  for (auto x : v) m.voters.push_back(NodeId{x});
  for (auto x : o) m.outgoing.push_back(NodeId{x});
  for (auto x : l) m.learners.push_back(NodeId{x});
  return m;
}

TEST(Membership, EncodeDecodeRoundTrip) {
  Membership m = make({1, 2, 4}, {1, 2, 3}, {7});
  Membership d;
  ASSERT_TRUE(Membership::decode(m.encode().view(), d));
  EXPECT_EQ(d, m);
  EXPECT_TRUE(d.joint());
  EXPECT_TRUE(d.isVoter(NodeId{3}));
  EXPECT_TRUE(d.isLearner(NodeId{7}));
  EXPECT_FALSE(d.contains(NodeId{5}));
  EXPECT_EQ(d.members().size(), 5u);
  EXPECT_EQ(d.toString(), "voters=[1,2,4] outgoing=[1,2,3] learners=[7]");
}

TEST(Membership, DecodeRejectsGarbage) {
  Membership d;
  EXPECT_FALSE(Membership::decode("", d));
  EXPECT_FALSE(Membership::decode("\xff\xff\xff\xff", d));
  std::string good(make({1}).encode().view());
  EXPECT_FALSE(Membership::decode(good + "x", d));
  EXPECT_FALSE(Membership::decode(good.substr(0, good.size() - 1), d));
  EXPECT_FALSE(Membership::decode(make({}).encode().view(), d));  // no voters
}

TEST(Membership, ValidateSaysWhatIsWrong) {
  EXPECT_EQ(make({1, 2, 3}).validate(), "");
  EXPECT_NE(make({}).validate().find("at least one voter"), std::string::npos);
  EXPECT_NE(make({2, 1}).validate().find("sorted"), std::string::npos);
  EXPECT_NE(make({1, 1}).validate().find("duplicates"), std::string::npos);
  EXPECT_NE(make({0, 1}).validate().find("reserved"), std::string::npos);
  EXPECT_NE(make({1, 2}, {}, {2}).validate().find("both a voter and a learner"), std::string::npos);
}

TEST(Config, ValidateSaysWhatIsWrong) {
  Config c;
  EXPECT_NE(c.validate().find("non-zero"), std::string::npos);
  c.id = NodeId{1};
  EXPECT_EQ(c.validate(), "");
  c.heartbeatTicks = c.electionTicks;
  EXPECT_NE(c.validate().find("heartbeatTicks"), std::string::npos);
  c.heartbeatTicks = 1;
  c.electionTicks = 1;
  EXPECT_NE(c.validate().find("electionTicks"), std::string::npos);
  c.electionTicks = 10;
  c.maxInflightMessages = 0;
  EXPECT_NE(c.validate().find("maxInflightMessages"), std::string::npos);
  c.maxInflightMessages = 1;
  c.maxMessageBytes = 0;
  EXPECT_NE(c.validate().find("maxMessageBytes"), std::string::npos);
  c.maxMessageBytes = 1;
  c.readMode = ReadMode::Lease;
  c.checkQuorum = false;
  EXPECT_NE(c.validate().find("lease"), std::string::npos);
  c.checkQuorum = true;
  EXPECT_EQ(c.validate(), "");
  // The lease: (electionTicks - 1) ticks shortened by the drift bound, at least one tick.
  EXPECT_EQ(c.leaseTicks(), 8u);  // 9 * 100 / 110
  c.maxClockDriftPercent = 0;
  EXPECT_EQ(c.leaseTicks(), 9u);
  c.maxClockDriftPercent = 50;
  EXPECT_EQ(c.leaseTicks(), 6u);
  c.electionTicks = 2;
  c.heartbeatTicks = 1;
  EXPECT_NE(c.validate().find("lease"), std::string::npos);
  c.maxClockDriftPercent = 0;
  EXPECT_EQ(c.validate(), "");
  c.maxClockDriftPercent = 1001;
  EXPECT_NE(c.validate().find("maxClockDriftPercent"), std::string::npos);
  c.maxClockDriftPercent = 10;
  c.electionTicks = 10;
  c.heartbeatTicks = 0;
  EXPECT_NE(c.validate().find("heartbeatTicks must be at least 1"), std::string::npos);
}

TEST(Message, ToStringNamesEverything) {
  Message m;
  m.type = MessageType::Append;
  m.from = NodeId{1};
  m.to = NodeId{2};
  m.term = Term{3};
  m.entries.push_back(Entry{Term{3}, Index{4}, EntryType::Normal, Bytes("x")});
  EXPECT_EQ(m.toString(), "n1->n2 Append term=3 index=0 logTerm=0 commit=0 entries=[3/4]");
  for (int t = 0; t <= int(MessageType::ReadIndexResponse); ++t) {
    m.type = MessageType(t);
    m.reject = t % 2;
    EXPECT_NE(std::string(toString(m.type)), "?");
    EXPECT_NE(m.toString().find(toString(m.type)), std::string::npos);
  }
}

}  // namespace
}  // namespace keel
