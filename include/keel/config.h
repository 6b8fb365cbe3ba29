// keel: the configuration of one consensus module.
#pragma once

#include <keel/types.h>

#include <string>

namespace keel {

enum class ReadMode : uint8_t {
  // ReadIndex (§6.4): a read waits for one round of heartbeats that a quorum acknowledges.
  // Safe under any clock behaviour.
  Safe,
  // Leader lease (diss. §6.4.1): the leader answers at once while its lease holds. The lease
  // starts when the leader sends a round of heartbeats and is granted when a quorum
  // acknowledges the round; it lasts leaseTicks() of the leader's ticks from the sending. It
  // rests on the followers' promise (§4.2.3, which needs checkQuorum) to vote for no one else
  // within an election timeout of hearing from the leader, and so on an assumption about time:
  // no node's ticks run more than maxClockDriftPercent faster than another's (a bound on the
  // clocks' *rates*; their offsets do not matter), and the leader's ticks keep up with its
  // clock (a driver whose loop stalled ticks for the time it missed before it calls readIndex()
  // or steps a forwarded read; keel-server does). A leader whose ticks run slower than that
  // bound allows can serve a stale read.
  // No lease while a leadership transfer is in progress (the target's votes bypass the
  // followers' promise); a node keeps its promise for an election timeout after it starts.
  Lease,
};

// Deliberate defects that tests switch on to prove that the simulator and the checkers catch
// them. Never set outside tests.
enum class Fault : unsigned {
  CommitPreviousTerm,  // commit entries of an earlier term by counting replicas (breaks §5.4.2)
  ReadWithoutQuorum,   // answer ReadIndex at once, without confirming leadership (breaks §6.4)
  GrantAnyVote,        // grant every vote request (breaks §5.2 and §5.4.1)
  AckBeforePersist,    // send acknowledgements before the writes are durable (breaks §5.1)
  // take a follower's forwarded read for its acknowledgement of the leader's whole read round,
  // answering reads that arrived before the request did (breaks §6.4 step 3)
  ForwardedReadAcksRound,
};

struct Config {
  NodeId id;                    // this node; must be non-zero
  uint32_t electionTicks = 10;  // a follower campaigns after [electionTicks, 2*electionTicks)
  uint32_t heartbeatTicks = 1;  // a leader sends heartbeats every heartbeatTicks; < electionTicks
  bool preVote = true;          // §9.6: a node must win a pre-vote before raising its term
  bool checkQuorum = true;      // §6.2: a leader steps down without a quorum of contact
  ReadMode readMode = ReadMode::Safe;
  // Lease reads: the largest difference between the rates of two nodes' ticks, in percent
  // (10: a tick of one node may be up to 10% shorter than another's).
  uint32_t maxClockDriftPercent = 10;
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
  // The length of a lease in the leader's ticks: floor((electionTicks - 1) * 100 / (100 +
  // maxClockDriftPercent)). A follower that heard a heartbeat refuses votes until electionTicks
  // of its ticks have passed, which is more than (electionTicks - 1) tick lengths after the
  // leader sent it (its first tick may come right after the heartbeat); the leader counts its
  // own ticks after the one in which it sent the round.
  uint32_t leaseTicks() const;
};

}  // namespace keel
