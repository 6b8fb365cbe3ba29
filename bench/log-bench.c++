// keel-log-bench: WORKLOADS.md's W3 (log-append) and the restart time of a 1 GiB log.
//
//   keel-log-bench --dir DIR [--seconds 0.5] [--reps 9] [--reopen-gib 1] [--skip-w3]
//   keel-log-bench --dir DIR --plain-bytes N [--seconds 0.5] [--reps 9]
//
// W3: for entries of 16 B, 1 KiB and 64 KiB in batches of 1, 16 and 256, SegmentedLog appends
// one batch and syncs it (append + sync(), one fdatasync per batch), for --seconds; beside it,
// in the same run and directory, the physical limit: a plain loop of write(2) of the batch's
// payload bytes + fdatasync(2). Repetitions alternate the two (which one goes first, too);
// printed are the medians of each figure and the median of the per-repetition ratios (a
// shared disk's latency drifts by 2x within seconds: only back-to-back pairs compare).
// --plain-bytes N: only the plain loop, with writes of N bytes (W5 compares the snapshot
// transfer rate against it, with N = 1 MiB): the median MB/s of --reps runs of --seconds, and
// the median syncs per second (with small N, the disk's fdatasync rate: several of these run at
// once show what the nodes of a local cluster, which share one disk, get each).
// Reopen: writes a log of --reopen-gib GiB of 1 KiB entries, closes it, and times opening it
// (cold: the files' pages dropped from the page cache with posix_fadvise; and warm).
#include <keel/segmented-log.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

using namespace keel;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Rate {
  double entriesPerSec;
  double mbps;  // payload bytes, 10^6 per second
};

Rate runKeel(const std::string& dir, size_t entryBytes, size_t batch, double seconds) {
  std::filesystem::remove_all(dir);
  std::string payload(entryBytes, 'k');
  for (size_t i = 0; i < entryBytes; ++i) payload[i] = char('a' + i % 26);
  Bytes data(payload);
  std::vector<Entry> es(batch);
  for (auto& e : es) {
    e.term = Term{1};
    e.data = data;
  }
  uint64_t n = 0;
  double t;
  {
    SegmentedLog log(dir);
    uint64_t next = 1;
    auto start = Clock::now();
    do {
      for (auto& e : es) e.index = Index{next++};
      log.append(es);
      log.sync();
      n += batch;
    } while (since(start) < seconds);
    t = since(start);
  }
  std::filesystem::remove_all(dir);
  return {n / t, n * double(entryBytes) / t / 1e6};
}

Rate runPlain(const std::string& dir, size_t entryBytes, size_t batch, double seconds) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string path = dir + "/plain";
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) { std::perror("open"); std::exit(1); }
  std::vector<char> buf(entryBytes * batch, 'p');
  uint64_t n = 0;
  auto start = Clock::now();
  do {
    if (::write(fd, buf.data(), buf.size()) != ssize_t(buf.size())) { std::perror("write"); std::exit(1); }
    if (::fdatasync(fd) != 0) { std::perror("fdatasync"); std::exit(1); }
    n += batch;
  } while (since(start) < seconds);
  double t = since(start);
  ::close(fd);
  std::filesystem::remove_all(dir);
  return {n / t, n * double(entryBytes) / t / 1e6};
}

