// keel: the StateMachine interface: what the log's committed commands drive.
//
// Deterministic by contract: the same commands applied in the same order from the same
// snapshot give the same results and the same state on every node.
#pragma once

#include <keel/types.h>

#include <memory>
#include <string>
#include <string_view>

namespace keel {

// Receives a snapshot in chunks.
class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;
  virtual void write(std::string_view chunk) = 0;
};

// Builds the state of a snapshot while its bytes stream in (StateMachine::beginRestore),
// aside from the machine's current state, which it replaces only when applied. write() and
// finish() touch nothing but the restore itself: the server calls them on a thread of their
// own, while the machine goes on applying entries on the event loop; apply() runs there.
class SnapshotRestore {
 public:
  virtual ~SnapshotRestore() = default;
  // The next bytes of the snapshot, in the order they were written.
  virtual void write(std::string_view chunk) = 0;
  // Every byte was written: true when they form a snapshot of this machine (checked whole, as
  // restore() checks it). Changes nothing.
  virtual bool finish() = 0;
  // After finish() returned true, once: replaces the machine's state, exactly as restore() of
  // the same bytes would.
  virtual void apply() = 0;
};

// A snapshot written a slice at a time (StateMachine::beginSnapshot), so that a large state
// does not stop the node while it is written. It writes the state as it was when it began:
// the machine may apply commands between the slices. Destroying it before it is done abandons
// the snapshot (the sink then holds an unfinished one).
class SnapshotJob {
 public:
  virtual ~SnapshotJob() = default;
  // Writes about `budgetBytes` more to the sink (at least one record, if any is left, when
  // budgetBytes > 0); true once the whole snapshot has been written, after which step() does
  // nothing.
  virtual bool step(size_t budgetBytes) = 0;
};

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies the committed command at `index`; the result goes back to the proposer.
  virtual std::string apply(Index index, std::string_view command) = 0;
  // Answers a read-only query from local state (the caller made it linearizable, or asked
  // for a stale read).
  virtual std::string query(std::string_view request) const = 0;
  // Writes the whole state, in chunks of the implementation's choosing.
  virtual void snapshot(SnapshotSink& sink) const = 0;
  // Optional: the same snapshot, written by the job's steps. One job at a time; restoring the
  // machine while one is under way is a logic error (abandon the job first). The job must not
  // outlive the machine, nor the sink. nullptr (the default): only snapshot().
  virtual std::unique_ptr<SnapshotJob> beginSnapshot(SnapshotSink& sink) {
    (void)sink;
    return nullptr;
  }
  // Replaces the whole state by a snapshot's bytes, fed in the order they were written.
  // Returns false (changing nothing) when the bytes are not a snapshot of this machine.
  virtual bool restore(std::string_view snapshot) = 0;
  // Optional: restoring while a snapshot streams in, so that installing it costs little once it
  // has all arrived. nullptr (the default): only restore() of whole snapshots. The restore must
  // not outlive the machine.
  virtual std::unique_ptr<SnapshotRestore> beginRestore() { return nullptr; }
};

}  // namespace keel
