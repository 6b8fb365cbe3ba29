#include "tracker.h"

#include <algorithm>

namespace keel {

bool Peer::paused() const {
  switch (state) {
    case Progress::State::Probe: return probeSent;
    case Progress::State::Replicate: return inflights.full();
    case Progress::State::Snapshot: return true;
  }
  return true;
}

void Peer::becomeProbe() {
  // After a snapshot, probe from just past it; otherwise from just past what matches.
  if (state == Progress::State::Snapshot) {
    next = std::max(match.next(), pendingSnapshot.next());
  } else {
    next = match.next();
  }
  state = Progress::State::Probe;
  probeSent = false;
  pendingSnapshot = Index{};
  inflights.reset();
}

void Peer::becomeReplicate() {
  state = Progress::State::Replicate;
  next = match.next();
  probeSent = false;
  pendingSnapshot = Index{};
  inflights.reset();
}

void Peer::becomeSnapshot(Index snapshotIndex) {
  state = Progress::State::Snapshot;
  probeSent = false;
  pendingSnapshot = snapshotIndex;
  snapshotTicks = 0;
  inflights.reset();
}

bool Peer::maybeUpdate(Index index) {
  bool updated = false;
  if (match < index) {
    match = index;
    updated = true;
    probeSent = false;
  }
  if (next < index.next()) next = index.next();
  return updated;
}

bool Peer::maybeDecrTo(Index rejected, Index hint) {
  if (state == Progress::State::Replicate) {
    // A rejection of something at or below match is stale (reordered or duplicated).
    if (rejected <= match) return false;
    next = match.next();
    return true;
  }
  // Probe: only the answer to the probe in flight counts.
  if (next.prev() != rejected) return false;
  next = std::max(std::min(rejected, hint.next()), Index{1});
  probeSent = false;
  return true;
}

}  // namespace keel
