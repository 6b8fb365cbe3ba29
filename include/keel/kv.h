// keel: KvStateMachine, the replicated key-value store, and its command encoding.
//
// WHAT IT IS
//
// An ordered map from byte-string keys to byte-string values with put, get, delete,
// compare-and-set and range scan, plus client sessions that make writes exactly-once (Raft
// dissertation §6.3): a client registers a session (through the log), numbers its writes, and
// a write that is applied again (a client retry after a lost reply, a leader change) returns
// the reply cached the first time instead of being applied twice.
//
// DETERMINISM
//
// Everything that changes state comes through apply(): the same commands in the same order
// give the same state and the same replies on every replica. Sessions expire by a logical
// clock carried in the commands (the leader stamps its wall-clock milliseconds into every
// command it proposes, see stampClock), never by a replica's own clock: the state machine's
// clock is the maximum stamp it has applied, and a session whose last command is older than
// Options::sessionTimeoutMs by that clock is dropped. All replicas therefore expire the same
// sessions at the same log index. Options must be the same on every replica.
//
// THE COMMAND ENCODING (little-endian; "varint" is unsigned LEB128; "bytes" is a varint
// length followed by that many bytes)
//
//   command  = op:u8  clock:u64  client:varint  seq:varint  ack:varint  body
//     op      Put=1, Delete=2, Cas=3, RegisterSession=4, Clock=5, Incr=6, Append=7, GetSet=8,
//             PutMany=9, DeleteMany=10, PutIf=11 (6-11: the atomic operations of the RESP port)
//     clock   the proposer's logical time in milliseconds (0: none); at a fixed offset (1) so
//             that the leader can stamp it without decoding the rest
//     client  the session's id (0: no session, the write is at-least-once)
//     seq     the write's number in its session (from 1; any increasing numbering)
//     ack     the client has received the replies of every seq < ack: their cached replies
//             can go (this lets a client have several writes outstanding)
//   body of Put     = key:bytes value:bytes
//   body of Delete  = key:bytes
//   body of Cas     = flags:u8 key:bytes [expected:bytes if flags&1] [value:bytes if flags&2]
//                     expected absent means "the key must not exist"; value absent means
//                     "delete the key when the comparison holds"
//   body of RegisterSession, Clock = nothing
//   body of Incr       = key:bytes delta:u64 (two's complement): the value, read as a signed
//                        64-bit decimal (a missing key is 0), plus delta
//   body of Append     = key:bytes suffix:bytes (a missing key is created)
//   body of GetSet     = key:bytes value:bytes (sets the value, returns the old one)
//   body of PutMany    = count:varint (key:bytes value:bytes)*   (all or nothing, in order)
//   body of DeleteMany = count:varint key:bytes*
//   body of PutIf      = cond:u8 key:bytes value:bytes   cond 1: only if the key is absent,
//                        2: only if it is present
//
//   query    = op:u8 body          (read-only; answered by query())
//     Get=16   body = key:bytes
//     Scan=17  body = start:bytes end:bytes limit:varint
//              the keys k with start <= k < end (end empty: no upper bound), in order,
//              at most `limit` of them (0: kDefaultScanLimit)
//     GetMany=18  body = count:varint key:bytes*
//     Size=19     body = nothing (the number of keys)
//
//   reply    = status:u8 body
//     Ok        Put: nothing; Delete: nothing; Cas: nothing; Get: value:bytes;
//               Scan: count:varint (key:bytes value:bytes)* more:u8;
//               RegisterSession: client:varint
//               Incr: value:bytes (the new value, decimal); Append: length:varint (the new
//               length); GetSet: present:u8 [old:bytes if present]; PutMany: nothing;
//               DeleteMany: deleted:varint; PutIf: nothing;
//               GetMany: count:varint (present:u8 [value:bytes if present])*; Size: count:varint
//     NotFound  Get and Delete of a missing key
//     CompareFailed  Cas, PutIf: present:u8 [current:bytes if present] (nothing changed)
//     NotInteger  Incr: the value is not a 64-bit decimal integer, or the sum overflows
//     SessionExpired the session is unknown (expired or never registered): the write was not
//               applied; the client must register a new session
//     Duplicate the write's seq is below the session's ack: its reply was already received
//     BadRequest the bytes are not a command or query of this machine
//
// SNAPSHOTS
//
// snapshot() writes the whole state in chunks of Options::snapshotChunkBytes:
//   magic "KEELKV02"  clock:u64
//   sessions:varint  (client:varint lastActive:varint ack:varint replies:varint
//                     (seq:varint reply:bytes)*)*
//   pairs:varint (key:bytes value:bytes)*
//   checksum:u64 (XXH3-64, seed 0, of everything before it)
// restore() also reads the older "KEELKV01" snapshots, whose checksum is the FNV-1a (64-bit) of
// everything before it.
#pragma once

