// keel-sim: a register-per-key state machine with client sessions, the simulator's stand-in
// until a key-value state machine (src/kv) lands.
//
// Commands (fields separated by '\x1f'; a value is a non-empty string, "-" means absent):
//   W client seq key value           write value
//   C client seq key expected new    compare-and-set
// Results: "ok", or for a CAS that found another value "mismatch". A command whose (client,
// seq) is not newer than the client's last applied one is not applied again: it answers the
// cached result of the last one (Raft dissertation §6.3, exactly-once semantics).
// Queries: the key; the answer is its value, or "-" when absent.
#pragma once

#include <keel/state-machine.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace keel::sim {

class RegisterMachine final : public StateMachine {
 public:
  static std::string encodeWrite(uint64_t client, uint64_t seq, const std::string& key, const std::string& value);
  static std::string encodeCas(uint64_t client, uint64_t seq, const std::string& key,
                               const std::optional<std::string>& expected, const std::string& value);

  std::string apply(Index index, std::string_view command) override;
  std::string query(std::string_view request) const override;
  void snapshot(SnapshotSink& sink) const override;
  bool restore(std::string_view snapshot) override;

  // The snapshot as one string.
  std::string snapshotBytes() const;

 private:
  struct Session {
    uint64_t seq = 0;
    std::string result;
  };
  std::map<std::string, std::string> values_;
  std::map<uint64_t, Session> sessions_;
};

}  // namespace keel::sim
