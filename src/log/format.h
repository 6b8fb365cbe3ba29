// keel: the on-disk format of SegmentedLog (internal; docs/log-format.md is the prose version).
// Every integer is little-endian. Checksums are XXH3-64 (libxxhash), seed 0; where a 32-bit
// check is stored it is the low 32 bits of the XXH3-64 value.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include <xxhash.h>

namespace keel::logformat {

inline constexpr uint64_t kSectorBytes = 512;

// ---- segment header: 32 bytes at offset 0 of every <first>.seg ----
//   0  8  magic "KEELSEG\0"
//   8  4  version = 1
//  12  4  low 32 bits of XXH3-64 of bytes [0, 12) ++ [16, 32)
//  16  8  epoch
//  24  8  first index
inline constexpr char kSegmentMagic[8] = {'K', 'E', 'E', 'L', 'S', 'E', 'G', '\0'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint64_t kSegmentHeaderBytes = 32;

// ---- record header: 32 bytes, then `length` bytes of payload ----
//   0  4  payload length
//   4  1  entry type (0 normal, 1 membership)
//   5  3  zero
//   8  8  term
//  16  8  index
//  24  4  header check: low 32 bits of XXH3-64 of bytes [0, 24)
//  28  4  payload check: low 32 bits of XXH3-64 of the payload
inline constexpr uint64_t kRecordHeaderBytes = 32;
inline constexpr uint32_t kMaxPayload = 1u << 30;

// ---- meta-a / meta-b: 64 bytes ----
//   0  8  magic "KEELMETA"
//   8  4  version = 1
//  12  4  zero
//  16  8  sequence number (the higher valid one is current)
//  24  8  term
//  32  8  vote
//  40  8  commit
//  48  8  zero
//  56  8  XXH3-64 of bytes [0, 56)
inline constexpr char kMetaMagic[8] = {'K', 'E', 'E', 'L', 'M', 'E', 'T', 'A'};
inline constexpr uint64_t kMetaBytes = 64;

// ---- snapshot ----
//   0  8  magic "KEELSNAP"
//   8  4  version = 1
//  12  4  length M of the encoded membership
//  16  8  epoch
//  24  8  index
//  32  8  term
//  40  8  length D of the data
//  48  8  XXH3-64 of the data
//  56  M  encoded membership (Membership::encode)
//  56+M 8 XXH3-64 of bytes [0, 56 + M)
//  64+M D data
inline constexpr char kSnapMagic[8] = {'K', 'E', 'E', 'L', 'S', 'N', 'A', 'P'};
inline constexpr uint64_t kSnapFixedBytes = 56;

inline void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t get64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
inline uint64_t hash64(const void* p, size_t n) { return XXH3_64bits(p, n); }
inline uint32_t hash32(const void* p, size_t n) { return static_cast<uint32_t>(XXH3_64bits(p, n)); }

inline uint32_t segmentHeaderCheck(const uint8_t* h) {
  uint8_t tmp[28];
  std::memcpy(tmp, h, 12);
  std::memcpy(tmp + 12, h + 16, 16);
  return hash32(tmp, sizeof tmp);
}

inline void encodeSegmentHeader(uint8_t* h, uint64_t epoch, uint64_t first) {
  std::memcpy(h, kSegmentMagic, 8);
  put32(h + 8, kVersion);
  put64(h + 16, epoch);
  put64(h + 24, first);
  put32(h + 12, segmentHeaderCheck(h));
}

inline void encodeRecordHeader(uint8_t* h, uint32_t length, uint8_t type, uint64_t term,
                               uint64_t index, const void* payload) {
  put32(h, length);
  h[4] = type;
  h[5] = h[6] = h[7] = 0;
  put64(h + 8, term);
  put64(h + 16, index);
  put32(h + 24, hash32(h, 24));
  put32(h + 28, hash32(payload, length));
}

// The segment file name for an entry index: 20 decimal digits + ".seg".
inline std::string segmentName(uint64_t first) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu.seg", static_cast<unsigned long long>(first));
  return buf;
}

// Parses a segment file name; false when `name` is not one.
inline bool parseSegmentName(std::string_view name, uint64_t& first) {
  if (name.size() != 24 || name.substr(20) != ".seg") return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 20; ++i) {
    char c = name[i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint64_t(c - '0');
  }
  first = v;
  return true;
}

}  // namespace keel::logformat
