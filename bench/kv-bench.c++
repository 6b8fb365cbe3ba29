// keel-kv-bench: KvStateMachine's cost per command against the size of its state.
//
//   keel-kv-bench [--benchmark_filter=...]
//
// Put: apply() of a write of a new random key (16-byte value) to a state of `keys` records.
// Get: query() of a random existing key. `cold:1` evicts the caches (writes 8 MiB) before each
// batch of 64 commands, outside the timing, as the other processes of a node's machine do
// between its turns; `cold:0` runs with warm caches. Figure: ns per command.
#include <keel/kv.h>

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

using namespace keel;

namespace {

constexpr int kBatch = 64;

std::string randomKey(std::mt19937_64& rng) { return "key:" + std::to_string(rng() % 100000000000ull); }

void evictCaches() {
  static std::vector<char> junk(8 << 20);
  for (size_t i = 0; i < junk.size(); i += 64) junk[i]++;
  benchmark::DoNotOptimize(junk.data());
}

// The figure: ns per command (kBatch commands per iteration).
void countPerCommand(benchmark::State& state) {
  state.counters["ns_per_cmd"] =
      benchmark::Counter(double(state.iterations()) * kBatch / 1e9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

struct Loaded {
  KvStateMachine sm;
  std::vector<std::string> keys;
  uint64_t index = 0;
  Loaded(size_t n, std::mt19937_64& rng) {
    keys.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      keys.push_back(randomKey(rng));
      sm.apply(Index{++index}, kv::encodePut({}, keys.back(), "0123456789abcdef"));
    }
  }
};

void Put(benchmark::State& state) {
  std::mt19937_64 rng(1);
  Loaded l(size_t(state.range(0)), rng);
  bool cold = state.range(1) != 0;
  std::vector<std::string> cmds(kBatch);
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& c : cmds) c = kv::encodePut({}, randomKey(rng), "0123456789abcdef");
    if (cold) evictCaches();
    state.ResumeTiming();
    for (auto& c : cmds) benchmark::DoNotOptimize(l.sm.apply(Index{++l.index}, c));
  }
  countPerCommand(state);
}

void Get(benchmark::State& state) {
  std::mt19937_64 rng(2);
  Loaded l(size_t(state.range(0)), rng);
  bool cold = state.range(1) != 0;
  std::vector<std::string> qs(kBatch);
  for (auto _ : state) {
    state.PauseTiming();
    for (auto& q : qs) q = kv::encodeGet(l.keys[rng() % l.keys.size()]);
    if (cold) evictCaches();
    state.ResumeTiming();
    for (auto& q : qs) benchmark::DoNotOptimize(l.sm.query(q));
  }
  countPerCommand(state);
}

BENCHMARK(Put)->ArgsProduct({{60000, 400000}, {0, 1}})->ArgNames({"keys", "cold"})->UseRealTime();
BENCHMARK(Get)->ArgsProduct({{60000, 400000}, {0, 1}})->ArgNames({"keys", "cold"})->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
