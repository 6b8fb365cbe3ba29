// The keel-check command, run as a process: its exit status and what it prints.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "keel/check.h"

namespace keel::checker {
namespace {

struct Invocation {
  int status = -1;
  std::string output;  // stdout and stderr
};

Invocation run(const std::string& args) {
  std::string command = std::string(KEEL_CHECK_BINARY) + " " + args + " 2>&1";
  Invocation r;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string fixture(const std::string& name) {
  return std::string(KEEL_CHECK_FIXTURES) + "/" + name;
}

TEST(Cli, LinearizableHistoryExitsZero) {
  Invocation r = run(fixture("info-ops.jsonl"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("11 operations, 2 keys: linearizable"), std::string::npos) << r.output;
}

TEST(Cli, ViolationExitsOneAndPrintsTheOperations) {
  Invocation r = run(fixture("stale-read.jsonl"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("not linearizable"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("these 3 operations cannot be ordered"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(lines 5-6)"), std::string::npos) << r.output;
}

TEST(Cli, UnreadableInputExitsTwoWithTheLine) {
  Invocation r = run(fixture("bad-line.jsonl"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("line 3: "), std::string::npos) << r.output;

  r = run(fixture("no-such-file.jsonl"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("cannot open"), std::string::npos) << r.output;

  r = run("--no-such-option " + fixture("info-ops.jsonl"));
  EXPECT_EQ(r.status, 2) << r.output;
  r = run("");
  EXPECT_EQ(r.status, 2) << r.output;
  r = run("--timeout soon " + fixture("info-ops.jsonl"));
  EXPECT_EQ(r.status, 2) << r.output;
}

TEST(Cli, WorstStatusWinsAcrossFiles) {
  EXPECT_EQ(run(fixture("info-ops.jsonl") + " " + fixture("stale-read.jsonl")).status, 1);
  EXPECT_EQ(run(fixture("stale-read.jsonl") + " " + fixture("bad-line.jsonl")).status, 2);
}

TEST(Cli, ReadsStandardInput) {
  Invocation r = run("- < " + fixture("stale-read.jsonl"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("<stdin>"), std::string::npos) << r.output;
}

TEST(Cli, JsonOutput) {
  Invocation r = run("--json " + fixture("stale-read.jsonl"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(r.output.rfind("{\"file\":", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("\"verdict\":\"not linearizable\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"violations\":[{\"key\":\"x\""), std::string::npos) << r.output;
}

TEST(Cli, TimeoutExitsThree) {
  // Overlapping writes and reads no order explains: exponential to refute.
  History h;
  for (int i = 0; i < 26; ++i) {
    auto op = h.invokeWrite(i, "x", "v" + std::to_string(i), 0);
    h.complete(op, Outcome::Ok, 1000);
  }
  auto r1 = h.invokeRead(100, "x", 1001);
  h.complete(r1, Outcome::Ok, 1002, "v0");
  auto r2 = h.invokeRead(100, "x", 1003);
  h.complete(r2, Outcome::Ok, 1004, "v1");
  std::string path = ::testing::TempDir() + "keel-check-hard-" + std::to_string(getpid()) + ".jsonl";
  {
    std::ofstream out(path);
    h.writeJsonLines(out);
  }
  Invocation r = run("--timeout 0.1 " + path);
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("unknown"), std::string::npos) << r.output;
  std::remove(path.c_str());
}

TEST(Cli, Help) {
  Invocation r = run("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("usage: keel-check"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace keel::checker