#include <keel/state-machine.h>

#include <absl/container/btree_set.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel {
namespace kv {

enum class Op : uint8_t {
  Put = 1,
  Delete = 2,
  Cas = 3,
  RegisterSession = 4,
  Clock = 5,
  Incr = 6,
  Append = 7,
  GetSet = 8,
  PutMany = 9,
  DeleteMany = 10,
  PutIf = 11,
  Get = 16,
  Scan = 17,
  GetMany = 18,
  Size = 19,
};

enum class Status : uint8_t {
  Ok = 0,
  NotFound = 1,
  CompareFailed = 2,
  SessionExpired = 3,
  Duplicate = 4,
  BadRequest = 5,
  NotInteger = 6,
};
const char* toString(Status s) noexcept;

inline constexpr uint32_t kDefaultScanLimit = 1000;
inline constexpr size_t kClockOffset = 1;  // where the u64 clock sits in a command

// Where a write belongs in its client's session. client == 0: no session.
struct SessionRef {
  uint64_t client = 0;
  uint64_t seq = 0;
  uint64_t ack = 0;
};

// ---- Encoding of commands and queries ----
std::string encodePut(SessionRef s, std::string_view key, std::string_view value);
std::string encodeDelete(SessionRef s, std::string_view key);
std::string encodeCas(SessionRef s, std::string_view key, std::optional<std::string_view> expected,
                      std::optional<std::string_view> value);
std::string encodeRegisterSession();
// A command that only advances the clock (and so expires idle sessions).
std::string encodeClock(uint64_t clockMs);
std::string encodeGet(std::string_view key);
std::string encodeScan(std::string_view start, std::string_view end, uint32_t limit = 0);
// The atomic operations behind the RESP port's INCR, APPEND, GETSET, MSET, DEL, SET NX/XX.
std::string encodeIncr(SessionRef s, std::string_view key, int64_t delta);
std::string encodeAppend(SessionRef s, std::string_view key, std::string_view suffix);
std::string encodeGetSet(SessionRef s, std::string_view key, std::string_view value);
std::string encodePutMany(SessionRef s, const std::vector<std::pair<std::string_view, std::string_view>>& pairs);
std::string encodeDeleteMany(SessionRef s, const std::vector<std::string_view>& keys);
enum class PutCondition : uint8_t { IfAbsent = 1, IfPresent = 2 };
std::string encodePutIf(SessionRef s, PutCondition cond, std::string_view key, std::string_view value);
std::string encodeGetMany(const std::vector<std::string_view>& keys);
std::string encodeSize();

// True when `command` looks like a KV command (op in range, long enough to hold a clock).
bool isCommand(std::string_view command) noexcept;
// Writes `clockMs` into a command in place. Returns false (changing nothing) when `data` is
// not a command.
bool stampClock(uint8_t* data, size_t size, uint64_t clockMs) noexcept;

// A decoded reply. Which fields are set depends on the request; see the encoding above.
struct Reply {
  Status status = Status::BadRequest;
  std::string value;                                  // Get; Cas failure: the current value
  bool present = false;                               // Cas failure: whether the key exists
  uint64_t client = 0;                                // RegisterSession
  std::vector<std::pair<std::string, std::string>> pairs;  // Scan
  bool more = false;                                  // Scan: the limit cut the range
  uint64_t count = 0;                                 // Append, DeleteMany, Size
  std::vector<std::optional<std::string>> values;     // GetMany
  bool ok() const noexcept { return status == Status::Ok; }
};
// False when `bytes` is not a reply to `request` (`op` is the request's op).
bool decodeReply(Op op, std::string_view bytes, Reply& out);

// ---- Encoding of replies (the state machine's side; public for other front ends) ----
std::string replyStatus(Status s);

}  // namespace kv

