// keel internal: conversions between the core's types and the generated Cap'n Proto types
// (schema/raft.capnp). The only place that knows both.
#pragma once

#include <keel/consensus.h>
#include <keel/message.h>
#include <keel/types.h>

#include <raft.capnp.h>
#include <client.capnp.h>

#include <string>

namespace keel::server {

// Fills `out` from `m`. A snapshot's data is left out (it travels in chunks); its metadata goes.
void toWire(const Message& m, wire::Message::Builder out);
// Converts a received message. Returns an error sentence, empty on success. The snapshot of a
// Snapshot message is left unset (the caller attaches the assembled data).
std::string fromWire(wire::Message::Reader in, Message& out);

// About the bytes `m` takes on the wire, for batching messages into calls and sizing them.
inline uint64_t wireBytes(const Message& m) {
  uint64_t b = 128;
  for (const Entry& e : m.entries) b += e.data.size() + 32;
  return b;
}
// A size hint, in words, for a message list holding `m`: sized for the entries and the
// per-message fields, so that the first segment fits instead of starting at the default 1024
// words (zero-filled) and growing.
inline uint64_t wireWords(const Message& m) { return wireBytes(m) / 8 + 24; }

// Answers go back in the returns of the calls that asked (docs/rpc.md); requests always travel
// as calls, in order on one connection. A request that expects an answer from its receiver:
inline bool expectsAnswer(MessageType t) {
  return t == MessageType::PreVote || t == MessageType::Vote || t == MessageType::Append ||
         t == MessageType::Heartbeat || t == MessageType::ReadIndex;
}
inline bool isAnswer(MessageType t) {
  return t == MessageType::PreVoteResponse || t == MessageType::VoteResponse || t == MessageType::AppendResponse ||
         t == MessageType::HeartbeatResponse || t == MessageType::ReadIndexResponse;
}

void toWire(const Membership& m, wire::Membership::Builder out);
Membership fromWire(wire::Membership::Reader in);

wire::Status toWire(Refusal r);
const char* toString(wire::Status s);

inline kj::ArrayPtr<const kj::byte> bytesOf(std::string_view s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}
inline std::string_view viewOf(capnp::Data::Reader d) {
  return std::string_view(reinterpret_cast<const char*>(d.begin()), d.size());
}

}  // namespace keel::server
