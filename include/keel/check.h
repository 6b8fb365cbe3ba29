// keel-check: a linearizability checker for register-per-key operation histories.
//
// A history is what a set of concurrent clients did to a key-value store: for each operation,
// who issued it (the process), what it was (read, write, compare-and-set, delete of one key),
// when it was invoked, when it completed and how (ok, fail, info), and what a read returned.
// The checker decides whether there is a total order of the operations that (a) respects real
// time (an operation that completed before another was invoked comes first) and (b) is legal
// for the model, a register per key. If there is, the history is linearizable. This file is
// the specification; docs/testing.md ("Linearizability checker") tells how to use it and the
// file format is /work/shared/testing/HISTORY-FORMAT.md (JSON Lines, one event per line).
//
// The model, per key (keys are independent: linearizability is compositional, so each key's
// sub-history is checked on its own):
//   - The value of a key is a string or absent. Initially absent.
//   - write(v)          sets the value to v.
//   - delete            makes the value absent.
//   - cas(e, n)         if the value equals e (absent when e is nullopt), sets it to n; an
//                       operation recorded `ok` must have found e there.
//   - read -> r         returns the value (nullopt: absent); it must equal the value.
//
// The outcomes (what the client learned):
//   - Ok:   the operation took effect, atomically, at some instant between its invocation and
//           its completion.
//   - Fail: the operation certainly did not take effect. It is dropped from the check (as
//           Knossos and Porcupine do). A failed read tells nothing and is dropped as well.
//   - Info: unknown (a timeout, a lost connection, a crashed node). The operation may have
//           taken effect at any instant after its invocation (also after the end of the
//           history), or never. The checker treats its completion as +infinity and may leave it
//           out of the order. A read that ended in info is dropped: it returned nothing. An
//           operation invoked and never completed by the end of the history is info.
//
// The algorithm: Wing & Gong's search over the entry list of invocations and completions
// (sorted by time; a completion and an invocation at the same instant count as concurrent),
// with Lowe's memoisation of (set of linearized operations, model state) and P-compositionality
// (one search per key), as in Porcupine. States are interned: a value is a small integer.
// Info writes whose value nobody observed are removed before the search (they can always be
// left out without changing the verdict). For a violation the checker then shrinks the key's
// sub-history to a small set of operations that still cannot be ordered (delta debugging,
// bounded in time; see CheckOptions::shrinkTimeout): "small" is 1-minimal when the budget
// suffices, meaning that removing any one operation (together with the writes of the values it
// observed, which are never removed on their own) makes the rest linearizable.
//
// Thread safety: a History is a value; check() reads it and touches no global state, so
// several checks may run concurrently on different threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace keel::checker {

// Nanoseconds on one monotonic clock for the whole history (the simulator's logical time or
// the harness's clock). Only the order of times matters.
using Time = int64_t;
// The completion time of an operation that has no known completion (info or pending).
inline constexpr Time kInfinite = std::numeric_limits<Time>::max();

enum class Function { Read, Write, Cas, Delete };
enum class Outcome { Ok, Fail, Info };

std::string_view name(Function f);  // "read", "write", "cas", "delete"
std::string_view name(Outcome o);   // "ok", "fail", "info"

// One operation: its invocation and (if known) its completion. `nullopt` values mean "absent"
// (a missing key, a delete, a cas from or to absent).
struct Operation {
  uint64_t process = 0;
  Function f = Function::Read;
  std::string key;
  // write: the value written. read: the value read (only meaningful when outcome is Ok).
  std::optional<std::string> value;
  // cas only: the value expected and the value to set.
  std::optional<std::string> expected;
  std::optional<std::string> newValue;
  Time invokeTime = 0;
  // When the completion was recorded; kInfinite if the operation never completed. For an Info
  // operation this is only when the client gave up: the checker treats it as +infinity.
  Time completeTime = kInfinite;
  Outcome outcome = Outcome::Info;
  // The operation's position in its History (the handle invoke() returned).
  size_t id = 0;
  // For a history read from a file: the lines of the invocation and the completion (0: none).
  size_t invokeLine = 0;
  size_t completeLine = 0;
};

// A history under construction or read from a file. The simulator records into it in-process:
//
//   History h;
//   auto op = h.invokeWrite(/*process*/ 3, "k7", "v42", now());
//   ...
//   h.complete(op, Outcome::Ok, now());
//   auto rd = h.invokeRead(1, "k7", now());
//   h.complete(rd, Outcome::Ok, now(), "v42");   // the value read; nullopt: absent
//
// Operations not completed when the history is checked count as info.
class History {
 public:
  using Handle = size_t;

