# keel: the messages between the nodes of one cluster (docs/rpc.md). A node's bootstrap
# capability is a `Node`: the peer service below and the client service of client.capnp.
@0x8b9857acd14e8ba8;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("keel::wire");

using Client = import "client.capnp";

enum MessageType {
  preVote @0;
  preVoteResponse @1;
  vote @2;
  voteResponse @3;
  append @4;
  appendResponse @5;
  heartbeat @6;
  heartbeatResponse @7;
  snapshot @8;
  timeoutNow @9;
  readIndex @10;
  readIndexResponse @11;
}

enum EntryType {
  normal @0;
  membership @1;
}

struct Entry {
  term @0 :UInt64;
  index @1 :UInt64;
  type @2 :EntryType;
  data @3 :Data;
}

struct Membership {
  voters @0 :List(UInt64);
  outgoing @1 :List(UInt64);
  learners @2 :List(UInt64);
}

struct SnapshotMeta {
  index @0 :UInt64;
  term @1 :UInt64;
  membership @2 :Membership;
}

# keel::Message field for field (include/keel/message.h). A snapshot's data does not travel
# in a Message: see Peer.installSnapshot.
struct Message {
  type @0 :MessageType;
  from @1 :UInt64;
  to @2 :UInt64;
  term @3 :UInt64;
  logTerm @4 :UInt64;
  index @5 :UInt64;
  commit @6 :UInt64;
  reject @7 :Bool;
  hintIndex @8 :UInt64;
  hintTerm @9 :UInt64;
  transfer @10 :Bool;
  context @11 :UInt64;
  entries @12 :List(Entry);
  snapshotMeta @13 :SnapshotMeta;
}

# Who is calling. Every call carries it; a node refuses (with a log line) a sender of another
# cluster, or one that names a node other than the receiver as `to`.
struct Origin {
  clusterId @0 :Text;
  from @1 :UInt64;
  fromAddress @2 :Text;      # the sender's --listen address, so peers can call it back
  to @3 :UInt64;
}

interface Peer {
  # Delivers messages. Empty `refusal`: accepted. A caller that sets `repliesInReturn` takes
  # answers back in the return: when the call brings a request, the receiver may hold the
  # return a while (until it has answers for the caller, its write in progress is durable, or
  # about two ticks have passed) and put its answers (responses) to the caller in `messages`,
  # instead of calling the caller on its own connection. A caller that leaves it false (or
  # does not know it) gets the return at once, with no messages, and the answers as calls.
  deliver @0 (origin :Origin, messages :List(Message), repliesInReturn :Bool)
      -> (refusal :Text, messages :List(Message));

  # §7 InstallSnapshot, streamed: the receiver collects the chunks, then steps `message` (a
  # snapshot message) with the assembled data.
  installSnapshot @1 (origin :Origin, message :Message, size :UInt64)
      -> (refusal :Text, sink :SnapshotSink);
}

interface SnapshotSink {
  write @0 (chunk :Data) -> stream;
  done @1 () -> (ok :Bool);
}

interface Node extends(Peer, Client.Keel) {}
