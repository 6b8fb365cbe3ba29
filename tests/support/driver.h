// keel tests: drive one consensus module by hand.
//
// A Driver owns a MemoryLog and the Consensus reading it. Tests step hand-built messages into
// it and call drain(), which runs the Ready loop the way a server does (persist, then collect
// the messages, apply, advance) and returns everything the node produced. This is how the
// paper's rules are tested one sentence at a time, without a network: the test plays the
// other nodes. Header-only so that any test binary linking keel_testing can use it.
#pragma once

#include <keel/consensus.h>
#include <keel/memory-log.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace keel::testing {

// What a node produced over one or more Readies.
struct Output {
  std::vector<Message> messages;  // Ready::messages and messagesAfterPersist, in Ready order
  std::vector<Entry> entries;     // appended to the log
  std::vector<Entry> committed;   // handed out to apply
  std::vector<ReadState> reads;
  std::optional<HardState> hardState;  // the last one persisted
  std::optional<SnapshotMeta> snapshot;  // a snapshot installed

  void append(const Output& o) {
    messages.insert(messages.end(), o.messages.begin(), o.messages.end());
    entries.insert(entries.end(), o.entries.begin(), o.entries.end());
    committed.insert(committed.end(), o.committed.begin(), o.committed.end());
    reads.insert(reads.end(), o.reads.begin(), o.reads.end());
    if (o.hardState) hardState = o.hardState;
    if (o.snapshot) snapshot = o.snapshot;
  }

  // The messages of one type, sorted by destination.
  std::vector<Message> of(MessageType t) const {
    std::vector<Message> v;
    for (const Message& m : messages)
      if (m.type == t) v.push_back(m);
    std::stable_sort(v.begin(), v.end(), [](const Message& a, const Message& b) { return a.to < b.to; });
    return v;
  }
};

inline Membership votersOf(std::initializer_list<uint64_t> ids, std::initializer_list<uint64_t> learners = {}) {
  Membership m;
  for (uint64_t id : ids) m.voters.push_back(NodeId{id});
  for (uint64_t id : learners) m.learners.push_back(NodeId{id});
  std::sort(m.voters.begin(), m.voters.end());
  std::sort(m.learners.begin(), m.learners.end());
  return m;
}

// Entries {term, index} with no data, the way the paper's figures draw logs.
inline std::vector<Entry> entriesOfTerms(std::initializer_list<uint64_t> terms, uint64_t first = 1) {
  std::vector<Entry> v;
  for (uint64_t t : terms) v.push_back(Entry{Term{t}, Index{first + v.size()}, EntryType::Normal, Bytes()});
  return v;
}

inline std::vector<uint64_t> termsOf(const Log& log) {
  std::vector<uint64_t> v;
  for (Index i = log.firstIndex(); i <= log.lastIndex(); i = i.next()) v.push_back(log.term(i).value);
  return v;
}

class Driver {
 public:
  // Node `id` of a cluster whose configuration is `membership`; its log starts with
  // `entries` and `hs`. `tweak` adjusts the Config (electionTicks 10, heartbeatTicks 1,
  // seed 42 by default).
  Driver(uint64_t id, Membership membership, std::vector<Entry> entries = {}, HardState hs = {},
         std::function<void(Config&)> tweak = {})
      : log(std::move(membership)) {
    cfg.id = NodeId{id};
    cfg.seed = 42;
    if (tweak) tweak(cfg);
    log.append(entries);
    log.setHardState(hs);
    node = std::make_unique<Consensus>(cfg, log);
  }

  Consensus& operator*() { return *node; }
  Consensus* operator->() { return node.get(); }

  // Runs every Ready, persisting it, and returns what it held.
  Output drain() {
    Output out;
    while (node->hasReady()) {
      const Ready& rd = node->ready();
      for (const Message& m : rd.messages) out.messages.push_back(m);
      if (rd.snapshot) {
        log.installSnapshot(*rd.snapshot);
        out.snapshot = rd.snapshot->meta;
      }
      if (rd.hardState) {
        log.setHardState(*rd.hardState);
        out.hardState = rd.hardState;
      }
      log.append(rd.entries);
      out.entries.insert(out.entries.end(), rd.entries.begin(), rd.entries.end());
      log.sync();
      for (const Message& m : rd.messagesAfterPersist) out.messages.push_back(m);
      out.committed.insert(out.committed.end(), rd.committed.begin(), rd.committed.end());
      out.reads.insert(out.reads.end(), rd.readStates.begin(), rd.readStates.end());
      node->advance();
    }
    return out;
  }

  void step(Message m) {
    m.to = cfg.id;
    node->step(m);
  }

  // Wins an election by playing the other voters (each grants). With pre-vote, the pre-vote
  // round is won first. Returns everything the node produced (its first Appends included).
  Output elect() {
    node->campaign();
    Output all;
    for (int round = 0; round < 3; ++round) {
      Output o = drain();
      all.append(o);
      for (const Message& m : o.messages) {
        if (m.type != MessageType::PreVote && m.type != MessageType::Vote) continue;
        Message r;
        r.type = m.type == MessageType::PreVote ? MessageType::PreVoteResponse : MessageType::VoteResponse;
        r.from = m.to;
        r.term = m.term;
        step(r);
      }
    }
    all.append(drain());
    return all;
  }

  // Answers every Append the node sends to a node in `acceptors` with a success, until the
  // node sends no more Appends to them; returns what it produced on the way.
  Output acceptAppends(const std::vector<uint64_t>& acceptors, Output pending = {}) {
    Output all;
    for (int guard = 0; guard < 100; ++guard) {
      bool any = false;
      for (const Message& m : pending.messages) {
        if (m.type != MessageType::Append) continue;
        if (std::find(acceptors.begin(), acceptors.end(), m.to.value) == acceptors.end()) continue;
        step(acceptAndReply(m));
        any = true;
      }
      pending = drain();
      all.append(pending);
      if (!any) break;
    }
    return all;
  }

  // The success answer to Append m from its addressee.
  static Message acceptAndReply(const Message& m) {
    Message r;
    r.type = MessageType::AppendResponse;
    r.from = m.to;
    r.to = m.from;
    r.term = m.term;
    r.index = m.index + m.entries.size();
    return r;
  }

  Config cfg;
  MemoryLog log;
  std::unique_ptr<Consensus> node;
};

// A hand-built message from `from` at `term`.
inline Message msg(MessageType type, uint64_t from, uint64_t term) {
  Message m;
  m.type = type;
  m.from = NodeId{from};
  m.term = Term{term};
  return m;
}

}  // namespace keel::testing
