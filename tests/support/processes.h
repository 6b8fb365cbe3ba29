// keel tests: stopping the server processes a test started.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

namespace keel::testing {

// SIGTERM to every process of `pids` still running (> 0), so that they stop cleanly (a coverage
// build writes their counters, the leak checker looks at their heaps; with KJ_CLEAN_SHUTDOWN),
// then SIGKILL to any not gone within `grace`. Each pid is set to -1 once reaped.
inline void stopGracefully(const std::vector<pid_t*>& pids, std::chrono::milliseconds grace = std::chrono::seconds(5)) {
  for (pid_t* p : pids)
    if (*p > 0) ::kill(*p, SIGTERM);
  auto end = std::chrono::steady_clock::now() + grace;
  for (pid_t* p : pids) {
    while (*p > 0 && std::chrono::steady_clock::now() < end) {
      if (::waitpid(*p, nullptr, WNOHANG) == *p) *p = -1;
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (*p > 0) {
      ::kill(*p, SIGKILL);
      ::waitpid(*p, nullptr, 0);
      *p = -1;
    }
  }
}

}  // namespace keel::testing
