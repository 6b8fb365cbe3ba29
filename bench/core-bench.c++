// Workloads W1 (core-steady) and W2 (core-fresh) of ../shared/bench/WORKLOADS.md: the
// consensus module alone, N nodes in one process, in-memory logs, a state machine that only
// counts, and a synchronous pump. No network, no disk, no timers.
//
//   keel-core-bench --benchmark_filter=W1      (the figure is the counter us_per_proposal)
#include <keel/consensus.h>
#include <keel/memory-log.h>

#include <benchmark/benchmark.h>

#include <memory>
#include <stdexcept>
#include <vector>

namespace keel {
namespace {

class Cluster {
 public:
  explicit Cluster(size_t n) {
    Membership m;
    for (uint64_t i = 1; i <= n; ++i) m.voters.push_back(NodeId{i});
    logs_.reserve(n);
    nodes_.reserve(n);
    applied_.assign(n, 0);
    for (uint64_t i = 1; i <= n; ++i) {
      logs_.push_back(std::make_unique<MemoryLog>(m));
      Config c;
      c.id = NodeId{i};
      nodes_.push_back(std::make_unique<Consensus>(c, *logs_.back()));
    }
  }

  // Takes every node's Ready, appends its entries, delivers its messages (in order, straight
  // into the receiver), applies (counts) its committed entries and advances; repeats until
  // no node has work. (A node drains its own work in the inner loop, so only a delivered
  // message can give work to a node already visited: a pass without one ends the pump.)
  void pump() {
    for (bool delivered = true; delivered;) {
      delivered = false;
      for (size_t i = 0; i < nodes_.size(); ++i) {
        Consensus& node = *nodes_[i];
        while (node.hasReady()) {
          const Ready& rd = node.ready();
          MemoryLog& log = *logs_[i];
          if (rd.hardState) log.setHardState(*rd.hardState);
          log.append(rd.entries);
          for (const Message& m : rd.messages) nodes_[m.to.value - 1]->step(m);
          for (const Message& m : rd.messagesAfterPersist) nodes_[m.to.value - 1]->step(m);
          delivered = delivered || !rd.messages.empty() || !rd.messagesAfterPersist.empty();
          applied_[i] += rd.committed.size();
          node.advance();
        }
      }
    }
  }

  void electFirst() {
    nodes_[0]->campaign();
    pump();
    if (nodes_[0]->role() != Role::Leader) throw std::runtime_error("node 1 was not elected");
  }

  Consensus& leader() { return *nodes_[0]; }
  uint64_t leaderApplied() const { return applied_[0]; }

 private:
  std::vector<std::unique_ptr<MemoryLog>> logs_;
  std::vector<std::unique_ptr<Consensus>> nodes_;
  std::vector<uint64_t> applied_;
};

// Every proposal carries the same 16-byte payload, shared by reference as the etcd peer
// shares one []byte across its proposals; the allocation test (tests/unit/allocation-test)
// covers the cost of a fresh payload per proposal.
const Bytes kPayload("keel-proposal-16", 16);

// W1: a proposal counts once it is committed and applied on the leader.
void W1(benchmark::State& state) {
  size_t n = state.range(0), batch = state.range(1);
  Cluster c(n);
  c.electFirst();
  uint64_t proposals = 0;
  uint64_t start = c.leaderApplied();
  for (auto _ : state) {
    for (size_t j = 0; j < batch; ++j) {
      if (!c.leader().propose(kPayload).ok()) state.SkipWithError("refused");
    }
    c.pump();
    proposals += batch;
  }
  if (c.leaderApplied() - start != proposals) state.SkipWithError("not every proposal was applied");
  state.counters["us_per_proposal"] =
      benchmark::Counter(double(proposals) / 1e6, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(proposals);
}

// W2: create an N-node cluster, elect node 1, propose one entry, pump until it is applied on
// the leader (the original project's headline measure).
void W2(benchmark::State& state) {
  size_t n = state.range(0);
  for (auto _ : state) {
    Cluster c(n);
    c.electFirst();
    c.leader().propose(kPayload);
    c.pump();
    if (c.leaderApplied() != 2) state.SkipWithError("not applied");  // the no-op, then ours
  }
  state.counters["us_per_op"] =
      benchmark::Counter(double(state.iterations()) / 1e6, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(W1)->ArgsProduct({{1, 3, 5, 7}, {1, 100}})->ArgNames({"nodes", "batch"})->UseRealTime();
BENCHMARK(W2)->ArgsProduct({{1, 3, 5, 7}})->ArgNames({"nodes"})->UseRealTime();

}  // namespace
}  // namespace keel

BENCHMARK_MAIN();
