// Verifies the claim that a proposal on the steady-state path allocates nothing but its own
// payload: a 3-node cluster with pre-sized logs, counted by a replaced global operator new.
#include <keel/consensus.h>
#include <keel/memory-log.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> allocations{0};
}

void* operator new(size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace keel {
namespace {

TEST(Allocation, SteadyStateProposalAllocatesOnlyItsPayload) {
  constexpr int kNodes = 3, kWarmup = 2000, kMeasured = 5000;
  Membership m;
  for (uint64_t i = 1; i <= kNodes; ++i) m.voters.push_back(NodeId{i});
  std::vector<std::unique_ptr<MemoryLog>> logs;
  std::vector<std::unique_ptr<Consensus>> nodes;
  for (uint64_t i = 1; i <= kNodes; ++i) {
    logs.push_back(std::make_unique<MemoryLog>(m));
    logs.back()->reserve(kWarmup + kMeasured + 100);
    Config c;
    c.id = NodeId{i};
    nodes.push_back(std::make_unique<Consensus>(c, *logs.back()));
  }
  // Messages go straight from the sender's Ready to the receiver (valid until advance()).
  auto pump = [&] {
    for (;;) {
      bool any = false;
      for (int i = 0; i < kNodes; ++i) {
        while (nodes[i]->hasReady()) {
          any = true;
          const Ready& rd = nodes[i]->ready();
          if (rd.hardState) logs[i]->setHardState(*rd.hardState);
          logs[i]->append(rd.entries);
          for (const Message& msg : rd.messages) nodes[msg.to.value - 1]->step(msg);
          for (const Message& msg : rd.messagesAfterPersist) nodes[msg.to.value - 1]->step(msg);
          nodes[i]->advance();
        }
      }
      if (!any) return;
    }
  };
  nodes[0]->campaign();
  pump();
  ASSERT_EQ(nodes[0]->role(), Role::Leader);
  const char payload[16] = "0123456789abcde";
  for (int i = 0; i < kWarmup; ++i) {
    ASSERT_TRUE(nodes[0]->propose(Bytes(payload, 16)).ok());
    pump();
  }
  uint64_t before = allocations.load();
  for (int i = 0; i < kMeasured; ++i) {
    nodes[0]->propose(Bytes(payload, 16));
    pump();
  }
  uint64_t perProposal100 = (allocations.load() - before) * 100 / kMeasured;
  EXPECT_EQ(nodes[0]->appliedIndex().value, uint64_t(kWarmup + kMeasured + 1));
  // One allocation per proposal: the payload. (x100 to show fractions in a failure.)
  EXPECT_LE(perProposal100, 100u);
}

}  // namespace
}  // namespace keel
