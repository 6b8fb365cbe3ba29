// The sweep: kSeeds seeds across cluster sizes (3, 5, 7) and fault mixes, both chosen by each
// seed, split into kShards test cases so that ctest runs them in parallel. Every seed must
// pass: no safety invariant broken, every operation complete once healed, a linearizable
// history. A seed that fails goes to regression-test.c++ once its cause is fixed.
#include "sim-test.h"

#include <chrono>
#include <cstdio>

namespace keel::sim::testing {
namespace {

constexpr uint64_t kSeeds = 500;
constexpr uint64_t kShards = 10;
// Sanitizer builds sweep every fifth seed of each shard.
constexpr uint64_t kStride = kSanitized ? 5 : 1;

class Sweep : public ::testing::TestWithParam<uint64_t> {};

TEST_P(Sweep, EverySeedPasses) {
  uint64_t shard = GetParam();
  uint64_t per = kSeeds / kShards;
  uint64_t runs = 0, events = 0;
  auto start = std::chrono::steady_clock::now();
  for (uint64_t seed = 1 + shard * per; seed <= (shard + 1) * per; seed += kStride) {
    Options o;
    o.seed = seed;
    Result r = run(o);
    ++runs;
    events += r.events;
    ASSERT_TRUE(r.ok) << "reproduce with: keel-sim --seed " << seed << "\n" << r.report;
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("shard %llu: %llu seeds, %llu events in %.2f s: %.1f seeds/s, %.0f events/s\n",
              (unsigned long long)shard, (unsigned long long)runs, (unsigned long long)events, s, runs / s, events / s);
}

INSTANTIATE_TEST_SUITE_P(Seeds, Sweep, ::testing::Range<uint64_t>(0, kShards));

// The runs that snapshot exercise what the sweep counts on: leaders hear how their snapshot
// transfers ended (reportSnapshot), and compactions are written a slice at a time while the
// nodes apply entries.
TEST(SweepCoverage, SnapshotsAreReportedAndWrittenInSlices) {
  uint64_t reports = 0, sliced = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Options o;
    o.seed = seed;
    o.faults = kSnapshots | kNetwork | kCrashes;
    Result r = run(o);
    ASSERT_TRUE(r.ok) << "reproduce with: keel-sim --seed " << seed << " --faults snapshots,network,crashes\n" << r.report;
    reports += r.snapshotReports;
    sliced += r.slicedCompactions;
  }
  EXPECT_GT(reports, 0u);
  EXPECT_GT(sliced, 0u);
}

}  // namespace
}  // namespace keel::sim::testing
