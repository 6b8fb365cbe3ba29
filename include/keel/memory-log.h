// keel: MemoryLog, a Log kept in memory (tests, benchmarks, the simulator).
#pragma once

#include <keel/log.h>

namespace keel {

class MemoryLog final : public Log {
 public:
  // An empty log of a new cluster whose first configuration is `initial` (a snapshot at
  // index 0, term 0, without data).
  explicit MemoryLog(Membership initial = {});

  HardState hardState() const override { return hardState_; }
  Index firstIndex() const override { return snapshot_.meta.index.next(); }
  Index lastIndex() const override { return snapshot_.meta.index + entries_.size(); }
  Term term(Index i) const override;
  void entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const override;
  SnapshotMeta snapshotMeta() const override { return snapshot_.meta; }
  Snapshot snapshot() const override { return snapshot_; }

  void setHardState(const HardState& hs) override { hardState_ = hs; }
  void append(std::span<const Entry> entries) override;
  void installSnapshot(const Snapshot& snapshot) override;
  void compact(const Snapshot& snapshot) override;
  void sync() override {}

  // Pre-sizes the entry array, for benchmarks that count allocations.
  void reserve(size_t n) { entries_.reserve(n); }

 private:
  HardState hardState_;
  Snapshot snapshot_;
  std::vector<Entry> entries_;  // entries_[0] has index snapshot_.meta.index + 1
};

}  // namespace keel
