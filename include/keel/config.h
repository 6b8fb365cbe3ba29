// keel: the configuration of one consensus module.
#pragma once

#include <keel/types.h>

#include <string>

namespace keel {

enum class ReadMode : uint8_t {
  // ReadIndex (§6.4): a read waits for one round of heartbeats that a quorum acknowledges.
  // Safe under any clock behaviour.
  Safe,
  // Leader lease (§6.4.1): a leader that has heard from a quorum within the last election
  // timeout answers reads at once. Assumes clocks whose rates differ by less than the margin
  // between the election timeout and the time a read takes (ticks on different nodes advance
  // at nearly the same rate); a node whose clock runs slow can serve a stale read. Requires
  // checkQuorum.
  Lease,
};

// Deliberate defects that tests switch on to prove that the simulator and the checkers catch
// them. Never set outside tests.
enum class Fault : unsigned {
  CommitPreviousTerm,  // commit entries of an earlier term by counting replicas (breaks §5.4.2)
  ReadWithoutQuorum,   // answer ReadIndex at once, without confirming leadership (breaks §6.4)
  GrantAnyVote,        // grant every vote request (breaks §5.2 and §5.4.1)
  AckBeforePersist,    // send acknowledgements before the writes are durable (breaks §5.1)
};

struct Config {
  NodeId id;                    // this node; must be non-zero
  uint32_t electionTicks = 10;  // a follower campaigns after [electionTicks, 2*electionTicks)
  uint32_t heartbeatTicks = 1;  // a leader sends heartbeats every heartbeatTicks; < electionTicks
  bool preVote = true;          // §9.6: a node must win a pre-vote before raising its term
  bool checkQuorum = true;      // §6.2: a leader steps down without a quorum of contact
  ReadMode readMode = ReadMode::Safe;
  uint64_t maxMessageBytes = 1 << 20;       // entry payload per Append (at least one entry)
  uint32_t maxInflightMessages = 256;       // Appends in flight per follower (pipelining)
  uint64_t maxUncommittedBytes = 64 << 20;  // a leader drops proposals past this; 0 = no limit
  uint64_t maxEntryBytes = 1 << 20;         // a larger proposal is refused as TooLarge
  Index applied;                // what the state machine had applied when the node started
  uint64_t seed = 1;            // randomness (election timeouts) comes from this seed only
  // Test-only deliberate defects (a bit per Fault), honoured only in builds with KEEL_FAULTS.
  uint64_t faults = 0;

  // Empty when the configuration is usable, else a sentence saying what is wrong.
  std::string validate() const;
};

}  // namespace keel
