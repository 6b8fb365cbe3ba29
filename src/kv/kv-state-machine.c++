// keel: KvStateMachine (see include/keel/kv.h for the encoding and the session rules).
#include <keel/kv.h>

#include "codec.h"

#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <memory>
#include <new>

namespace keel {

using kv::Op;
using kv::Status;
using kv::detail::putBytes;
using kv::detail::putU64;
using kv::detail::putVarint;
using kv::detail::Reader;

namespace {

// A Redis-style integer: an optional '-' and 1 to 19 digits, no spaces, no '+', no leading zeros
// (except "0" itself), within int64_t.
bool parseInt64(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  size_t digits = s[0] == '-' ? 1 : 0;
  if (digits == s.size() || (s[digits] == '0' && s.size() > digits + 1)) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && s != "-0";
}

// KEELKV02 ends with an XXH3-64 of what precedes it; KEELKV01 (read only) with an FNV-1a,
// which ran at about 1 byte per cycle and took a second per GiB to check.
constexpr std::string_view kMagic = "KEELKV02";
constexpr std::string_view kMagicFnv = "KEELKV01";

uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Buffers a snapshot and hands it to the sink in chunks, keeping a running checksum.
class ChunkWriter {
 public:
  ChunkWriter(SnapshotSink& sink, size_t chunk)
      : sink_(sink), chunk_(std::max<size_t>(chunk, 16)), hash_(XXH3_createState(), XXH3_freeState) {
    if (!hash_) throw std::bad_alloc();
    XXH3_64bits_reset(hash_.get());
  }
  std::string& buf() { return buf_; }
  void maybeFlush() {
    if (buf_.size() >= chunk_) flush();
  }
  void flush() {
    if (buf_.empty()) return;
    XXH3_64bits_update(hash_.get(), buf_.data(), buf_.size());
    sink_.write(buf_);
    buf_.clear();
  }
  void finish() {
    flush();
    putU64(buf_, XXH3_64bits_digest(hash_.get()));
    sink_.write(buf_);
    buf_.clear();
  }

