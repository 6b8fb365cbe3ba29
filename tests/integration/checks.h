// keel integration tests: checks shared by the tests of keel-server processes (cluster-test,
// tls-test).
#pragma once

#include "http-get.h"
#include "process-cluster.h"

#include <cstdio>
#include <string>

namespace keel::integration {

// The value of metric `name` in node `id`'s /metrics (-1 when it cannot be read).
inline double metric(const ProcessCluster& cluster, uint64_t id, const std::string& name) {
  auto body = testing::httpGet(cluster.node(id).http, "/metrics", 2000);
  return body ? testing::metricValue(*body, name).value_or(-1) : -1;
}

// Runs keel-server with `flags` (then those of a one-node memory-log cluster) and expects it to
// refuse them: exit status 1, and `says` in what it printed.
inline void expectRefused(const std::string& flags, const std::string& says) {
  std::string c = ProcessCluster::serverPath() + " " + flags + " --id 1 --memory-log true --peers 1=127.0.0.1:1 2>&1";
  FILE* f = ::popen(c.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char out[512] = {0};
  size_t got = fread(out, 1, sizeof out - 1, f);
  int status = ::pclose(f);
  EXPECT_EQ(WEXITSTATUS(status), 1) << flags;
  EXPECT_NE(std::string(out, got).find(says), std::string::npos) << flags << ": " << out;
}

}  // namespace keel::integration
