// keel tests: blocking HTTP requests, for reading a server's /metrics and /status.
#pragma once

#include <optional>
#include <string>

namespace keel::testing {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// `method` http://<hostPort><path> (no request body) with a deadline; nullopt when no whole
// answer came.
std::optional<HttpResponse> httpRequest(const std::string& hostPort, const std::string& method,
                                        const std::string& path, int timeoutMs);

// GET http://<hostPort><path> with a deadline; the body of a 200 answer, or nullopt on any
// failure.
std::optional<std::string> httpGet(const std::string& hostPort, const std::string& path, int timeoutMs);

// The value of the sample `name` (with its labels, e.g. `keel_fsync_seconds_bucket{le="0.25"}`)
// in a /metrics body; nullopt when the body has no such line.
std::optional<double> metricValue(const std::string& body, const std::string& name);

}  // namespace keel::testing