namespace kv::detail {
// One key and its value in 40 bytes: both inline when together they fit in 32 bytes (a 16-byte
// key and a 16-byte value do), else in one heap block. A std::map<std::string, std::string> node
// costs 112 bytes plus 32 for a value past 15 bytes (the string's inline capacity); a std::set
// of Records 80 per key; a B-tree of them, whose nodes hold several Records side by side, about
// 50. The value may change in place (`setValue` is const: the key, which orders the set, does
// not change). Movable: a B-tree moves its values between nodes.
class Record {
 public:
  static constexpr size_t kInline = 32;
  Record(std::string_view key, std::string_view value);
  Record(const Record& o) : Record(o.key(), o.value()) {}
  Record(Record&& o) noexcept;
  Record& operator=(const Record&) = delete;
  Record& operator=(Record&& o) noexcept;
  ~Record() {
    if (!isInline()) ::operator delete(heap_);
  }
  std::string_view key() const noexcept { return {base(), klen_}; }
  std::string_view value() const noexcept { return {base() + klen_, vlen_}; }
  void setValue(std::string_view value) const;

 private:
  bool isInline() const noexcept { return size_t(klen_) + vlen_ <= kInline; }
  const char* base() const noexcept { return isInline() ? inline_ : heap_; }
  mutable uint32_t klen_, vlen_;
  union {
    mutable char inline_[kInline];
    mutable char* heap_;
  };
};
struct RecordLess {
  using is_transparent = void;
  bool operator()(const Record& a, const Record& b) const noexcept { return a.key() < b.key(); }
  bool operator()(const Record& a, std::string_view b) const noexcept { return a.key() < b; }
  bool operator()(std::string_view a, const Record& b) const noexcept { return a < b.key(); }
};
}  // namespace kv::detail

class KvStateMachine final : public StateMachine {
 public:
  struct Options {
    // A session with no command for this long, by the log's clock, expires.
    uint64_t sessionTimeoutMs = 10 * 60 * 1000;
    // At most this many sessions: registering one more expires the least recently active.
    uint64_t maxSessions = 100000;
    // Size of the chunks snapshot() writes.
    size_t snapshotChunkBytes = 64 * 1024;
  };

  KvStateMachine() : KvStateMachine(Options{}) {}
  explicit KvStateMachine(Options options);

  std::string apply(Index index, std::string_view command) override;
  std::string query(std::string_view request) const override;
  void snapshot(SnapshotSink& sink) const override;
  bool restore(std::string_view snapshot) override;
  // Parses the snapshot as it arrives (KEELKV02 only; an older one fails finish(), and the
  // caller restores it whole).
  std::unique_ptr<SnapshotRestore> beginRestore() override;
  // The snapshot of snapshot(), byte for byte, written in key order a slice at a time. The
  // sessions are written when it begins (their count is capped); a record about to change
  // before the job reached it leaves its value of then with the job.
  std::unique_ptr<SnapshotJob> beginSnapshot(SnapshotSink& sink) override;

  // ---- Inspection (tests, status) ----
  size_t size() const noexcept { return data_.size(); }
  size_t sessionCount() const noexcept { return sessions_.size(); }
  bool hasSession(uint64_t client) const { return sessions_.count(client) != 0; }
  uint64_t clock() const noexcept { return clock_; }
  // A copy of the whole map (tests).
  std::map<std::string, std::string, std::less<>> data() const;

 private:
  struct Session {
    uint64_t lastActive = 0;
    uint64_t ack = 0;
    std::map<uint64_t, std::string> replies;  // seq -> reply, for seq >= ack
  };

  // A B-tree: a lookup or an insert touches a handful of nodes of several records each, where a
  // red-black tree (std::set) touched one node per level, each a likely cache miss. Its
  // iterators do not survive a change of the set.
  using Records = absl::btree_set<kv::detail::Record, kv::detail::RecordLess>;
  class Snapshotter;
  friend class KvRestore;
  std::string applyWrite(kv::Op op, std::string_view body, bool& ok);
  // Every change of data_ goes through these, so that a snapshot under way keeps what it has
  // not written yet. `it` is data_.find(key); putRecord() (a write that needs no old value)
  // looks the key up itself.
  void setRecord(Records::iterator it, std::string_view key, std::string_view value);
  void putRecord(std::string_view key, std::string_view value);
  void eraseRecord(Records::iterator it);
  void noRestoreDuringSnapshot() const;
  void advanceClock(uint64_t clockMs);
  void touch(uint64_t client, Session& s);
  void expireSessions();

  Options options_;
  Records data_;
  std::map<uint64_t, Session> sessions_;
  std::set<std::pair<uint64_t, uint64_t>> byActivity_;  // (lastActive, client)
  uint64_t clock_ = 0;
  // The snapshot under way (snapshot() too). Assigning to a machine while one is under way is
  // a logic error, as restoring it is.
  mutable Snapshotter* snapshotter_ = nullptr;
};

}  // namespace keel
