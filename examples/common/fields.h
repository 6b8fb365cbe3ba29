// keel examples: a tiny byte format for commands, results and snapshots.
//
// A message is a list of fields, each a 4-byte little-endian length followed by that many
// bytes. Fields may hold any bytes (spaces, newlines, NULs), and a message that is cut short
// or has trailing garbage does not decode. The state machines and the clients of the examples
// agree on it; a real application would more likely use Cap'n Proto or protobuf.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace keel::examples {

inline void appendField(std::string& out, std::string_view field) {
  uint32_t n = uint32_t(field.size());
  for (int i = 0; i < 4; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
  out.append(field);
}

inline std::string encodeFields(std::initializer_list<std::string_view> fields) {
  std::string out;
  for (std::string_view f : fields) appendField(out, f);
  return out;
}

// Splits `bytes` into fields (views into `bytes`). False when malformed.
inline bool decodeFields(std::string_view bytes, std::vector<std::string_view>& out) {
  out.clear();
  while (!bytes.empty()) {
    if (bytes.size() < 4) return false;
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= uint32_t(uint8_t(bytes[i])) << (8 * i);
    bytes.remove_prefix(4);
    if (bytes.size() < n) return false;
    out.push_back(bytes.substr(0, n));
    bytes.remove_prefix(n);
  }
  return true;
}

}  // namespace keel::examples
