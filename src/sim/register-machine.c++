#include "register-machine.h"

#include <stdexcept>
#include <vector>

namespace keel::sim {

namespace {
constexpr char kSep = '\x1f';

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(kSep, start);
    if (p == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
}

uint64_t number(std::string_view s) {
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') throw std::invalid_argument("RegisterMachine: bad number");
    v = v * 10 + uint64_t(c - '0');
  }
  return v;
}

class StringSink final : public SnapshotSink {
 public:
  std::string out;
  void write(std::string_view chunk) override { out.append(chunk); }
};
}  // namespace

std::string RegisterMachine::encodeWrite(uint64_t client, uint64_t seq, const std::string& key, const std::string& value) {
  return "W" + std::string(1, kSep) + std::to_string(client) + kSep + std::to_string(seq) + kSep + key + kSep + value;
}

std::string RegisterMachine::encodeCas(uint64_t client, uint64_t seq, const std::string& key,
                                       const std::optional<std::string>& expected, const std::string& value) {
  return "C" + std::string(1, kSep) + std::to_string(client) + kSep + std::to_string(seq) + kSep + key + kSep +
         (expected ? *expected : "-") + kSep + value;
}

std::string RegisterMachine::apply(Index, std::string_view command) {
  if (command.empty()) return {};  // not ours (membership entries never get here)
  auto f = split(command);
  if (f.size() < 5) throw std::invalid_argument("RegisterMachine: malformed command");
  uint64_t client = number(f[1]), seq = number(f[2]);
  Session& s = sessions_[client];
  if (seq <= s.seq) return s.result;  // a retry of an applied command: answer it again
  std::string key(f[3]);
  std::string result = "ok";
  if (f[0] == "W") {
    values_[key] = std::string(f[4]);
  } else if (f[0] == "C" && f.size() == 6) {
    auto it = values_.find(key);
    bool match = f[4] == "-" ? it == values_.end() : (it != values_.end() && it->second == f[4]);
    if (match) {
      values_[key] = std::string(f[5]);
    } else {
      result = "mismatch";
    }
  } else {
    throw std::invalid_argument("RegisterMachine: unknown command");
  }
  s.seq = seq;
  s.result = result;
  return result;
}

std::string RegisterMachine::query(std::string_view key) const {
  auto it = values_.find(std::string(key));
  return it == values_.end() ? "-" : it->second;
}

// The snapshot: lines "v key value" and "s client seq result".
void RegisterMachine::snapshot(SnapshotSink& sink) const {
  for (auto& [k, v] : values_) sink.write("v" + std::string(1, kSep) + k + kSep + v + "\n");
  for (auto& [c, s] : sessions_)
    sink.write("s" + std::string(1, kSep) + std::to_string(c) + kSep + std::to_string(s.seq) + kSep + s.result + "\n");
}

std::string RegisterMachine::snapshotBytes() const {
  StringSink sink;
  snapshot(sink);
  return sink.out;
}

bool RegisterMachine::restore(std::string_view snapshot) {
  std::map<std::string, std::string> values;
  std::map<uint64_t, Session> sessions;
  size_t start = 0;
  while (start < snapshot.size()) {
    size_t end = snapshot.find('\n', start);
    if (end == std::string_view::npos) return false;
    auto f = split(snapshot.substr(start, end - start));
    start = end + 1;
    if (f.size() == 3 && f[0] == "v") {
      values[std::string(f[1])] = std::string(f[2]);
    } else if (f.size() == 4 && f[0] == "s") {
      sessions[number(f[1])] = Session{number(f[2]), std::string(f[3])};
    } else {
      return false;
    }
  }
  values_ = std::move(values);
  sessions_ = std::move(sessions);
  return true;
}

}  // namespace keel::sim
