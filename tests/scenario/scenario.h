// Helpers shared by the multi-node scenario tests. Every scenario runs on the Cluster harness,
// whose InvariantChecker (Election Safety, Leader Append-Only, Log Matching, Leader
// Completeness, State Machine Safety, commit never moves back, applied never passes commit)
// runs after every round of message delivery.
#pragma once

#include "cluster.h"
#include "driver.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace keel::testing {

// The paper's algorithm: no pre-vote, no check-quorum (§5 has neither).
inline void paperConfig(Config& c) {
  c.preVote = false;
  c.checkQuorum = false;
}

// `ticks` ticks of every live node, the network pumped after each.
inline void run(Cluster& c, size_t ticks) {
  for (size_t i = 0; i < ticks; ++i) {
    c.tickAll();
    c.pump();
  }
}

// Entries' terms in a node's durable log.
inline std::vector<uint64_t> logTerms(Cluster& c, uint64_t id) { return termsOf(*c.node(id).log); }

// True when every live member holds the same log, commit and applied index as the leader.
inline ::testing::AssertionResult converged(Cluster& c) {
  NodeId l = c.leader();
  if (!l) return ::testing::AssertionFailure() << "no leader\n" << c.describe();
  Consensus& lead = c[l.value];
  for (NodeId id : c.ids()) {
    Cluster::Node& n = c.node(id.value);
    if (!n.core || !lead.membership().contains(id)) continue;
    if (n.core->commitIndex() != lead.commitIndex() || n.appliedIndex != lead.commitIndex() ||
        n.log->lastIndex() != c.node(l.value).log->lastIndex() ||
        n.log->term(n.log->lastIndex()) != c.node(l.value).log->term(n.log->lastIndex()))
      return ::testing::AssertionFailure() << toString(id) << " differs from the leader\n" << c.describe();
  }
  return ::testing::AssertionSuccess();
}

// Ticks and pumps until converged() (at most maxTicks ticks).
inline ::testing::AssertionResult settle(Cluster& c, size_t maxTicks = 200) {
  for (size_t i = 0; i < maxTicks; ++i) {
    c.tickAll();
    c.pump();
    if (converged(c)) return ::testing::AssertionSuccess();
  }
  return converged(c);
}

inline std::vector<std::string> appliedData(Cluster& c, uint64_t id) { return dataOf(c.node(id).applied); }

inline Result change(Consensus& node, MembershipChange::Kind kind, uint64_t id) {
  MembershipChange ch{kind, NodeId{id}};
  return node.proposeMembership(std::span(&ch, 1));
}

}  // namespace keel::testing