void dropCache(const std::string& dir) {
  for (auto& p : std::filesystem::directory_iterator(dir)) {
    int fd = ::open(p.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  double seconds = 0.5;
  int reps = 9;
  double reopenGib = 1;
  bool w3 = true;
  uint64_t plainBytes = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--dir") dir = next();
    else if (a == "--seconds") seconds = std::atof(next().c_str());
    else if (a == "--reps") reps = std::atoi(next().c_str());
    else if (a == "--reopen-gib") reopenGib = std::atof(next().c_str());
    else if (a == "--skip-w3") w3 = false;
    else if (a == "--plain-bytes") plainBytes = std::strtoull(next().c_str(), nullptr, 10);
    else { std::fprintf(stderr, "unknown argument %s\n", a.c_str()); return 2; }
  }
  if (dir.empty()) { std::fprintf(stderr, "usage: keel-log-bench --dir DIR [...]\n"); return 2; }
  std::filesystem::create_directories(dir);

  if (plainBytes > 0) {
    std::vector<double> mbps, syncs;
    for (int r = 0; r < reps; ++r) {
      Rate p = runPlain(dir + "/plain", plainBytes, 1, seconds);
      mbps.push_back(p.mbps);
      syncs.push_back(p.entriesPerSec);  // one write and one fdatasync per entry
    }
    std::printf("RESULT workload=W3-plain write_bytes=%llu plain_mbps=%.1f min_mbps=%.1f max_mbps=%.1f reps=%d "
                "syncs_per_s=%.0f\n",
                (unsigned long long)plainBytes, median(mbps), *std::min_element(mbps.begin(), mbps.end()),
                *std::max_element(mbps.begin(), mbps.end()), reps, median(syncs));
    return 0;
  }

  if (w3) {
    for (size_t entryBytes : {size_t(16), size_t(1024), size_t(65536)})
      for (size_t batch : {size_t(1), size_t(16), size_t(256)}) {
        std::vector<double> ke, km, pe, pm, ratios;
        for (int r = 0; r < reps; ++r) {
          // Alternate which goes first: the disk's state drifts during a run.
          Rate k, p;
          if (r % 2 == 0) {
            k = runKeel(dir + "/keel", entryBytes, batch, seconds);
            p = runPlain(dir + "/plain", entryBytes, batch, seconds);
          } else {
            p = runPlain(dir + "/plain", entryBytes, batch, seconds);
            k = runKeel(dir + "/keel", entryBytes, batch, seconds);
          }
          ke.push_back(k.entriesPerSec), km.push_back(k.mbps);
          ratios.push_back(k.mbps / p.mbps);  // a pair run back to back: the disk's drift cancels
          pe.push_back(p.entriesPerSec), pm.push_back(p.mbps);
        }
        double kmb = median(km), pmb = median(pm);
        std::printf("RESULT workload=W3 entry_bytes=%zu batch=%zu keel_mbps=%.3f plain_mbps=%.3f "
                    "ratio=%.2f keel_entries_per_s=%.0f plain_entries_per_s=%.0f reps=%d\n",
                    entryBytes, batch, kmb, pmb, median(ratios), median(ke), median(pe), reps);
        std::fflush(stdout);
      }
  }

  if (reopenGib > 0) {
    std::string ldir = dir + "/reopen";
    std::filesystem::remove_all(ldir);
    const size_t entryBytes = 1024;
    const uint64_t total = uint64_t(reopenGib * double(1ull << 30)) / entryBytes;
    {
      SegmentedLog log(ldir);
      std::string payload(entryBytes, 'r');
      Bytes data(payload);
      std::vector<Entry> es(1024);
      for (auto& e : es) {
        e.term = Term{1};
        e.data = data;
      }
      uint64_t next = 1;
      while (next <= total) {
        for (auto& e : es) e.index = Index{next++};
        log.append(es);
        if ((next - 1) % (64 * 1024) == 0) log.syncAsync();
      }
      log.sync();
    }
    uint64_t bytes = 0;
    for (auto& p : std::filesystem::directory_iterator(ldir)) bytes += p.file_size();
    std::vector<double> cold, warm;
    uint64_t entries = 0;
    for (int r = 0; r < reps; ++r) {
      dropCache(ldir);
      auto t = Clock::now();
      {
        SegmentedLog log(ldir);
        cold.push_back(since(t));
        entries = log.lastIndex().value;
      }
      t = Clock::now();
      { SegmentedLog log(ldir); warm.push_back(since(t)); }
    }
    std::printf("RESULT workload=reopen log_gib=%.2f seconds=%.3f warm_seconds=%.3f entries=%llu "
                "file_bytes=%llu reps=%d\n",
                double(bytes) / double(1ull << 30), median(cold), median(warm),
                (unsigned long long)entries, (unsigned long long)bytes, reps);
    std::filesystem::remove_all(ldir);
  }
  return 0;
}
