// keel tests: a blocking HTTP GET for reading a server's /metrics and /status.
#pragma once

#include <optional>
#include <string>

namespace keel::testing {

// GET http://<hostPort><path> with a deadline; the body of a 200 answer, or nullopt on any
// failure.
std::optional<std::string> httpGet(const std::string& hostPort, const std::string& path, int timeoutMs);

}  // namespace keel::testing
