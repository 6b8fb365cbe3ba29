// keel: the KV command, query and reply encoding (documented in include/keel/kv.h).
#include <keel/kv.h>

#include "codec.h"

namespace keel::kv {

using detail::putBytes;
using detail::putU64;
using detail::putVarint;
using detail::Reader;

const char* toString(Status s) noexcept {
  switch (s) {
    case Status::Ok: return "ok";
    case Status::NotFound: return "not found";
    case Status::CompareFailed: return "compare failed";
    case Status::SessionExpired: return "session expired";
    case Status::Duplicate: return "duplicate";
    case Status::BadRequest: return "bad request";
    case Status::NotInteger: return "not an integer";
  }
  return "?";
}

namespace {

std::string header(Op op, SessionRef s) {
  std::string out;
  out.push_back(static_cast<char>(op));
  putU64(out, 0);  // the clock, stamped by the leader
  putVarint(out, s.client);
  putVarint(out, s.seq);
  putVarint(out, s.ack);
  return out;
}

}  // namespace

std::string encodePut(SessionRef s, std::string_view key, std::string_view value) {
  std::string out = header(Op::Put, s);
  putBytes(out, key);
  putBytes(out, value);
  return out;
}

std::string encodeDelete(SessionRef s, std::string_view key) {
  std::string out = header(Op::Delete, s);
  putBytes(out, key);
  return out;
}

std::string encodeCas(SessionRef s, std::string_view key, std::optional<std::string_view> expected,
                      std::optional<std::string_view> value) {
  std::string out = header(Op::Cas, s);
  out.push_back(static_cast<char>((expected ? 1 : 0) | (value ? 2 : 0)));
  putBytes(out, key);
  if (expected) putBytes(out, *expected);
  if (value) putBytes(out, *value);
  return out;
}

std::string encodeRegisterSession() { return header(Op::RegisterSession, {}); }

std::string encodeClock(uint64_t clockMs) {
  std::string out = header(Op::Clock, {});
  stampClock(reinterpret_cast<uint8_t*>(out.data()), out.size(), clockMs);
  return out;
}

std::string encodeGet(std::string_view key) {
  std::string out(1, static_cast<char>(Op::Get));
  putBytes(out, key);
  return out;
}

std::string encodeScan(std::string_view start, std::string_view end, uint32_t limit) {
  std::string out(1, static_cast<char>(Op::Scan));
  putBytes(out, start);
  putBytes(out, end);
  putVarint(out, limit);
  return out;
}

std::string encodeIncr(SessionRef s, std::string_view key, int64_t delta) {
  std::string out = header(Op::Incr, s);
  putBytes(out, key);
  putU64(out, static_cast<uint64_t>(delta));
  return out;
}

std::string encodeAppend(SessionRef s, std::string_view key, std::string_view suffix) {
  std::string out = header(Op::Append, s);
  putBytes(out, key);
  putBytes(out, suffix);
  return out;
}

std::string encodeGetSet(SessionRef s, std::string_view key, std::string_view value) {
  std::string out = header(Op::GetSet, s);
  putBytes(out, key);
  putBytes(out, value);
  return out;
}

std::string encodePutMany(SessionRef s, const std::vector<std::pair<std::string_view, std::string_view>>& pairs) {
  std::string out = header(Op::PutMany, s);
  putVarint(out, pairs.size());
  for (auto& [k, v] : pairs) {
    putBytes(out, k);
    putBytes(out, v);
  }
  return out;
}

std::string encodeDeleteMany(SessionRef s, const std::vector<std::string_view>& keys) {
  std::string out = header(Op::DeleteMany, s);
  putVarint(out, keys.size());
  for (auto k : keys) putBytes(out, k);
  return out;
}

std::string encodePutIf(SessionRef s, PutCondition cond, std::string_view key, std::string_view value) {
  std::string out = header(Op::PutIf, s);
  out.push_back(static_cast<char>(cond));
  putBytes(out, key);
  putBytes(out, value);
  return out;
}

std::string encodeGetMany(const std::vector<std::string_view>& keys) {
  std::string out(1, static_cast<char>(Op::GetMany));
  putVarint(out, keys.size());
  for (auto k : keys) putBytes(out, k);
  return out;
}

std::string encodeSize() { return std::string(1, static_cast<char>(Op::Size)); }

bool isCommand(std::string_view command) noexcept {
  if (command.size() < kClockOffset + 8) return false;
  uint8_t op = static_cast<uint8_t>(command[0]);
  return op >= static_cast<uint8_t>(Op::Put) && op <= static_cast<uint8_t>(Op::PutIf);
}

bool stampClock(uint8_t* data, size_t size, uint64_t clockMs) noexcept {
  if (!isCommand(std::string_view(reinterpret_cast<const char*>(data), size))) return false;
  for (int i = 0; i < 8; ++i) data[kClockOffset + i] = static_cast<uint8_t>(clockMs >> (8 * i));
  return true;
}

std::string replyStatus(Status s) { return std::string(1, static_cast<char>(s)); }

bool decodeReply(Op op, std::string_view bytes, Reply& out) {
  out = Reply{};
  Reader r(bytes);
  uint8_t st;
  if (!r.u8(st) || st > static_cast<uint8_t>(Status::NotInteger)) return false;
  out.status = static_cast<Status>(st);
  if (out.status == Status::CompareFailed) {
    uint8_t present;
    if ((op != Op::Cas && op != Op::PutIf) || !r.u8(present) || present > 1) return false;
    out.present = present;
    if (present) {
      std::string_view v;
      if (!r.bytes(v)) return false;
      out.value = std::string(v);
    }
    return r.done();
  }
  if (out.status != Status::Ok) return r.done();
  switch (op) {
    case Op::Put: case Op::Delete: case Op::Cas: case Op::Clock: case Op::PutMany: case Op::PutIf:
      return r.done();
    case Op::Incr: {
      std::string_view v;
      if (!r.bytes(v)) return false;
      out.value = std::string(v);
      return r.done();
    }
    case Op::Append: case Op::DeleteMany: case Op::Size:
      return r.varint(out.count) && r.done();
    case Op::GetSet: {
      uint8_t present;
      if (!r.u8(present) || present > 1) return false;
      out.present = present;
      if (present) {
        std::string_view v;
        if (!r.bytes(v)) return false;
        out.value = std::string(v);
      }
      return r.done();
    }
    case Op::GetMany: {
      uint64_t n;
      if (!r.varint(n) || n > r.remaining()) return false;
      out.values.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        uint8_t present;
        if (!r.u8(present) || present > 1) return false;
        if (!present) {
          out.values.emplace_back();
          continue;
        }
        std::string_view v;
        if (!r.bytes(v)) return false;
        out.values.emplace_back(std::string(v));
      }
      return r.done();
    }
    case Op::RegisterSession:
      return r.varint(out.client) && r.done();
    case Op::Get: {
      std::string_view v;
      if (!r.bytes(v)) return false;
      out.value = std::string(v);
      return r.done();
    }
    case Op::Scan: {
      uint64_t n;
      if (!r.varint(n) || n > r.remaining() / 2) return false;
      out.pairs.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        std::string_view k, v;
        if (!r.bytes(k) || !r.bytes(v)) return false;
        out.pairs.emplace_back(std::string(k), std::string(v));
      }
      uint8_t more;
      if (!r.u8(more) || more > 1) return false;
      out.more = more;
      return r.done();
    }
  }
  return false;
}

}  // namespace keel::kv
