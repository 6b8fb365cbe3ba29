// keel example: a replicated register, a single value with get, put and compare-and-set.
//
// Commands and replies are lists of fields (../common/fields.h):
//   apply  ["put", value]             -> ["ok"]
//   apply  ["cas", expected, value]   -> ["ok"], or ["compare-failed", current]
//   query  ["get"]                    -> ["ok", value]
//   anything else                     -> ["bad-request"]
// The register starts out empty (""), so `cas "" x` sets a fresh one.
//
// Deterministic: the state is the value alone, and the snapshot is ["register", value].
#pragma once

#include <keel/state-machine.h>

#include "../common/fields.h"

#include <string>
#include <vector>

namespace keel::examples {

class RegisterMachine final : public StateMachine {
 public:
  std::string apply(Index, std::string_view command) override {
    std::vector<std::string_view> f;
    if (!decodeFields(command, f) || f.empty()) return encodeFields({"bad-request"});
    if (f[0] == "put" && f.size() == 2) {
      value_ = f[1];
      return encodeFields({"ok"});
    }
    if (f[0] == "cas" && f.size() == 3) {
      if (value_ != f[1]) return encodeFields({"compare-failed", value_});
      value_ = f[2];
      return encodeFields({"ok"});
    }
    return encodeFields({"bad-request"});
  }

  std::string query(std::string_view request) const override {
    std::vector<std::string_view> f;
    if (!decodeFields(request, f) || f.size() != 1 || f[0] != "get") return encodeFields({"bad-request"});
    return encodeFields({"ok", value_});
  }

  void snapshot(SnapshotSink& sink) const override { sink.write(encodeFields({"register", value_})); }

  bool restore(std::string_view snapshot) override {
    if (snapshot.empty()) {  // a snapshot taken before anything was applied
      value_.clear();
      return true;
    }
    std::vector<std::string_view> f;
    if (!decodeFields(snapshot, f) || f.size() != 2 || f[0] != "register") return false;
    value_ = f[1];
    return true;
  }

 private:
  std::string value_;
};

}  // namespace keel::examples
