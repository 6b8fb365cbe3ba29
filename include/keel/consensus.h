// keel: the consensus module, a pure and deterministic Raft.
//
// A Consensus is one node's Raft state machine. It does no I/O and reads no clock: time is
// tick(), input is step(message) and the calls of a client, and everything it wants done comes
// out as one Ready. Randomness comes from Config::seed only, so the same inputs give the same
// outputs on every run.
//
// The driver loop, and the ordering contract it must keep:
//
//   while (node.hasReady()) {
//     const Ready& rd = node.ready();
//     send(rd.messages);                     // may go before the writes below (§10.2.1)
//     if (rd.snapshot) log.installSnapshot(*rd.snapshot), stateMachine.restore(...);
//     if (rd.hardState) log.setHardState(*rd.hardState);
//     log.append(rd.entries);
//     log.sync();                            // durable before anything below (but see
//                                            // rd.syncOptional)
//     send(rd.messagesAfterPersist);
//     apply(rd.committed);                   // in order; membership entries included
//     serve(rd.readStates);                  // once applied >= readState.index
//     node.advance();
//   }
//
// Unless rd.committedAfterWrite is set, the committed entries are on a quorum's stable storage
// already and may be applied (and their results answered) before this Ready's writes, right
// after ready(); only a cluster of one commits what this very Ready writes.
//
// A leader whose followers alone form a quorum need not make its own entries durable before it
// goes on (diss. §10.2.1: "the leader may even commit an entry before it has been written to its
// own disk, if a majority of followers have written it to their disks"). Such a Ready has
// rd.syncOptional; the driver may then write it without a sync and call advance(false). Those
// entries count towards a commit for this node once the driver reports a sync of them with
// persisted(), or with the next advance() of a synced Ready that writes entries. Any write that
// was not synced must be synced before this node sends anything of a later Ready's
// messagesAfterPersist.
//
// Between ready() and advance() the node goes on accepting step(), tick() and proposals; what
// they produce waits for the next Ready, except what sendable() and applicable() hand out at
// once. Everything a Ready refers to stays valid until advance(). At most one Ready is
// outstanding.
//
// Expected outcomes (not the leader, a change already pending, ...) are values. Bad input
// (a malformed configuration, a message for another node) throws std::invalid_argument.
#pragma once

#include <keel/config.h>
#include <keel/log.h>
#include <keel/message.h>
#include <keel/types.h>

#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace keel {

enum class Role : uint8_t { Follower, PreCandidate, Candidate, Leader };
const char* toString(Role r) noexcept;

// Why a request was refused. None means accepted.
enum class Refusal : uint8_t {
  None,
  NotLeader,           // ask Result::leader (kNoNode when unknown)
  TransferInProgress,  // a leadership transfer is under way (§3.10)
  TooLarge,            // larger than Config::maxEntryBytes
  Dropped,             // too many uncommitted bytes; retry later
  ChangePending,       // a membership change is not yet applied (§4.1)
  InvalidChange,       // the change would give an unusable configuration
  UnknownNode,         // the target is not a member
};
const char* toString(Refusal r) noexcept;

// The outcome of propose, proposeMembership, readIndex and transferLeadership.
struct Result {
  Refusal refusal = Refusal::None;
  NodeId leader;  // on NotLeader: the leader if known
  Index index;    // on success of a proposal: where the entry was appended
  Term term;      // ... and its term (the entry is committed iff that index commits with it)
  bool ok() const noexcept { return refusal == Refusal::None; }
};

struct MembershipChange {
  enum class Kind : uint8_t { AddVoter, AddLearner, Remove };
  Kind kind;
  NodeId node;
};

// Replication state of one follower, as the leader sees it (for status and metrics).
struct Progress {
  enum class State : uint8_t { Probe, Replicate, Snapshot };
  State state = State::Probe;
  Index match;             // highest index known to be replicated
  Index next;              // next index to send
  uint32_t inflight = 0;   // Appends in flight
  bool recentActive = false;
};
const char* toString(Progress::State s) noexcept;

// What the driver has to do; see the contract at the top of this file.
struct Ready {
  std::optional<HardState> hardState;    // persist when set
  std::span<const Entry> entries;        // append to the log
  const Snapshot* snapshot = nullptr;    // install (log and state machine) when set
  std::span<const Message> messages;     // send; need nothing persisted first
  std::span<const Message> messagesAfterPersist;  // send once the writes are durable
  std::span<const Entry> committed;      // apply, in order
  bool committedAfterWrite = false;      // apply `committed` only once the writes are durable
  // The writes may stay unsynced (advance(false)): this node leads, the Ready writes entries
  // only (no snapshot, no new term or vote, nothing waits in messagesAfterPersist) and enough
  // followers to form a quorum without this node replicate and answered within the last two
  // heartbeat intervals.
  bool syncOptional = false;
  std::span<const ReadState> readStates; // answer once the state machine applied `index`
};