 private:
  SnapshotSink& sink_;
  size_t chunk_;
  std::string buf_;
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> hash_;
};

}  // namespace

namespace kv::detail {

Record::Record(std::string_view key, std::string_view value) {
  if (key.size() > UINT32_MAX || value.size() > UINT32_MAX - key.size())
    throw std::length_error("KvStateMachine: a key and value of 4 GiB or more");
  klen_ = uint32_t(key.size());
  vlen_ = uint32_t(value.size());
  char* p = inline_;
  if (!isInline()) p = heap_ = static_cast<char*>(::operator new(key.size() + value.size()));
  if (!key.empty()) std::memcpy(p, key.data(), key.size());
  if (!value.empty()) std::memcpy(p + key.size(), value.data(), value.size());
}

Record::Record(Record&& o) noexcept : klen_(o.klen_), vlen_(o.vlen_) {
  std::memcpy(inline_, o.inline_, kInline);  // the bytes, or the pointer to them
  o.klen_ = o.vlen_ = 0;                     // empty and inline: owns nothing
}

Record& Record::operator=(Record&& o) noexcept {
  if (this != &o) {
    if (!isInline()) ::operator delete(heap_);
    klen_ = o.klen_;
    vlen_ = o.vlen_;
    std::memcpy(inline_, o.inline_, kInline);
    o.klen_ = o.vlen_ = 0;
  }
  return *this;
}

void Record::setValue(std::string_view value) const {
  size_t k = klen_;
  if (value.size() > UINT32_MAX - k) throw std::length_error("KvStateMachine: a key and value of 4 GiB or more");
  // Built aside first: `value` may point into this record.
  if (k + value.size() <= kInline) {
    char tmp[kInline];
    std::memcpy(tmp, base(), k);
    if (!value.empty()) std::memcpy(tmp + k, value.data(), value.size());
    if (!isInline()) ::operator delete(heap_);
    std::memcpy(inline_, tmp, k + value.size());
  } else {
    char* p = static_cast<char*>(::operator new(k + value.size()));
    std::memcpy(p, base(), k);
    std::memcpy(p + k, value.data(), value.size());
    if (!isInline()) ::operator delete(heap_);
    heap_ = p;
  }
  vlen_ = uint32_t(value.size());
}

}  // namespace kv::detail

KvStateMachine::KvStateMachine(Options options) : options_(options) {}

std::map<std::string, std::string, std::less<>> KvStateMachine::data() const {
  std::map<std::string, std::string, std::less<>> out;
  for (const auto& r : data_) out.emplace_hint(out.end(), r.key(), r.value());
  return out;
}

void KvStateMachine::advanceClock(uint64_t clockMs) {
  // Monotonic: a new leader whose clock is behind never moves time backwards.
  if (clockMs > clock_) clock_ = clockMs;
}

void KvStateMachine::touch(uint64_t client, Session& s) {
  byActivity_.erase({s.lastActive, client});
  s.lastActive = std::max(s.lastActive, clock_);
  byActivity_.insert({s.lastActive, client});
}

void KvStateMachine::expireSessions() {
  if (clock_ < options_.sessionTimeoutMs) return;
  uint64_t cutoff = clock_ - options_.sessionTimeoutMs;
  while (!byActivity_.empty() && byActivity_.begin()->first < cutoff) {
    sessions_.erase(byActivity_.begin()->second);
    byActivity_.erase(byActivity_.begin());
  }
}

std::string KvStateMachine::apply(Index index, std::string_view command) {
  Reader r(command);
  uint8_t opByte;
  uint64_t clockMs, client, seq, ack;
  if (!kv::isCommand(command) || !r.u8(opByte) || !r.u64(clockMs) || !r.varint(client) ||
      !r.varint(seq) || !r.varint(ack)) {
    return kv::replyStatus(Status::BadRequest);
  }
  Op op = static_cast<Op>(opByte);
  std::string_view body = command.substr(command.size() - r.remaining());
  advanceClock(clockMs);
  expireSessions();

  if (op == Op::RegisterSession) {
    // The entry's index is unique and the same on every replica: it names the session.
    uint64_t id = index.value;
    if (sessions_.count(id) == 0) {
      while (options_.maxSessions > 0 && sessions_.size() >= options_.maxSessions) {
        sessions_.erase(byActivity_.begin()->second);
        byActivity_.erase(byActivity_.begin());
      }
      Session& s = sessions_[id];
      s.lastActive = clock_;
      byActivity_.insert({s.lastActive, id});
    }
    std::string out = kv::replyStatus(Status::Ok);
    putVarint(out, id);
    return out;
  }
  if (op == Op::Clock) return kv::replyStatus(Status::Ok);

  bool ok = true;
  if (client == 0) return applyWrite(op, body, ok);

  // Exactly-once (dissertation §6.3).
  auto it = sessions_.find(client);
  if (it == sessions_.end()) return kv::replyStatus(Status::SessionExpired);
  Session& s = it->second;
  touch(client, s);
  if (ack > s.ack) {
    s.ack = ack;
    s.replies.erase(s.replies.begin(), s.replies.lower_bound(ack));
  }
  if (seq < s.ack) return kv::replyStatus(Status::Duplicate);
  if (auto cached = s.replies.find(seq); cached != s.replies.end()) return cached->second;
  std::string reply = applyWrite(op, body, ok);
  if (ok) s.replies.emplace(seq, reply);
  return reply;
}

std::string KvStateMachine::applyWrite(Op op, std::string_view body, bool& ok) {
  Reader r(body);
  std::string_view key;
  switch (op) {
    case Op::Put: {
      std::string_view value;
      if (!r.bytes(key) || !r.bytes(value) || !r.done()) break;
      putRecord(key, value);
      return kv::replyStatus(Status::Ok);
    }
    case Op::Delete: {
      if (!r.bytes(key) || !r.done()) break;
      auto it = data_.find(key);
      if (it == data_.end()) return kv::replyStatus(Status::NotFound);
      eraseRecord(it);
      return kv::replyStatus(Status::Ok);
    }
    case Op::Cas: {
      uint8_t flags;
      std::string_view expected, value;
      if (!r.u8(flags) || flags > 3 || !r.bytes(key)) break;
      if ((flags & 1) && !r.bytes(expected)) break;
      if ((flags & 2) && !r.bytes(value)) break;
      if (!r.done()) break;
      auto it = data_.find(key);
      bool matches = (flags & 1) ? (it != data_.end() && it->value() == expected) : it == data_.end();
      if (!matches) {
        std::string out = kv::replyStatus(Status::CompareFailed);
        out.push_back(it != data_.end() ? 1 : 0);
        if (it != data_.end()) putBytes(out, it->value());
        return out;
      }
      if (flags & 2) setRecord(it, key, value);
      else if (it != data_.end()) eraseRecord(it);
      return kv::replyStatus(Status::Ok);
    }
    case Op::Incr: {
      uint64_t raw;
      if (!r.bytes(key) || !r.u64(raw) || !r.done()) break;
      int64_t delta = static_cast<int64_t>(raw), current = 0, sum;
      auto it = data_.find(key);
      if (it != data_.end() && !parseInt64(it->value(), current)) return kv::replyStatus(Status::NotInteger);
      if (__builtin_add_overflow(current, delta, &sum)) return kv::replyStatus(Status::NotInteger);
      std::string value = std::to_string(sum);
      setRecord(it, key, value);
      std::string out = kv::replyStatus(Status::Ok);
      putBytes(out, value);
      return out;
    }
    case Op::Append: {
      std::string_view suffix;
      if (!r.bytes(key) || !r.bytes(suffix) || !r.done()) break;
      auto it = data_.find(key);
      std::string value = it == data_.end() ? std::string(suffix) : std::string(it->value()) + std::string(suffix);
      setRecord(it, key, value);
      std::string out = kv::replyStatus(Status::Ok);
      putVarint(out, value.size());
      return out;
    }
    case Op::GetSet: {
      std::string_view value;
      if (!r.bytes(key) || !r.bytes(value) || !r.done()) break;
      std::string out = kv::replyStatus(Status::Ok);
      auto it = data_.find(key);
      out.push_back(it == data_.end() ? 0 : 1);
      if (it != data_.end()) putBytes(out, it->value());
      setRecord(it, key, value);
      return out;
    }
    case Op::PutMany: {
      // Decode everything first: a malformed command changes nothing.
      uint64_t n;
      if (!r.varint(n) || n > r.remaining() / 2) break;
      std::vector<std::pair<std::string_view, std::string_view>> pairs(n);
      bool good = true;
      for (auto& [k, v] : pairs) good = good && r.bytes(k) && r.bytes(v);
      if (!good || !r.done()) break;
      for (auto& [k, v] : pairs) putRecord(k, v);
      return kv::replyStatus(Status::Ok);
    }
    case Op::DeleteMany: {
      uint64_t n;
      if (!r.varint(n) || n > r.remaining()) break;
      std::vector<std::string_view> keys(n);
      bool good = true;
      for (auto& k : keys) good = good && r.bytes(k);
      if (!good || !r.done()) break;
      uint64_t deleted = 0;
      for (auto k : keys) {
        auto it = data_.find(k);
        if (it != data_.end()) {
          eraseRecord(it);
          ++deleted;
        }
      }
      std::string out = kv::replyStatus(Status::Ok);
      putVarint(out, deleted);
      return out;
    }
    case Op::PutIf: {
      uint8_t cond;
      std::string_view value;
      if (!r.u8(cond) || cond < 1 || cond > 2 || !r.bytes(key) || !r.bytes(value) || !r.done()) break;
      auto it = data_.find(key);
      bool present = it != data_.end();
      if (present != (cond == static_cast<uint8_t>(kv::PutCondition::IfPresent))) {
        std::string out = kv::replyStatus(Status::CompareFailed);
        out.push_back(present ? 1 : 0);
        if (present) putBytes(out, it->value());
        return out;
      }
      setRecord(it, key, value);
      return kv::replyStatus(Status::Ok);
    }
    default:
      break;
  }
  ok = false;
  return kv::replyStatus(Status::BadRequest);
}

std::string KvStateMachine::query(std::string_view request) const {
  Reader r(request);
  uint8_t op;
  if (!r.u8(op)) return kv::replyStatus(Status::BadRequest);
  if (op == static_cast<uint8_t>(Op::Get)) {
    std::string_view key;
    if (!r.bytes(key) || !r.done()) return kv::replyStatus(Status::BadRequest);
    auto it = data_.find(key);
    if (it == data_.end()) return kv::replyStatus(Status::NotFound);
    std::string out = kv::replyStatus(Status::Ok);
    putBytes(out, it->value());
    return out;
  }
  if (op == static_cast<uint8_t>(Op::Scan)) {
    std::string_view start, end;
    uint64_t limit;
    if (!r.bytes(start) || !r.bytes(end) || !r.varint(limit) || !r.done()) {
      return kv::replyStatus(Status::BadRequest);
    }
    if (limit == 0) limit = kv::kDefaultScanLimit;
    std::string body;
    uint64_t n = 0;
    bool more = false;
    for (auto it = data_.lower_bound(start); it != data_.end(); ++it) {
      if (!end.empty() && it->key() >= end) break;
      if (n == limit) { more = true; break; }
      putBytes(body, it->key());
      putBytes(body, it->value());
      ++n;
    }
    std::string out = kv::replyStatus(Status::Ok);
    putVarint(out, n);
    out += body;
    out.push_back(more ? 1 : 0);
    return out;
  }
  if (op == static_cast<uint8_t>(Op::GetMany)) {
    uint64_t n;
    if (!r.varint(n) || n > r.remaining()) return kv::replyStatus(Status::BadRequest);
    std::string out = kv::replyStatus(Status::Ok);
    putVarint(out, n);
    for (uint64_t i = 0; i < n; ++i) {
      std::string_view key;
      if (!r.bytes(key)) return kv::replyStatus(Status::BadRequest);
      auto it = data_.find(key);
      out.push_back(it != data_.end() ? 1 : 0);
      if (it != data_.end()) putBytes(out, it->value());
    }
    if (!r.done()) return kv::replyStatus(Status::BadRequest);
    return out;
  }
  if (op == static_cast<uint8_t>(Op::Size)) {
    if (!r.done()) return kv::replyStatus(Status::BadRequest);
    std::string out = kv::replyStatus(Status::Ok);
    putVarint(out, data_.size());
    return out;
  }
  return kv::replyStatus(Status::BadRequest);
}

// Writes the snapshot of the state as it was when it was made. The records go in key order;
// each slice resumes at the first record of data_ past the last key written (a change of data_
// invalidates the B-tree's iterators, so none is kept between slices). A record about to change (or
// appear, or go) past that point first leaves its value of then (or its absence) in `before_`,
// and the writing takes from `before_` what it holds: the merge of the two, in key order, is
// the state at the start. Every record written counts down the number the snapshot announced.
class KvStateMachine::Snapshotter final : public SnapshotJob {
 public:
  Snapshotter(const KvStateMachine& sm, SnapshotSink& sink)
      : sm_(sm), w_(sink, sm.options_.snapshotChunkBytes) {
    if (sm_.snapshotter_) throw std::logic_error("KvStateMachine: a snapshot is already under way");
    std::string& b = w_.buf();
    b.append(kMagic);
    putU64(b, sm_.clock_);
    putVarint(b, sm_.sessions_.size());
    for (const auto& [id, s] : sm_.sessions_) {
      putVarint(b, id);
      putVarint(b, s.lastActive);
      putVarint(b, s.ack);
      putVarint(b, s.replies.size());
      for (const auto& [seq, reply] : s.replies) {
        putVarint(b, seq);
        putBytes(b, reply);
        w_.maybeFlush();
      }
      w_.maybeFlush();
    }
    left_ = sm_.data_.size();
    putVarint(b, left_);
    sm_.snapshotter_ = this;
  }
  ~Snapshotter() override {
    if (sm_.snapshotter_ == this) sm_.snapshotter_ = nullptr;
  }

