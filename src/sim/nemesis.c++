// keel-sim: the nemesis: partitions, crashes, pauses, slow disks, membership changes and
// leadership transfers injected at random moments, and the healing of everything at the end.
#include "simulation.h"

namespace keel::sim::detail {

// ---------------------------------------------------------------------------------------------
// Nemesis

void Simulation::heal() {
  for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
  partitioned_ = false;
}

void Simulation::partition() {
  heal();
  size_t total = nodes_.size();
  auto isolate = [&](uint64_t id) {
    for (uint64_t j = 1; j <= total; ++j)
      if (j != id) blocked_[id][j] = blocked_[j][id] = true;
  };
  std::vector<uint64_t> ids;
  for (uint64_t i = 1; i <= total; ++i) ids.push_back(i);
  for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[rng_.below(i)]);
  std::string shape;
  switch (rng_.below(6)) {
    case 0:
      isolate(ids[0]);
      shape = "n" + std::to_string(ids[0]) + " isolated";
      break;
    case 1: {
      uint64_t l = leaderId();
      if (!l) l = ids[0];
      isolate(l);
      shape = "the leader n" + std::to_string(l) + " isolated";
      break;
    }
    case 2: {
      // minority | majority (of the voters at the start; spares land anywhere)
      size_t k = 1 + rng_.below(uint64_t(res_.nodes - 1) / 2);
      for (size_t a = 0; a < k; ++a)
        for (size_t b = k; b < ids.size(); ++b) blocked_[ids[a]][ids[b]] = blocked_[ids[b]][ids[a]] = true;
      shape = "split " + std::to_string(k) + "|" + std::to_string(ids.size() - k);
      break;
    }
    case 3: {
      // one-way: a node that can receive but not send, or the other way round
      uint64_t a = rng_.chance(0.5) ? (leaderId() ? leaderId() : ids[0]) : ids[0];
      bool out = rng_.chance(0.5);
      for (uint64_t j = 1; j <= total; ++j)
        if (j != a) (out ? blocked_[a][j] : blocked_[j][a]) = true;
      shape = "n" + std::to_string(a) + (out ? " cannot send" : " cannot receive");
      break;
    }
    case 4: {
      // a ring: each node hears only its two neighbours (not transitive)
      for (size_t a = 0; a < ids.size(); ++a)
        for (size_t b = 0; b < ids.size(); ++b) {
          size_t d = (a + ids.size() - b) % ids.size();
          if (a != b && d != 1 && d != ids.size() - 1) blocked_[ids[a]][ids[b]] = true;
        }
      shape = "ring";
      break;
    }
    default: {
      // random one-way links
      int links = int(1 + rng_.below(total * 2));
      for (int i = 0; i < links; ++i) {
        uint64_t a = 1 + rng_.below(total), b = 1 + rng_.below(total);
        if (a != b) blocked_[a][b] = true;
      }
      shape = "random one-way cuts";
      break;
    }
  }
  partitioned_ = true;
  res_.partitions++;
  for (Node& n : nodes_) {
    Trace t(Trace::Membership);
    t.text = "network: " + shape;
    trace(n, std::move(t));
  }
}

void Simulation::membershipChange() {
  uint64_t l = leaderId();
  if (!l) return;
  Node& n = node(l);
  const Membership& m = n.core->membership();
  std::vector<NodeId> spares;
  for (Node& x : nodes_)
    if (!m.contains(x.id)) spares.push_back(x.id);
  std::vector<MembershipChange> ch;
  auto pick = [&](const std::vector<NodeId>& v) { return v[rng_.below(v.size())]; };
  switch (rng_.below(5)) {
    case 0:
      if (!spares.empty()) ch.push_back({MembershipChange::Kind::AddLearner, pick(spares)});
      break;
    case 1:
      if (!m.learners.empty()) ch.push_back({MembershipChange::Kind::AddVoter, pick(m.learners)});
      break;
    case 2:
      if (m.voters.size() > 3) ch.push_back({MembershipChange::Kind::Remove, pick(m.voters)});
      break;
    case 3:
      if (!m.learners.empty()) ch.push_back({MembershipChange::Kind::Remove, pick(m.learners)});
      break;
    default:
      if (!spares.empty()) {
        ch.push_back({MembershipChange::Kind::Remove, pick(m.voters)});
        ch.push_back({MembershipChange::Kind::AddVoter, pick(spares)});
      }
      break;
  }
  if (ch.empty()) return;
  keel::Result r = n.core->proposeMembership(ch);
  Trace t(Trace::Membership);
  std::string what;
  for (auto& c : ch)
    what += std::string(c.kind == MembershipChange::Kind::AddVoter     ? " add-voter n"
                        : c.kind == MembershipChange::Kind::AddLearner ? " add-learner n"
                                                                       : " remove n") +
            std::to_string(c.node.value);
  t.text = "membership change" + what + ": " + (r.ok() ? "proposed at " + std::to_string(r.index.value) : toString(r.refusal));
  trace(n, std::move(t));
  if (r.ok()) res_.membershipChanges++;
  processReadies(n);
}

