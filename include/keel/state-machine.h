// keel: the StateMachine interface: what the log's committed commands drive.
//
// Deterministic by contract: the same commands applied in the same order from the same
// snapshot give the same results and the same state on every node.
#pragma once

#include <keel/types.h>

#include <string>
#include <string_view>

namespace keel {

// Receives a snapshot in chunks.
class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;
  virtual void write(std::string_view chunk) = 0;
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
  // Replaces the whole state by a snapshot's bytes, fed in the order they were written.
  // Returns false (changing nothing) when the bytes are not a snapshot of this machine.
  virtual bool restore(std::string_view snapshot) = 0;
};

}  // namespace keel
