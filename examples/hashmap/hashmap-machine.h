// keel example: a replicated hash map (std::unordered_map) with get, put, del and
// compare-and-set.
//
// Commands and replies are lists of fields (../common/fields.h):
//   apply  ["put", key, value]            -> ["ok"]
//   apply  ["del", key]                   -> ["ok"], or ["not-found"]
//   apply  ["cas", key, expected, value]  -> ["ok"], ["not-found"], or ["compare-failed", current]
//   query  ["get", key]                   -> ["ok", value], or ["not-found"]
//   anything else                         -> ["bad-request"]
//
// Deterministic: apply depends on the map's contents alone, never on its iteration order; the
// snapshot writes the entries sorted by key (an unordered_map's order depends on its history,
// which differs between a node that applied the log and one that restored a snapshot), as
// ["hashmap", count] then one [key, value] chunk per entry.
#pragma once

#include <keel/state-machine.h>

#include "../common/fields.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

namespace keel::examples {

class HashMapMachine final : public StateMachine {
 public:
  std::string apply(Index, std::string_view command) override {
    std::vector<std::string_view> f;
    if (!decodeFields(command, f) || f.empty()) return encodeFields({"bad-request"});
    if (f[0] == "put" && f.size() == 3) {
      map_[std::string(f[1])] = f[2];
      return encodeFields({"ok"});
    }
    if (f[0] == "del" && f.size() == 2) {
      return encodeFields({map_.erase(std::string(f[1])) ? "ok" : "not-found"});
    }
    if (f[0] == "cas" && f.size() == 4) {
      auto it = map_.find(std::string(f[1]));
      if (it == map_.end()) return encodeFields({"not-found"});
      if (it->second != f[2]) return encodeFields({"compare-failed", it->second});
      it->second = f[3];
      return encodeFields({"ok"});
    }
    return encodeFields({"bad-request"});
  }

  std::string query(std::string_view request) const override {
    std::vector<std::string_view> f;
    if (!decodeFields(request, f) || f.size() != 2 || f[0] != "get") return encodeFields({"bad-request"});
    auto it = map_.find(std::string(f[1]));
    if (it == map_.end()) return encodeFields({"not-found"});
    return encodeFields({"ok", it->second});
  }

  void snapshot(SnapshotSink& sink) const override {
    std::vector<const std::pair<const std::string, std::string>*> sorted;
    for (const auto& kv : map_) sorted.push_back(&kv);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
    sink.write(encodeFields({"hashmap", std::to_string(sorted.size())}));
    for (const auto* kv : sorted) sink.write(encodeFields({kv->first, kv->second}));
  }

  bool restore(std::string_view snapshot) override {
    std::vector<std::string_view> f;
    if (!decodeFields(snapshot, f)) return false;
    if (f.empty()) {  // a snapshot taken before anything was applied
      map_.clear();
      return true;
    }
    if (f.size() < 2 || f[0] != "hashmap" || f[1] != std::to_string((f.size() - 2) / 2) || f.size() % 2) return false;
    std::unordered_map<std::string, std::string> map;
    for (size_t i = 2; i < f.size(); i += 2) map.emplace(f[i], f[i + 1]);
    map_ = std::move(map);
    return true;
  }

  size_t size() const { return map_.size(); }

 private:
  std::unordered_map<std::string, std::string> map_;
};

}  // namespace keel::examples