  bool step(size_t budgetBytes) override {
    if (done_) return true;
    std::string& b = w_.buf();
    size_t wrote = 0;
    // Nothing changes data_ during a slice: `next` is valid until it returns.
    auto next = started_ ? sm_.data_.upper_bound(std::string_view(last_)) : sm_.data_.begin();
    while (wrote < budgetBytes) {
      auto bt = before_.begin();
      bool tree = next != sm_.data_.end(), kept = bt != before_.end();
      if (!tree && !kept) break;
      size_t at = b.size();
      if (kept && (!tree || std::string_view(bt->first) <= next->key())) {
        if (tree && bt->first == next->key()) ++next;  // changed since: its value of then
        if (bt->second) put(b, bt->first, *bt->second);
        last_ = bt->first;
        before_.erase(bt);
      } else {
        put(b, next->key(), next->value());
        last_ = next->key();
        ++next;
      }
      started_ = true;
      wrote += b.size() - at;
      w_.maybeFlush();
    }
    if (next != sm_.data_.end() || !before_.empty()) return false;
    if (left_ != 0) throw std::logic_error("KvStateMachine: a snapshot wrote fewer records than it announced");
    w_.finish();
    done_ = true;
    sm_.snapshotter_ = nullptr;
    return true;
  }

  // `key` (whose record is `it`, data_.end() when absent) is about to change: keep its value of
  // the start if the job has not written it yet.
  void changing(std::string_view key, Records::const_iterator it) {
    if (started_ && key <= std::string_view(last_)) return;
    if (before_.find(key) != before_.end()) return;
    before_.emplace(std::string(key), it == sm_.data_.end() ? std::nullopt : std::optional<std::string>(it->value()));
  }

 private:
  void put(std::string& b, std::string_view key, std::string_view value) {
    if (left_ == 0) throw std::logic_error("KvStateMachine: a snapshot wrote more records than it announced");
    --left_;
    putBytes(b, key);
    putBytes(b, value);
  }

  const KvStateMachine& sm_;
  ChunkWriter w_;
  std::map<std::string, std::optional<std::string>, std::less<>> before_;
  std::string last_;  // the last key written, once started_
  bool started_ = false, done_ = false;
  uint64_t left_ = 0;
};

void KvStateMachine::snapshot(SnapshotSink& sink) const {
  Snapshotter(*this, sink).step(SIZE_MAX);
}

std::unique_ptr<SnapshotJob> KvStateMachine::beginSnapshot(SnapshotSink& sink) {
  return std::make_unique<Snapshotter>(*this, sink);
}

void KvStateMachine::setRecord(Records::iterator it, std::string_view key, std::string_view value) {
  if (snapshotter_) snapshotter_->changing(key, it);
  if (it == data_.end()) data_.emplace(key, value);
  else it->setValue(value);
}

void KvStateMachine::putRecord(std::string_view key, std::string_view value) {
  // One descent of the tree: find() and then emplace() made two for a new key.
  auto at = data_.lower_bound(key);
  if (at != data_.end() && at->key() == key) return setRecord(at, key, value);
  if (snapshotter_) snapshotter_->changing(key, data_.end());
  data_.emplace_hint(at, key, value);
}

void KvStateMachine::eraseRecord(Records::iterator it) {
  if (snapshotter_) snapshotter_->changing(it->key(), it);
  data_.erase(it);
}

void KvStateMachine::noRestoreDuringSnapshot() const {
  if (snapshotter_) throw std::logic_error("KvStateMachine: restore while a snapshot is under way");
}

bool KvStateMachine::restore(std::string_view snapshot) {
  if (snapshot.size() < kMagic.size() + 16) return false;
  std::string_view magic = snapshot.substr(0, kMagic.size());
  if (magic != kMagic && magic != kMagicFnv) return false;
  std::string_view body = snapshot.substr(0, snapshot.size() - 8);
  Reader tail(snapshot.substr(snapshot.size() - 8));
  uint64_t sum;
  if (!tail.u64(sum)) return false;
  if (sum != (magic == kMagic ? XXH3_64bits(body.data(), body.size()) : fnv1a(body))) return false;

  Reader r(body.substr(kMagic.size()));
  uint64_t clock, nSessions;
  if (!r.u64(clock) || !r.varint(nSessions)) return false;
  std::map<uint64_t, Session> sessions;
  std::set<std::pair<uint64_t, uint64_t>> byActivity;
  for (uint64_t i = 0; i < nSessions; ++i) {
    uint64_t id, nReplies;
    Session s;
    if (!r.varint(id) || !r.varint(s.lastActive) || !r.varint(s.ack) || !r.varint(nReplies)) {
      return false;
    }
    for (uint64_t j = 0; j < nReplies; ++j) {
      uint64_t seq;
      std::string_view reply;
      if (!r.varint(seq) || !r.bytes(reply)) return false;
      s.replies.emplace(seq, std::string(reply));
    }
    byActivity.insert({s.lastActive, id});
    sessions.emplace(id, std::move(s));
  }
  uint64_t nPairs;
  if (!r.varint(nPairs)) return false;
  Records data;
  for (uint64_t i = 0; i < nPairs; ++i) {
    std::string_view k, v;
    if (!r.bytes(k) || !r.bytes(v)) return false;
    data.emplace_hint(data.end(), k, v);
  }
  if (!r.done()) return false;
  noRestoreDuringSnapshot();
  clock_ = clock;
  sessions_ = std::move(sessions);
  byActivity_ = std::move(byActivity);
  data_ = std::move(data);
  return true;
}

// Parses a KEELKV02 snapshot item by item as its bytes arrive. An item (the header, a session,
// a cached reply, a pair, ...) that straddles two writes is completed in `pending_` from the
// front of the next write only, so the bulk of the bytes is parsed where it arrived, without
// a copy. Corrupt bytes look like an item that never completes: finish() then fails.
class KvRestore final : public SnapshotRestore {
 public:
  explicit KvRestore(KvStateMachine& sm) : sm_(sm), hash_(XXH3_createState(), XXH3_freeState) {
    if (!hash_) throw std::bad_alloc();
    XXH3_64bits_reset(hash_.get());
  }

  void write(std::string_view in) override {
    if (bad_) return;
    while (!pending_.empty() && !in.empty()) {
      // Complete the straddling item with as little of `in` as it takes (doubling).
      size_t old = pending_.size(), take = std::min(in.size(), std::max<size_t>(4096, old));
      pending_.append(in.substr(0, take));
      size_t used = 0;
      Step st = step(pending_, used);
      if (st == Step::Bad) return fail();
      if (st == Step::More) {
        in.remove_prefix(take);
        continue;
      }
      hash(std::string_view(pending_).substr(0, used));
      // What of `in` the item did not use is parsed from `in` itself.
      size_t fromIn = used - old;
      pending_.clear();
      in.remove_prefix(fromIn);
    }
    if (bad_ || in.empty()) return;
    size_t at = 0;
    while (at < in.size()) {
      size_t used = 0;
      Step st = step(in.substr(at), used);
      if (st == Step::Bad) return fail();
      if (st == Step::More) break;
      at += used;
    }
    hash(in.substr(0, at));
    pending_.append(in.substr(at));
  }

  bool finish() override {
    if (bad_ || stage_ != Stage::Done || pending_.size() != 8) return false;
    Reader r(pending_);
    uint64_t sum;
    return r.u64(sum) && sum == XXH3_64bits_digest(hash_.get()) && (finished_ = true);
  }