class Consensus {
 public:
  // Starts from what `log` holds (hard state, snapshot, entries). The log must outlive the
  // node; the node only reads it. A log whose snapshot has an empty membership starts a node
  // that waits to be added to an existing cluster: it never campaigns, and takes its
  // configuration from the leader. Throws std::invalid_argument when config.validate() fails
  // or the log's membership is malformed.
  Consensus(const Config& config, const Log& log);
  ~Consensus();
  Consensus(const Consensus&) = delete;
  Consensus& operator=(const Consensus&) = delete;

  // ---- Input ----
  void tick();
  // Handles a message addressed to this node. Messages from a stale term, from non-members and
  // duplicates are absorbed safely (Raft tolerates loss, duplication and reordering).
  void step(const Message& m);
  // Appends a command (leader only). Its result comes back when `index` is applied.
  Result propose(Bytes command);
  // Starts a membership change (leader only). Changes that alter the voters go through the
  // joint configuration (§6) and leave it automatically once it is applied; changes of
  // learners alone take effect directly.
  Result proposeMembership(std::span<const MembershipChange> changes);
  // Asks for a linearizable read (§6.4). On success a ReadState with `context` appears in a
  // later Ready (or none, if leadership is lost first: the caller times out and retries).
  // On a follower the request is forwarded to the leader.
  Result readIndex(uint64_t context);
  // Hands leadership to `to` (§3.10): brings it up to date, then tells it to campaign.
  // Proposals are refused until it succeeds or an election timeout passes.
  Result transferLeadership(NodeId to);
  // Starts an election now (with a pre-vote first when enabled).
  void campaign();
  // The driver's word on the snapshot at `index` it streamed to `peer` (leader only; ignored
  // otherwise, when no snapshot is pending for it, or when the one pending is newer).
  // `delivered`: every byte arrived, so the peer's answer (§7) is on its way; the leader waits
  // for it afresh rather than sending the snapshot again. Not delivered: it is sent again one
  // election timeout later. Without reports a snapshot counts as lost two election timeouts
  // after it was sent.
  void reportSnapshot(NodeId peer, Index index, bool delivered);
  // Describes a snapshot of the state applied so far (the last committed entry handed out by
  // applicable() or in a Ready that was advanced). Store it with Log::compact.
  SnapshotMeta snapshotMeta() const;

  // ---- Output ----
  // The messages that may leave now (those Ready::messages would carry) produced since the
  // last ready() or sendable(), with the Appends of batched proposals flushed first. Callable
  // at any time, also while a Ready is outstanding: a leader's Appends of new proposals need
  // not wait for its own write in progress (diss. §10.2.1). A message handed out here is not
  // handed out again by ready(). The span is valid until the next call into this node.
  std::span<const Message> sendable();
  // The entries committed since the last ready() or applicable(), to apply now, in order and
  // before any other call into this node. Callable at any time, also while a Ready is
  // outstanding (after its own `committed`, if that is applied before the write): an entry
  // on a quorum's stable storage need not wait for this node's write in progress. Empty while
  // a Ready with committedAfterWrite is outstanding. The span is valid until the next call.
  std::span<const Entry> applicable();
  bool hasReady() const noexcept;
  const Ready& ready();
  // The outstanding Ready was carried out. `durable`: its writes, and every earlier one, are on
  // stable storage; false only when the Ready has syncOptional (else std::logic_error). A
  // leader's entries left unsynced count from the next durable Ready that writes entries, or
  // from persisted().
  void advance(bool durable = true);
  // The driver's word that a sync it started while this node led in `term`, with `index` the
  // log's last index then, has completed: the leader's own entries up to `index` now count
  // towards a commit. Ignored once the node no longer leads in `term`.
  void persisted(Term term, Index index);

  // ---- Status ----
  NodeId id() const noexcept;
  Role role() const noexcept;
  Term term() const noexcept;
  NodeId leader() const noexcept;
  NodeId vote() const noexcept;
  Index commitIndex() const noexcept;
  Index appliedIndex() const noexcept;  // handed out for applying
  Index lastIndex() const noexcept;
  Term lastTerm() const noexcept;
  const Membership& membership() const noexcept;  // as of appliedIndex()
  NodeId transferTarget() const noexcept;
  // Lease reads: true while this leader's lease holds (readIndex() answers at once).
  bool hasLease() const noexcept;
  // Leader only; nullopt for non-members and on other roles.
  std::optional<Progress> progress(NodeId peer) const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel
