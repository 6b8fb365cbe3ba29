// keel examples, tests only: runs a program to completion and collects what it printed.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace keel::examples {

struct ProgramResult {
  int exit = -1;    // the exit status, -1 when it did not exit normally
  std::string out;  // stdout
  std::string err;  // stderr
};

inline std::string drain(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, size_t(n));
  ::close(fd);
  return s;
}

// Runs `argv[0]` with `argv`. The outputs are small: reading stdout to its end before stderr
// cannot block the child.
inline ProgramResult runProgram(std::vector<std::string> argv) {
  int out[2], err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::close(out[0]), ::close(out[1]), ::close(err[0]), ::close(err[1]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]), ::close(err[1]);
  ProgramResult r;
  r.out = drain(out[0]);
  r.err = drain(err[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit = WEXITSTATUS(status);
  return r;
}

}  // namespace keel::examples
