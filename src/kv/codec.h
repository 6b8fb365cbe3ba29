// keel internal: the little byte reader and writer of the KV encoding (see include/keel/kv.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace keel::kv::detail {

inline void putVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

inline void putU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void putBytes(std::string& out, std::string_view b) {
  putVarint(out, b.size());
  out.append(b);
}

// Reads from a byte string; every read fails (returns false) rather than run past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u8(uint8_t& v) {
    if (in_.empty()) return false;
    v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool u64(uint64_t& v) {
    if (in_.size() < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(8);
    return true;
  }
  bool varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!u8(b)) return false;
      if (shift == 63 && (b & 0x7e)) return false;  // overflows 64 bits
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool bytes(std::string_view& b) {
    uint64_t n;
    if (!varint(n) || n > in_.size()) return false;
    b = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const noexcept { return in_.empty(); }
  size_t remaining() const noexcept { return in_.size(); }

 private:
  std::string_view in_;
};

}  // namespace keel::kv::detail
