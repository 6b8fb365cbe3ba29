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
