// keel internal: host:port addresses, as the flags, the peers and the client library give them.
#pragma once

#include <cstdint>
#include <string>

namespace keel::net {

// "host:port" -> host (not empty) and port (1..65535, decimal digits only); false when malformed.
inline bool splitAddress(const std::string& addr, std::string& host, uint16_t& port) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size()) return false;
  uint32_t p = 0;
  for (size_t i = colon + 1; i < addr.size(); ++i) {
    if (addr[i] < '0' || addr[i] > '9') return false;
    p = p * 10 + uint32_t(addr[i] - '0');
    if (p > 65535) return false;
  }
  if (p == 0 || p > 65535) return false;
  host = addr.substr(0, colon);
  port = uint16_t(p);
  return true;
}

}  // namespace keel::net
