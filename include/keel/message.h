// keel: the messages consensus modules exchange.
//
// One struct for every kind, as in etcd-io/raft: the transport maps it to the wire schema and
// back. Fields a kind does not use stay at their defaults. Messages never carry a node's own
// state to itself; every message has `from` and `to` set by the sender's core.
#pragma once

#include <keel/types.h>

#include <memory>
#include <string>
#include <vector>

namespace keel {

enum class MessageType : uint8_t {
  PreVote,            // §9.6: would you vote for me in term `term`? (my term is unchanged)
  PreVoteResponse,    // reject=false grants
  Vote,               // §5.2 RequestVote; index/logTerm: my last entry; transfer: see below
  VoteResponse,       // reject=false grants
  Append,             // §5.3 AppendEntries; index/logTerm: the entry before `entries`
  AppendResponse,     // index: the follower's last matching index, or the rejected one
  Heartbeat,          // commit: min(leader commit, follower match); context: read round
  HeartbeatResponse,  // context: echoed read round
  Snapshot,           // §7 InstallSnapshot; `snapshot` set
  TimeoutNow,         // §3.10 leadership transfer: start an election now
  ReadIndex,          // follower -> leader: a read with id `context` (§6.4)
  ReadIndexResponse,  // leader -> follower: serve read `context` at `index`; reject: refused
};

const char* toString(MessageType t) noexcept;

struct Message {
  MessageType type = MessageType::Append;
  NodeId from;
  NodeId to;
  Term term;      // the sender's term (for PreVote: the term it would campaign in)
  Term logTerm;   // Append: term of entry `index`; Vote/PreVote: term of last entry
  Index index;    // see the message type
  Index commit;   // Append/Heartbeat: the leader's commit index
  bool reject = false;
  Index hintIndex;  // AppendResponse reject: the follower's guess of the last matching index
  Term hintTerm;    // AppendResponse reject: the term of the follower's entry at hintIndex
  bool transfer = false;  // Vote: a campaign for leadership transfer; bypasses the lease (§4.2.3)
  uint64_t context = 0;   // Heartbeat(Response): read round; ReadIndex(Response): read id
  std::vector<Entry> entries;
  std::shared_ptr<const keel::Snapshot> snapshot;  // Snapshot messages only

  std::string toString() const;  // one line, for transcripts and failure reports
};

// A read that is now linearizable (§6.4): once the state machine has applied `index`, reading
// its local state answers the read request `context`.
struct ReadState {
  Index index;
  uint64_t context = 0;
};

}  // namespace keel
