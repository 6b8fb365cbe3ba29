// The History builder and its JSON Lines writer.
#include <algorithm>
#include <ostream>
#include <tuple>

#include "json.h"
#include "keel/check.h"

namespace keel::checker {

std::string_view name(Function f) {
  switch (f) {
    case Function::Read: return "read";
    case Function::Write: return "write";
    case Function::Cas: return "cas";
    case Function::Delete: return "delete";
  }
  return "?";
}

std::string_view name(Outcome o) {
  switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::Fail: return "fail";
    case Outcome::Info: return "info";
  }
  return "?";
}

std::string_view name(Verdict v) {
  switch (v) {
    case Verdict::Linearizable: return "linearizable";
    case Verdict::NotLinearizable: return "not linearizable";
    case Verdict::Unknown: return "unknown";
  }
  return "?";
}

namespace internal {

void appendJsonString(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string jsonValue(const std::optional<std::string>& v) {
  if (!v) return "null";
  std::string out;
  appendJsonString(out, *v);
  return out;
}

}  // namespace internal

History::Handle History::invoke(Operation op) {
  op.id = ops_.size();
  op.outcome = Outcome::Info;
  op.completeTime = kInfinite;
  ops_.push_back(std::move(op));
  completed_.push_back(false);
  return ops_.size() - 1;
}

History::Handle History::invokeRead(uint64_t process, std::string key, Time time) {
  Operation op;
  op.process = process;
  op.f = Function::Read;
  op.key = std::move(key);
  op.invokeTime = time;
  return invoke(std::move(op));
}

History::Handle History::invokeWrite(uint64_t process, std::string key, std::string value,
                                     Time time) {
  Operation op;
  op.process = process;
  op.f = Function::Write;
  op.key = std::move(key);
  op.value = std::move(value);
  op.invokeTime = time;
  return invoke(std::move(op));
}

History::Handle History::invokeCas(uint64_t process, std::string key,
                                   std::optional<std::string> expected,
                                   std::optional<std::string> newValue, Time time) {
  Operation op;
  op.process = process;
  op.f = Function::Cas;
  op.key = std::move(key);
  op.expected = std::move(expected);
  op.newValue = std::move(newValue);
  op.invokeTime = time;
  return invoke(std::move(op));
}

History::Handle History::invokeDelete(uint64_t process, std::string key, Time time) {
  Operation op;
  op.process = process;
  op.f = Function::Delete;
  op.key = std::move(key);
  op.invokeTime = time;
  return invoke(std::move(op));
}

void History::complete(Handle h, Outcome outcome, Time time,
                       std::optional<std::string> readValue) {
  if (h >= ops_.size()) throw std::invalid_argument("History::complete: unknown operation");
  if (completed_[h]) throw std::invalid_argument("History::complete: operation already completed");
  Operation& op = ops_[h];
  if (time < op.invokeTime) {
    throw std::invalid_argument("History::complete: completion before invocation");
  }
  op.outcome = outcome;
  op.completeTime = time;
  if (op.f == Function::Read) op.value = std::move(readValue);
  completed_[h] = true;
}

History::Handle History::add(Operation op) {
  if (op.completeTime < op.invokeTime) {
    throw std::invalid_argument("History::add: completion before invocation");
  }
  op.id = ops_.size();
  bool done = op.completeTime != kInfinite;
  if (!done) op.outcome = Outcome::Info;
  ops_.push_back(std::move(op));
  completed_.push_back(done);
  return ops_.size() - 1;
}

void History::writeJsonLines(std::ostream& out) const {
  // (time, 0 = invocation / 1 = completion, operation)
  std::vector<std::tuple<Time, int, size_t>> events;
  events.reserve(ops_.size() * 2);
  for (size_t i = 0; i < ops_.size(); ++i) {
    events.emplace_back(ops_[i].invokeTime, 0, i);
    if (completed_[i]) events.emplace_back(ops_[i].completeTime, 1, i);
  }
  std::sort(events.begin(), events.end());
  std::string line;
  for (auto& [time, kind, i] : events) {
    const Operation& op = ops_[i];
    line.clear();
    line += "{\"process\":" + std::to_string(op.process) + ",\"type\":\"";
    line += kind == 0 ? "invoke" : name(op.outcome);
    line += "\",\"f\":\"";
    line += name(op.f);
    line += "\",\"key\":";
    internal::appendJsonString(line, op.key);
    line += ",\"value\":";
    switch (op.f) {
      case Function::Read:
        line += kind == 1 && op.outcome == Outcome::Ok ? internal::jsonValue(op.value) : "null";
        break;
      case Function::Write: line += internal::jsonValue(op.value); break;
      case Function::Cas:
        line += "[" + internal::jsonValue(op.expected) + "," + internal::jsonValue(op.newValue) +
                "]";
        break;
      case Function::Delete: line += "null"; break;
    }
    line += ",\"time\":" + std::to_string(time) + "}\n";
    out << line;
  }
}

}  // namespace keel::checker
