# keel: the client service (docs/rpc.md). Every node serves it on its --listen address, as
# part of the bootstrap capability `Node` (raft.capnp). Expected outcomes are values (`Status`),
# never exceptions: an exception means a bug, bad input or a lost connection.
@0xdb81d04ee2a12f26;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("keel::wire");

enum Status {
  ok @0;
  notLeader @1;        # this node cannot serve it; `leader`/`leaderAddress` say where to go
  timeout @2;          # the deadline passed; for a write: the outcome is unknown
  unavailable @3;      # no leader is known, or the node is shutting down
  tooLarge @4;         # the command exceeds the configured maximum entry size
  dropped @5;          # the leader is overloaded (too many uncommitted bytes); retry later
  changePending @6;    # a membership change is in progress
  invalidChange @7;    # the membership change would leave an unusable configuration
  unknownNode @8;      # the node named is not a member
  unknownOutcome @9;   # the write was appended but leadership was lost before it committed
}

enum Consistency {
  linearizable @0;     # ReadIndex (§6.4): served once the state machine caught up with the leader
  stale @1;            # the node's local state, whatever its age
}

struct Redirect {
  leader @0 :UInt64;          # 0: unknown
  leaderAddress @1 :Text;     # empty: unknown
}

struct NodeStatus {
  id @0 :UInt64;
  address @1 :Text;
  role @2 :Text;              # follower, precandidate, candidate, leader
  term @3 :UInt64;
  leader @4 :UInt64;
  commit @5 :UInt64;
  applied @6 :UInt64;
  lastIndex @7 :UInt64;
  firstIndex @8 :UInt64;
  snapshotIndex @9 :UInt64;
  voters @10 :List(UInt64);
  learners @11 :List(UInt64);
  outgoing @12 :List(UInt64);
  peers @13 :List(PeerStatus);   # the leader's view of each follower (empty elsewhere)
  clusterId @14 :Text;
  httpAddress @15 :Text;
}

struct PeerStatus {
  id @0 :UInt64;
  address @1 :Text;
  match @2 :UInt64;
  next @3 :UInt64;
  state @4 :Text;             # probe, replicate, snapshot
  lag @5 :UInt64;             # leader's last index - match
  connected @6 :Bool;
}

# One call of a batch: a propose or a query, as if sent alone.
struct Call {
  timeoutMs @0 :UInt32;
  union {
    propose @1 :Data;           # a command
    query @2 :Data;             # a read-only query
  }
  consistency @3 :Consistency;  # for a query
}

struct CallReply {
  status @0 :Status;
  result @1 :Data;
}

enum ChangeKind {
  addLearner @0;
  addVoter @1;                # also: promote a learner
  remove @2;
}

interface Keel {
  # Proposes a command to the state machine and returns its result once applied. A follower
  # forwards it to the leader. `timeoutMs` 0: the server's default.
  propose @0 (command :Data, timeoutMs :UInt32) -> (status :Status, result :Data, redirect :Redirect);

  # Answers a read-only query from the state machine.
  query @1 (query :Data, consistency :Consistency, timeoutMs :UInt32)
      -> (status :Status, result :Data, redirect :Redirect);

  status @2 () -> (status :NodeStatus);

  # Leader only (followers forward). `address` is the new node's --listen address.
  changeMembership @3 (kind :ChangeKind, node :UInt64, address :Text, timeoutMs :UInt32)
      -> (status :Status, redirect :Redirect);

  # Leader only (followers forward); 0 means "the most up-to-date follower".
  transferLeadership @4 (to :UInt64, timeoutMs :UInt32) -> (status :Status, redirect :Redirect);

  # Takes a snapshot of this node's state machine now and compacts its log.
  snapshot @5 () -> (index :UInt64);

  # Several proposes and queries in one message: the client library sends the calls one
  # connection makes in one event-loop turn together. Each is handled as if it came alone
  # (proposes are proposed in order); `replies` are in the order of `calls`, and `redirect`
  # names the leader as the last one finished. At most 1024 calls.
  batch @6 (calls :List(Call)) -> (replies :List(CallReply), redirect :Redirect);
}