  Handle invokeRead(uint64_t process, std::string key, Time time);
  Handle invokeWrite(uint64_t process, std::string key, std::string value, Time time);
  Handle invokeCas(uint64_t process, std::string key, std::optional<std::string> expected,
                   std::optional<std::string> newValue, Time time);
  Handle invokeDelete(uint64_t process, std::string key, Time time);

  // Records the completion of `op`. `readValue` is the value a read returned (ignored for other
  // functions). Throws std::invalid_argument if `op` is not a handle of this history, is
  // already completed, or `time` is before its invocation.
  void complete(Handle op, Outcome outcome, Time time,
                std::optional<std::string> readValue = std::nullopt);

  // Appends a fully described operation (its id is set to its position). Throws
  // std::invalid_argument if completeTime < invokeTime.
  Handle add(Operation op);

  const std::vector<Operation>& operations() const { return ops_; }
  size_t size() const { return ops_.size(); }
  bool completed(Handle op) const { return completed_.at(op); }

  // Writes the history as JSON Lines in the format parseHistory() reads: one event per line,
  // ordered by time (invocations before completions at equal times).
  void writeJsonLines(std::ostream& out) const;

 private:
  Handle invoke(Operation op);
  std::vector<Operation> ops_;
  std::vector<bool> completed_;
};

// Bad input: `line` is the 1-based line of the offending event (0 if not tied to a line).
// what() is "line N: what is wrong".
class ParseError : public std::runtime_error {
 public:
  ParseError(size_t line, const std::string& message);
  size_t line() const { return line_; }
  const std::string& message() const { return message_; }

 private:
  size_t line_;
  std::string message_;
};

// Reads a JSON Lines history (see HISTORY-FORMAT.md): one object per line with the fields
// process (non-negative integer), type ("invoke", "ok", "fail", "info"), f ("read", "write",
// "cas", "delete"), key (string), value (string or null; for cas an array [expected, new] of
// strings or nulls) and time (integer). Other fields are ignored; blank lines are skipped.
// Events are ordered by `time`, not by line (equal times are concurrent). Throws ParseError
// for malformed JSON, a missing or mistyped field, a completion with no outstanding invocation
// on its process, a second invocation while one is outstanding on the same process, a
// completion whose f, key or (for write/cas) value differs from its invocation, or a completion
// timed before its invocation. Invocations left outstanding at the end are info.
History parseHistory(std::istream& in);
History parseHistory(std::string_view text);

struct CheckOptions {
  // Give up (verdict Unknown) after this long; zero: never give up.
  std::chrono::milliseconds timeout{0};
  // Shrink a violation to a small set of operations.
  bool shrink = true;
  // Stop shrinking after this long (keeping the smallest set found so far); the budget is
  // shared by all the keys that are not linearizable. Zero: no limit.
  std::chrono::milliseconds shrinkTimeout{2000};
};

enum class Verdict { Linearizable, NotLinearizable, Unknown };
std::string_view name(Verdict v);  // "linearizable", "not linearizable", "unknown"

struct KeyResult {
  std::string key;
  Verdict verdict = Verdict::Linearizable;
  // Operations of this key in the history, and how many of them the search had to consider
  // (failed operations, info reads and unobserved info writes are left out).
  size_t operations = 0;
  size_t searched = 0;
  // Distinct (linearized set, state) configurations the search visited.
  uint64_t states = 0;
  // For NotLinearizable: operations that cannot be ordered, sorted by invocation time.
  std::vector<Operation> violation;
  // True if shrinking ran to the end (the set is 1-minimal); false if it stopped on its budget.
  bool minimal = false;
};

struct CheckResult {
  Verdict verdict = Verdict::Linearizable;
  size_t operations = 0;  // in the history
  size_t keys = 0;
  // One entry per key, in key order.
  std::vector<KeyResult> perKey;
  std::chrono::nanoseconds elapsed{0};

  // The first key that is not linearizable, or nullptr.
  const KeyResult* violation() const;
};

CheckResult check(const History& history, const CheckOptions& options = {});

// One line, e.g. `p3  write k7 "v42"    [1000, 2000]  ok    (lines 4-7)`, or for an info
// operation `[1000, inf)  info`.
std::string render(const Operation& op);
// A readable report: the summary line and, for a violation, one line per operation of the set.
std::string render(const CheckResult& result);
// The same as one JSON object (no trailing newline).
std::string renderJson(const CheckResult& result);

}  // namespace keel::checker
