// keel-sim: runs the deterministic cluster simulator (src/sim/simulator.h).
//
//   keel-sim --seed N                 one run; on failure prints what failed and the last
//                                     events of every node; exit status 1
//   keel-sim --seeds A..B [--time S]  a sweep of seeds A to B inclusive (stops after S seconds
//                                     of wall time); prints every failing seed, then totals
// Options: --nodes 3|5|7, --faults all|network,partitions,crashes,torn,pauses,slow-disk,
// membership,transfers,snapshots,held-reads (default: a mix chosen by each seed), --events N
// (events of the fault phase), --clients N, --keys N, --defect NAME (commit-previous-term,
// read-without-quorum, forwarded-read-acks-round, grant-any-vote, ack-before-persist,
// forget-vote, stale-reads, retry-expired-writes, lazy-sync-without-sync; may be repeated),
// --session-timeout MS (KvStateMachine's session timeout instead of the seed's choice),
// --history FILE (one run: write the history as JSON Lines), --no-check (skip the
// linearizability check), --pre-vote on|off and --check-quorum on|off (instead of the seed's
// choice), --read-mode lease (lease
// reads, with check-quorum; a paused leader catches up on the ticks it missed when it resumes,
// as keel-server does), --trace N (events per node in a failure report), -v (a summary line
// per seed).
#include "simulator.h"

#include <keel/config.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

namespace {

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "keel-sim: %s\nusage: keel-sim (--seed N | --seeds A..B [--time S]) [--nodes 3|5|7] "
                       "[--faults LIST] [--events N] [--clients N] [--keys N] [--defect NAME]... [--session-timeout MS] "
                       "[--pre-vote on|off] [--check-quorum on|off] [--read-mode readindex|lease] [--history FILE] [--no-check] [-v]\n", why);
  std::exit(2);
}

uint64_t number(const char* s) {
  char* end = nullptr;
  uint64_t v = std::strtoull(s, &end, 10);
  if (!*s || *end) usage("not a number");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  keel::sim::Options o;
  uint64_t first = 1, last = 1;
  bool haveSeeds = false, verbose = false, lease = false;
  double timeLimit = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--seed") {
      first = last = number(value());
      haveSeeds = true;
    } else if (a == "--seeds") {
      std::string r = value();
      auto dots = r.find("..");
      if (dots == std::string::npos) usage("--seeds takes A..B");
      first = number(r.substr(0, dots).c_str());
      last = number(r.substr(dots + 2).c_str());
      if (last < first) usage("--seeds A..B needs A <= B");
      haveSeeds = true;
    } else if (a == "--time") {
      timeLimit = std::atof(value());
    } else if (a == "--nodes") {
      o.nodes = int(number(value()));
      if (o.nodes != 3 && o.nodes != 5 && o.nodes != 7) usage("--nodes takes 3, 5 or 7");
    } else if (a == "--faults") {
      auto f = keel::sim::parseFaults(value());
      if (!f) usage("unknown fault in --faults");
      o.faults = *f;
    } else if (a == "--events") {
      o.events = number(value());
    } else if (a == "--clients") {
      o.clients = int(number(value()));
    } else if (a == "--keys") {
      o.keys = int(number(value()));
    } else if (a == "--defect") {
      std::string d = value();
      auto core = [&](keel::Fault f) { o.coreFaults |= uint64_t{1} << unsigned(f); };
      if (d == "commit-previous-term") core(keel::Fault::CommitPreviousTerm);
      else if (d == "read-without-quorum") core(keel::Fault::ReadWithoutQuorum);
      else if (d == "forwarded-read-acks-round") core(keel::Fault::ForwardedReadAcksRound);
      else if (d == "grant-any-vote") core(keel::Fault::GrantAnyVote);
      else if (d == "ack-before-persist") core(keel::Fault::AckBeforePersist);
      else if (d == "forget-vote") o.defects |= keel::sim::kForgetVote;
      else if (d == "stale-reads") o.defects |= keel::sim::kStaleReads;
      else if (d == "retry-expired-writes") o.defects |= keel::sim::kRetryExpiredWrites;
      else if (d == "lazy-sync-without-sync") o.defects |= keel::sim::kLazySyncWithoutSync;
      else usage("unknown --defect");
    } else if (a == "--session-timeout") {
      o.sessionTimeoutMs = number(value());
    } else if (a == "--history") {
      o.historyPath = value();
    } else if (a == "--pre-vote" || a == "--check-quorum") {
      std::string v = value();
      if (v != "on" && v != "off") usage((a + " takes on or off").c_str());
      bool on = v == "on";
      auto prev = o.configure;
      bool pre = a == "--pre-vote";
      o.configure = [prev, pre, on](keel::Config& c) {
        if (prev) prev(c);
        (pre ? c.preVote : c.checkQuorum) = on;
      };
    } else if (a == "--read-mode") {
      std::string v = value();
      if (v != "readindex" && v != "lease") usage("--read-mode takes readindex or lease");
      lease = v == "lease";
    } else if (a == "--trace") {
      o.traceDepth = int(number(value()));
    } else if (a == "--no-check") {
      o.checkHistory = false;
    } else if (a == "-v") {
      verbose = true;
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  if (lease) {
    // Lease reads need check-quorum: on instead of the seed's choice, unless --check-quorum off.
    auto prev = o.configure;
    o.configure = [prev](keel::Config& c) {
      c.checkQuorum = true;
      if (prev) prev(c);
      if (!c.checkQuorum) usage("--read-mode lease needs check-quorum");
      c.readMode = keel::ReadMode::Lease;
    };
  }
  if (!haveSeeds) usage("give --seed N or --seeds A..B");
  if (first != last && !o.historyPath.empty()) usage("--history takes a single --seed");

  auto start = std::chrono::steady_clock::now();
  uint64_t runs = 0, failures = 0, events = 0;
  for (uint64_t seed = first; seed <= last; ++seed) {
    o.seed = seed;
    keel::sim::Result r = keel::sim::run(o);
    ++runs;
    events += r.events;
    if (verbose || first == last) std::cout << r.summary() << "\n";
    if (!r.ok) {
      ++failures;
      std::cout << r.report << std::flush;
    }
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (timeLimit > 0 && elapsed >= timeLimit) break;
    if (seed == ~uint64_t{0}) break;
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (first != last || verbose) {
    std::printf("%llu seeds, %llu failed, %llu events in %.2f s: %.1f seeds/s, %.0f events/s\n",
                (unsigned long long)runs, (unsigned long long)failures, (unsigned long long)events, elapsed,
                runs / elapsed, events / elapsed);
  }
  return failures ? 1 : 0;
}
