// keel: conversions between keel::Message and wire::Message (schema/raft.capnp).
#include "wire.h"

namespace keel::server {

void toWire(const Membership& m, wire::Membership::Builder out) {
  auto put = [](const std::vector<NodeId>& ids, capnp::List<uint64_t>::Builder l) {
    for (size_t i = 0; i < ids.size(); ++i) l.set(i, ids[i].value);
  };
  put(m.voters, out.initVoters(m.voters.size()));
  put(m.outgoing, out.initOutgoing(m.outgoing.size()));
  put(m.learners, out.initLearners(m.learners.size()));
}

Membership fromWire(wire::Membership::Reader in) {
  Membership m;
  for (uint64_t v : in.getVoters()) m.voters.push_back(NodeId{v});
  for (uint64_t v : in.getOutgoing()) m.outgoing.push_back(NodeId{v});
  for (uint64_t v : in.getLearners()) m.learners.push_back(NodeId{v});
  return m;
}

void toWire(const Message& m, wire::Message::Builder out) {
  out.setType(static_cast<wire::MessageType>(m.type));
  out.setFrom(m.from.value);
  out.setTo(m.to.value);
  out.setTerm(m.term.value);
  out.setLogTerm(m.logTerm.value);
  out.setIndex(m.index.value);
  out.setCommit(m.commit.value);
  out.setReject(m.reject);
  out.setHintIndex(m.hintIndex.value);
  out.setHintTerm(m.hintTerm.value);
  out.setTransfer(m.transfer);
  out.setContext(m.context);
  if (!m.entries.empty()) {
    auto es = out.initEntries(m.entries.size());
    for (size_t i = 0; i < m.entries.size(); ++i) {
      const Entry& e = m.entries[i];
      auto w = es[i];
      w.setTerm(e.term.value);
      w.setIndex(e.index.value);
      w.setType(static_cast<wire::EntryType>(e.type));
      w.setData(bytesOf(e.data.view()));
    }
  }
  if (m.snapshot) {
    auto s = out.initSnapshotMeta();
    s.setIndex(m.snapshot->meta.index.value);
    s.setTerm(m.snapshot->meta.term.value);
    toWire(m.snapshot->meta.membership, s.initMembership());
  }
}

std::string fromWire(wire::Message::Reader in, Message& out) {
  auto type = static_cast<unsigned>(in.getType());
  if (type > static_cast<unsigned>(MessageType::ReadIndexResponse)) return "unknown message type";
  out = Message{};
  out.type = static_cast<MessageType>(type);
  out.from = NodeId{in.getFrom()};
  out.to = NodeId{in.getTo()};
  out.term = Term{in.getTerm()};
  out.logTerm = Term{in.getLogTerm()};
  out.index = Index{in.getIndex()};
  out.commit = Index{in.getCommit()};
  out.reject = in.getReject();
  out.hintIndex = Index{in.getHintIndex()};
  out.hintTerm = Term{in.getHintTerm()};
  out.transfer = in.getTransfer();
  out.context = in.getContext();
  auto es = in.getEntries();
  out.entries.reserve(es.size());
  for (auto e : es) {
    auto et = static_cast<unsigned>(e.getType());
    if (et > static_cast<unsigned>(EntryType::Membership)) return "unknown entry type";
    auto d = e.getData();
    out.entries.push_back(Entry{Term{e.getTerm()}, Index{e.getIndex()}, static_cast<EntryType>(et),
                                Bytes(d.begin(), d.size())});
  }
  return "";
}

wire::Status toWire(Refusal r) {
  switch (r) {
    case Refusal::None: return wire::Status::OK;
    case Refusal::NotLeader: return wire::Status::NOT_LEADER;
    case Refusal::TransferInProgress: return wire::Status::UNAVAILABLE;
    case Refusal::TooLarge: return wire::Status::TOO_LARGE;
    case Refusal::Dropped: return wire::Status::DROPPED;
    case Refusal::ChangePending: return wire::Status::CHANGE_PENDING;
    case Refusal::InvalidChange: return wire::Status::INVALID_CHANGE;
    case Refusal::UnknownNode: return wire::Status::UNKNOWN_NODE;
  }
  return wire::Status::UNAVAILABLE;
}

const char* toString(wire::Status s) {
  switch (s) {
    case wire::Status::OK: return "ok";
    case wire::Status::NOT_LEADER: return "not leader";
    case wire::Status::TIMEOUT: return "timeout";
    case wire::Status::UNAVAILABLE: return "unavailable";
    case wire::Status::TOO_LARGE: return "too large";
    case wire::Status::DROPPED: return "dropped";
    case wire::Status::CHANGE_PENDING: return "change pending";
    case wire::Status::INVALID_CHANGE: return "invalid change";
    case wire::Status::UNKNOWN_NODE: return "unknown node";
    case wire::Status::UNKNOWN_OUTCOME: return "unknown outcome";
  }
  return "?";
}

}  // namespace keel::server
