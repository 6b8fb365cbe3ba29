// keel example test: a 3-node cluster of keel-register-server processes driven by the
// keel-register client through a follower (writes forwarded to the leader, reads by ReadIndex
// through the follower), and the machine's deterministic snapshot and restore.
#include "register-machine.h"

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

TEST(RegisterExample, MachineSnapshotRestoresTheSameState) {
  RegisterMachine a;
  EXPECT_EQ(a.apply(Index{1}, encodeFields({"put", "x"})), encodeFields({"ok"}));
  EXPECT_EQ(a.apply(Index{2}, encodeFields({"cas", "y", "z"})), encodeFields({"compare-failed", "x"}));
  EXPECT_EQ(a.apply(Index{3}, "junk"), encodeFields({"bad-request"}));
  RegisterMachine b;
  ASSERT_TRUE(b.restore(snapshotOf(a)));
  EXPECT_EQ(snapshotOf(b), snapshotOf(a));
  EXPECT_EQ(b.query(encodeFields({"get"})), encodeFields({"ok", "x"}));
  EXPECT_FALSE(b.restore(encodeFields({"hashmap", "0"})));  // not a register's snapshot
  EXPECT_EQ(b.query(encodeFields({"get"})), encodeFields({"ok", "x"}));
  EXPECT_TRUE(b.restore(""));
  EXPECT_EQ(b.query(encodeFields({"get"})), encodeFields({"ok", ""}));
}

TEST(RegisterExample, ClusterServesTheClientThroughAFollower) {
  integration::ProcessCluster cluster(3);
  Client admin(cluster.clientOptions(3000));
  uint64_t leader = cluster.waitLeader(admin);
  ASSERT_NE(leader, 0u);
  uint64_t follower = leader == 1 ? 2 : 1;
  auto client = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {KEEL_EXAMPLE_CLIENT, "--cluster", cluster.node(follower).address, "--timeout-ms", "5000"});
    return runProgram(args);
  };

  ProgramResult r = client({"put", "hello"});
  ASSERT_EQ(r.exit, 0) << r.err;
  r = client({"get"});
  EXPECT_EQ(r.exit, 0) << r.err;
  EXPECT_EQ(r.out, "hello\n");
  r = client({"cas", "hello", "world"});
  EXPECT_EQ(r.exit, 0) << r.err;
  r = client({"cas", "hello", "again"});  // the register no longer holds "hello"
  EXPECT_EQ(r.exit, 4);
  EXPECT_NE(r.err.find("\"world\""), std::string::npos) << r.err;
  r = client({"get"});
  EXPECT_EQ(r.out, "world\n");
  EXPECT_EQ(client({"put"}).exit, 2);

  // The follower snapshots and compacts its log, restarts from the snapshot, and still answers.
  ASSERT_TRUE(admin.snapshot(cluster.node(follower).address).ok());
  cluster.terminate(follower);
  cluster.start(follower);
  r = client({"get"});
  EXPECT_EQ(r.exit, 0) << r.err;
  EXPECT_EQ(r.out, "world\n");
}

}  // namespace
}  // namespace keel::examples