  void apply() override {
    if (!finished_ || applied_) throw std::logic_error("SnapshotRestore::apply: not a finished, checked snapshot");
    sm_.noRestoreDuringSnapshot();
    applied_ = true;
    sm_.clock_ = clock_;
    sm_.sessions_ = std::move(sessions_);
    sm_.byActivity_ = std::move(byActivity_);
    sm_.data_ = std::move(data_);
  }

 private:
  enum class Step { Ok, More, Bad };
  enum class Stage { Header, Session, Reply, PairCount, Pair, Done };

  void fail() {
    bad_ = true;
    pending_.clear();
  }
  void hash(std::string_view b) {
    if (!b.empty()) XXH3_64bits_update(hash_.get(), b.data(), b.size());
  }

  // Parses one item from the front of `in`: Ok (and `used` bytes), More (incomplete), Bad.
  Step step(std::string_view in, size_t& used) {
    Reader r(in);
    switch (stage_) {
      case Stage::Header: {
        if (in.size() < kMagic.size()) return Step::More;
        if (in.substr(0, kMagic.size()) != kMagic) return Step::Bad;  // KEELKV01 too: restore() reads those
        Reader h(in.substr(kMagic.size()));
        uint64_t clock, n;
        if (!h.u64(clock) || !h.varint(n)) return Step::More;
        clock_ = clock;
        sessionsLeft_ = n;
        used = in.size() - h.remaining();
        stage_ = n ? Stage::Session : Stage::PairCount;
        return Step::Ok;
      }
      case Stage::Session: {
        uint64_t id, nReplies;
        Session s;
        if (!r.varint(id) || !r.varint(s.lastActive) || !r.varint(s.ack) || !r.varint(nReplies)) return Step::More;
        byActivity_.insert({s.lastActive, id});
        current_ = &sessions_.emplace(id, std::move(s)).first->second;
        repliesLeft_ = nReplies;
        --sessionsLeft_;
        stage_ = nReplies ? Stage::Reply : sessionsLeft_ ? Stage::Session : Stage::PairCount;
        break;
      }
      case Stage::Reply: {
        uint64_t seq;
        std::string_view reply;
        if (!r.varint(seq) || !r.bytes(reply)) return Step::More;
        current_->replies.emplace(seq, std::string(reply));
        --repliesLeft_;
        stage_ = repliesLeft_ ? Stage::Reply : sessionsLeft_ ? Stage::Session : Stage::PairCount;
        break;
      }
      case Stage::PairCount: {
        uint64_t n;
        if (!r.varint(n)) return Step::More;
        pairsLeft_ = n;
        stage_ = n ? Stage::Pair : Stage::Done;
        break;
      }
      case Stage::Pair: {
        std::string_view k, v;
        if (!r.bytes(k) || !r.bytes(v)) return Step::More;
        data_.emplace_hint(data_.end(), k, v);
        stage_ = --pairsLeft_ ? Stage::Pair : Stage::Done;
        break;
      }
      case Stage::Done:
        return Step::More;  // the checksum: finish() reads it
    }
    used = in.size() - r.remaining();
    return Step::Ok;
  }

  using Session = KvStateMachine::Session;
  KvStateMachine& sm_;
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> hash_;
  std::string pending_;
  Stage stage_ = Stage::Header;
  bool bad_ = false, finished_ = false, applied_ = false;
  uint64_t clock_ = 0, sessionsLeft_ = 0, repliesLeft_ = 0, pairsLeft_ = 0;
  Session* current_ = nullptr;
  std::map<uint64_t, Session> sessions_;
  std::set<std::pair<uint64_t, uint64_t>> byActivity_;
  KvStateMachine::Records data_;
};

std::unique_ptr<SnapshotRestore> KvStateMachine::beginRestore() { return std::make_unique<KvRestore>(*this); }

}  // namespace keel
