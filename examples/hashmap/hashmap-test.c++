// keel example test: a 3-node cluster of keel-hashmap-server processes driven by the
// keel-hashmap client through a follower (writes forwarded to the leader, reads by ReadIndex
// through the follower), and the machine's deterministic snapshot and restore.
#include "hashmap-machine.h"

#include "../common/run-program.h"
#include "process-cluster.h"

#include <gtest/gtest.h>

namespace keel::examples {
namespace {

struct StringSink final : SnapshotSink {
  std::string data;
  void write(std::string_view chunk) override { data.append(chunk); }
};

std::string snapshotOf(const StateMachine& m) {
  StringSink s;
  m.snapshot(s);
  return s.data;
}

TEST(HashMapExample, MachineSnapshotIsDeterministic) {
  // The same contents reached in different orders give the same snapshot bytes.
  HashMapMachine a, b;
  for (int i = 0; i < 100; ++i) a.apply(Index{uint64_t(i + 1)}, encodeFields({"put", "k" + std::to_string(i), "v"}));
  for (int i = 199; i >= 0; --i) b.apply(Index{uint64_t(200 - i)}, encodeFields({"put", "k" + std::to_string(i), "v"}));
  for (int i = 100; i < 200; ++i) EXPECT_EQ(b.apply(Index{}, encodeFields({"del", "k" + std::to_string(i)})), encodeFields({"ok"}));
  EXPECT_EQ(snapshotOf(a), snapshotOf(b));

  EXPECT_EQ(a.apply(Index{}, encodeFields({"cas", "k1", "v", "w"})), encodeFields({"ok"}));
  EXPECT_EQ(a.apply(Index{}, encodeFields({"cas", "k1", "v", "x"})), encodeFields({"compare-failed", "w"}));
  EXPECT_EQ(a.apply(Index{}, encodeFields({"cas", "nope", "v", "x"})), encodeFields({"not-found"}));
  EXPECT_EQ(a.apply(Index{}, encodeFields({"del", "nope"})), encodeFields({"not-found"}));
  HashMapMachine c;
  ASSERT_TRUE(c.restore(snapshotOf(a)));
  EXPECT_EQ(snapshotOf(c), snapshotOf(a));
  EXPECT_EQ(c.size(), 100u);
  EXPECT_EQ(c.query(encodeFields({"get", "k1"})), encodeFields({"ok", "w"}));
  EXPECT_FALSE(c.restore(encodeFields({"register", "x"})));  // not a hash map's snapshot
  EXPECT_FALSE(c.restore(encodeFields({"hashmap", "2", "k", "v"})));  // a wrong count
  EXPECT_EQ(c.size(), 100u);
}

TEST(HashMapExample, ClusterServesTheClientThroughAFollower) {
  integration::ProcessCluster cluster(3);
  Client admin(cluster.clientOptions(3000));
  uint64_t leader = cluster.waitLeader(admin);
  ASSERT_NE(leader, 0u);
  uint64_t follower = leader == 1 ? 2 : 1;
  auto client = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {KEEL_EXAMPLE_CLIENT, "--cluster", cluster.node(follower).address, "--timeout-ms", "5000"});
    return runProgram(args);
  };

  ProgramResult r = client({"put", "color", "red"});
  ASSERT_EQ(r.exit, 0) << r.err;
  r = client({"get", "color"});
  EXPECT_EQ(r.exit, 0) << r.err;
  EXPECT_EQ(r.out, "red\n");
  r = client({"cas", "color", "red", "blue"});
  EXPECT_EQ(r.exit, 0) << r.err;
  r = client({"cas", "color", "red", "green"});  // it holds "blue" now
  EXPECT_EQ(r.exit, 4);
  EXPECT_NE(r.err.find("\"blue\""), std::string::npos) << r.err;
  r = client({"get", "color"});
  EXPECT_EQ(r.out, "blue\n");
  EXPECT_EQ(client({"put", "shape", "square"}).exit, 0);
  EXPECT_EQ(client({"del", "shape"}).exit, 0);
  EXPECT_EQ(client({"get", "shape"}).exit, 3);
  EXPECT_EQ(client({"del", "shape"}).exit, 3);
  EXPECT_EQ(client({"frobnicate"}).exit, 2);

  // The follower snapshots and compacts its log, restarts from the snapshot, and still answers.
  ASSERT_TRUE(admin.snapshot(cluster.node(follower).address).ok());
  cluster.terminate(follower);
  cluster.start(follower);
  r = client({"get", "color"});
  EXPECT_EQ(r.exit, 0) << r.err;
  EXPECT_EQ(r.out, "blue\n");
}

}  // namespace
}  // namespace keel::examples