void Simulation::nemesis() {
  schedule(now_ + rng_.range(10 * kMs, 150 * kMs), Event::Nemesis);
  std::vector<uint32_t> kinds;
  for (uint32_t b = 1; b < kAllFaults; b <<= 1)
    if ((o_.faults & b) && b != kTornWrites && b != kHeldReads) kinds.push_back(b);  // standing properties of the run
  if (kinds.empty()) return;
  uint32_t k = kinds[rng_.below(kinds.size())];
  size_t total = nodes_.size();
  auto randomNode = [&]() -> Node& {
    if (rng_.chance(0.3))
      if (uint64_t l = leaderId()) return node(l);
    return node(1 + rng_.below(total));
  };
  switch (k) {
    case kNetwork: {
      static const double kLoss[] = {0, 0, 0.01, 0.05, 0.2};
      static const double kDup[] = {0, 0, 0.02, 0.1};
      static const double kLong[] = {0, 0, 0.02, 0.1};
      loss_ = kLoss[rng_.below(5)];
      dup_ = kDup[rng_.below(4)];
      longDelay_ = kLong[rng_.below(4)];
      break;
    }
    case kPartitions:
      if (partitioned_ && rng_.chance(0.5)) {
        heal();
        for (Node& n : nodes_) trace(n, Trace(Trace::Membership, "network: healed"));
      } else {
        partition();
      }
      break;
    case kCrashes: {
      Node& n = randomNode();
      if (!n.up()) break;
      crash(n);
      schedule(now_ + rng_.range(5 * kMs, 600 * kMs), Event::Restart, n.id.value, n.epoch);
      break;
    }
    case kPauses: {
      Node& n = randomNode();
      if (!n.up() || n.paused) break;
      n.paused = true;
      res_.pauses++;
      trace(n, Trace(Trace::Pause, "paused"));
      schedule(now_ + rng_.range(20 * kMs, 500 * kMs), Event::Resume, n.id.value, n.epoch);
      break;
    }
    case kSlowDisk: {
      Node& n = randomNode();
      n.diskFactor = rng_.range(10, 100);
      trace(n, Trace(Trace::SlowDisk, "disk slows down x" + std::to_string(n.diskFactor)));
      schedule(now_ + rng_.range(200 * kMs, 2000 * kMs), Event::DiskNormal, n.id.value);
      break;
    }
    case kMembership: membershipChange(); break;
    case kTransfers: {
      uint64_t l = leaderId();
      if (!l) break;
      Node& n = node(l);
      const auto& voters = n.core->membership().voters;
      NodeId to = voters[rng_.below(voters.size())];
      keel::Result r = n.core->transferLeadership(to);
      trace(n, Trace(Trace::Transfer, "transfers leadership to n" + std::to_string(to.value) + ": " + toString(r.refusal)));
      if (r.ok()) res_.transfers++;
      processReadies(n);
      break;
    }
    case kSnapshots: {
      Node& n = node(1 + rng_.below(total));
      if (!n.up() || n.syncing || n.paused || n.compacting || n.smApplied != n.core->appliedIndex() ||
          n.smApplied < n.log->firstIndex())
        break;
      if (rng_.chance(0.5)) {
        // Sliced, as keel-server does: the node applies entries between the slices.
        auto c = std::make_unique<Compaction>();
        c->meta = n.core->snapshotMeta();
        c->expected = snapshotOf(n.sm, kvOptions_.snapshotChunkBytes);
        c->sink = std::make_unique<StringSink>(kvOptions_.snapshotChunkBytes);
        c->job = n.sm.beginSnapshot(*c->sink);
        n.compacting = std::move(c);
        compactStep(n);
        break;
      }
      compact(n, Snapshot{n.core->snapshotMeta(), Bytes(snapshotOf(n.sm, kvOptions_.snapshotChunkBytes))});
      break;
    }
  }
}

void Simulation::healAll() {
  healed_ = true;
  healTime_ = now_;
  heal();
  loss_ = dup_ = longDelay_ = 0;
  for (Node& n : nodes_) {
    n.diskFactor = 1;
    if (!n.up()) {
      restart(n);
    } else if (n.paused) {
      Event e;
      e.kind = Event::Resume;
      e.node = n.id.value;
      e.epoch = n.epoch;
      dispatch(e);
    }
    trace(n, Trace(Trace::Membership, "everything heals"));
  }
  retireRemoved();
}

// The operator shuts down the servers that no voter counts as a member any more: a removed
// server that does not know it was removed would disrupt the cluster with elections when
// neither pre-vote nor check-quorum is on (diss. §4.2.3), or, if it still believes it leads,
// go on taking writes that never commit, its heartbeats of a stale term ignored (seeds 20155
// and 75524). Whose word counts: the members of the configuration of the node that committed
// the most, and the voters among them. A removed server still in the joint configuration it
// never saw end counts itself a voter; its word does not count (seed 1964). At the heal, and
// on every tick after it: a change proposed before the heal may complete after it.
void Simulation::retireRemoved() {
  const Node* ref = nullptr;
  for (Node& n : nodes_)
    if (n.up() && (!ref || n.core->commitIndex() > ref->core->commitIndex())) ref = &n;
  std::vector<bool> member(nodes_.size() + 1, false);
  if (ref)
    for (NodeId m : ref->core->membership().members()) member[m.value] = true;
  std::vector<bool> counted = member;
  for (Node& n : nodes_) {
    if (!n.up() || !counted[n.id.value] || !n.core->membership().isVoter(n.id)) continue;
    for (NodeId m : n.core->membership().members()) member[m.value] = true;
  }
  for (Node& n : nodes_) {
    if (member[n.id.value] || !n.up()) continue;
    crash(n);
    n.retired = true;
    trace(n, Trace(Trace::Crash, "retired: not a member"));
  }
}

}  // namespace keel::sim::detail
