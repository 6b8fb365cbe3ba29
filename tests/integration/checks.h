// keel integration tests: checks shared by the tests of keel-server processes (cluster-test,
// tls-test).
#pragma once

#include "http-get.h"
#include "process-cluster.h"

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <utility>

namespace keel::integration {

// The value of metric `name` in node `id`'s /metrics (-1 when it cannot be read).
inline double metric(const ProcessCluster& cluster, uint64_t id, const std::string& name) {
  auto body = testing::httpGet(cluster.node(id).http, "/metrics", 2000);
  return body ? testing::metricValue(*body, name).value_or(-1) : -1;
}

// What the shell command `cmd` printed (stdout and stderr) and its exit status.
inline std::pair<std::string, int> runCommand(const std::string& cmd) {
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[512];
  for (size_t n; f && (n = fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  int status = f ? ::pclose(f) : -1;
  return {out, WEXITSTATUS(status)};
}

// Runs keel-server with `flags` (then those of a one-node memory-log cluster) and expects it to
// refuse them: exit status 1, and `says` in what it printed.
inline void expectRefused(const std::string& flags, const std::string& says) {
  auto [out, status] = runCommand(ProcessCluster::serverPath() + " " + flags + " --id 1 --memory-log true --peers 1=127.0.0.1:1");
  EXPECT_EQ(status, 1) << flags;
  EXPECT_NE(out.find(says), std::string::npos) << flags << ": " << out;
}

}  // namespace keel::integration
