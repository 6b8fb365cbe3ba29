// Readable and JSON renderings of operations and check results.
#include <cstdio>

#include "json.h"
#include "keel/check.h"

namespace keel::checker {

namespace {

std::string shown(const std::optional<std::string>& v) {
  return v ? internal::jsonValue(v) : std::string("absent");
}

std::string seconds(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f s", std::chrono::duration<double>(d).count());
  return buf;
}

void pad(std::string& s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  s.push_back(' ');
}

}  // namespace

std::string render(const Operation& op) {
  std::string out = "p" + std::to_string(op.process);
  pad(out, 4);
  out += name(op.f);
  pad(out, 11);
  std::string key;
  internal::appendJsonString(key, op.key);
  out += key;
  out.push_back(' ');
  switch (op.f) {
    case Function::Read:
      out += op.outcome == Outcome::Ok ? "-> " + shown(op.value) : std::string("-> ?");
      break;
    case Function::Write: out += internal::jsonValue(op.value); break;
    case Function::Cas: out += shown(op.expected) + " -> " + shown(op.newValue); break;
    case Function::Delete: break;
  }
  pad(out, 40);
  out += "[" + std::to_string(op.invokeTime) + ", ";
  out += op.outcome == Outcome::Info ? std::string("inf)") : std::to_string(op.completeTime) + "]";
  pad(out, 66);
  out += name(op.outcome);
  if (op.invokeLine != 0) {
    pad(out, 71);
    out += op.completeLine != 0 ? "(lines " : "(line ";
    out += std::to_string(op.invokeLine);
    if (op.completeLine != 0) out += "-" + std::to_string(op.completeLine);
    out += ")";
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string render(const CheckResult& r) {
  std::string out = std::to_string(r.operations) + " operations, " + std::to_string(r.keys) +
                    (r.keys == 1 ? " key: " : " keys: ") + std::string(name(r.verdict)) + " (" +
                    seconds(r.elapsed) + ")\n";
  for (auto& k : r.perKey) {
    std::string key;
    internal::appendJsonString(key, k.key);
    if (k.verdict == Verdict::Unknown) {
      out += "key " + key + ": unknown, the search gave up at the timeout (" +
             std::to_string(k.states) + " states explored)\n";
    }
    if (k.verdict != Verdict::NotLinearizable) continue;
    out += "key " + key + ": these " + std::to_string(k.violation.size()) +
           " operations cannot be ordered";
    out += k.minimal ? " (removing any one of them makes the rest linearizable):\n"
                     : " (not shrunk to a minimal set: the shrinking budget ran out):\n";
    for (auto& op : k.violation) out += "  " + render(op) + "\n";
  }
  return out;
}

std::string renderJson(const CheckResult& r) {
  std::string out = "{\"verdict\":\"" + std::string(name(r.verdict)) + "\"";
  out += ",\"operations\":" + std::to_string(r.operations);
  out += ",\"keys\":" + std::to_string(r.keys);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", std::chrono::duration<double>(r.elapsed).count());
  out += ",\"seconds\":";
  out += buf;
  out += ",\"unknown_keys\":[";
  bool first = true;
  for (auto& k : r.perKey) {
    if (k.verdict != Verdict::Unknown) continue;
    if (!first) out += ",";
    first = false;
    internal::appendJsonString(out, k.key);
  }
  out += "],\"violations\":[";
  first = true;
  for (auto& k : r.perKey) {
    if (k.verdict != Verdict::NotLinearizable) continue;
    if (!first) out += ",";
    first = false;
    out += "{\"key\":";
    internal::appendJsonString(out, k.key);
    out += ",\"minimal\":";
    out += k.minimal ? "true" : "false";
    out += ",\"operations\":[";
    for (size_t i = 0; i < k.violation.size(); ++i) {
      const Operation& op = k.violation[i];
      if (i) out += ",";
      out += "{\"process\":" + std::to_string(op.process) + ",\"f\":\"" +
             std::string(name(op.f)) + "\",\"value\":";
      if (op.f == Function::Cas) {
        out += "[" + internal::jsonValue(op.expected) + "," + internal::jsonValue(op.newValue) +
               "]";
      } else if (op.f == Function::Read && op.outcome != Outcome::Ok) {
        out += "null";
      } else {
        out += internal::jsonValue(op.value);
      }
      out += ",\"outcome\":\"" + std::string(name(op.outcome)) + "\"";
      out += ",\"invoke\":" + std::to_string(op.invokeTime);
      out += ",\"complete\":";
      out += op.outcome == Outcome::Info ? std::string("null") : std::to_string(op.completeTime);
      if (op.invokeLine) out += ",\"invoke_line\":" + std::to_string(op.invokeLine);
      if (op.completeLine) out += ",\"complete_line\":" + std::to_string(op.completeLine);
      out += "}";
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

}  // namespace keel::checker
