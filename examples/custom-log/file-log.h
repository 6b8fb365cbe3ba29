// keel example: FileLog, a custom keel::Log kept in one append-only file.
//
// The simplest durable Log a user might write: every write appends one record to a single
// file, sync() writes the records out and fdatasync()s the file, and opening the file replays
// the records. Reads are answered from memory, by a MemoryLog that the writes keep up to date
// (so FileLog is the MemoryLog plus a file, and it needs the memory to hold the whole log).
//
// The file is a sequence of records, each a field of ../common/fields.h (a 4-byte length, then
// the bytes) holding the record's own fields:
//   ["hard", term, vote, commit]                        setHardState
//   ["entry", term, index, type, data]                  append (one record per entry)
//   ["install" | "compact", index, term, membership, data]  installSnapshot, compact
// Numbers are decimal; membership is Membership::encode(). Replaying "entry" replaces any
// suffix from its index on, exactly as append() did. A record cut short by a crash ends the
// file (it was never synced, so nothing depended on it); it is cut off when the file opens.
//
// What it leaves out, and SegmentedLog (include/keel/segmented-log.h) does: checksums (a
// flipped bit goes unnoticed), segments (the file only grows: compact() frees memory, not
// disk), syncing off the event loop, and fsync of the directory after creating the file.
#pragma once

#include <keel/memory-log.h>

#include "../common/fields.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <span>
#include <stdexcept>
#include <string>

namespace keel::examples {

class FileLog final : public Log {
 public:
  // Opens (or creates) `path`. A new file starts the cluster whose first configuration is
  // `initial`; an existing one replays its records (and `initial` must be the same).
  FileLog(const std::string& path, Membership initial) : memory_(std::move(initial)) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot open " + path);
    std::string file;
    char buf[65536];
    for (ssize_t n; (n = ::read(fd_, buf, sizeof buf)) > 0;) file.append(buf, size_t(n));
    size_t good = replay(file);
    if (good < file.size() && ::ftruncate(fd_, off_t(good)) != 0) throw std::runtime_error("cannot truncate " + path);
  }
  ~FileLog() override { ::close(fd_); }

  // ---- Read side: from memory ----
  HardState hardState() const override { return memory_.hardState(); }
  Index firstIndex() const override { return memory_.firstIndex(); }
  Index lastIndex() const override { return memory_.lastIndex(); }
  Term term(Index i) const override { return memory_.term(i); }
  void entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const override {
    memory_.entries(lo, hi, maxBytes, out);
  }
  SnapshotMeta snapshotMeta() const override { return memory_.snapshotMeta(); }
  Snapshot snapshot() const override { return memory_.snapshot(); }

  // ---- Write side: to memory at once, to the file on sync() ----
  void setHardState(const HardState& hs) override {
    memory_.setHardState(hs);
    record({"hard", num(hs.term.value), num(hs.vote.value), num(hs.commit.value)});
  }
  void append(std::span<const Entry> entries) override {
    memory_.append(entries);
    for (const Entry& e : entries)
      record({"entry", num(e.term.value), num(e.index.value), num(uint64_t(e.type)), e.data.view()});
  }
  void installSnapshot(const Snapshot& s) override {
    memory_.installSnapshot(s);
    recordSnapshot("install", s);
  }
  void compact(const Snapshot& s) override {
    memory_.compact(s);
    recordSnapshot("compact", s);
  }
  void sync() override {
    if (pending_.empty()) return;
    for (size_t done = 0; done < pending_.size();) {
      ssize_t n = ::write(fd_, pending_.data() + done, pending_.size() - done);
      if (n < 0) fatal("write");
      done += size_t(n);
    }
    // Never retry a failed sync: the kernel may have dropped the pages (log.h).
    if (::fdatasync(fd_) != 0) fatal("fdatasync");
    pending_.clear();
    ++syncs_;
  }

  // For the example's printout.
  uint64_t records() const { return records_; }  // written since open
  uint64_t syncs() const { return syncs_; }
  uint64_t replayed() const { return replayed_; }  // read back when the file opened

 private:
  static std::string num(uint64_t v) { return std::to_string(v); }
  static uint64_t parse(std::string_view s) { return std::stoull(std::string(s)); }
  [[noreturn]] static void fatal(const char* what) {
    std::perror(what);
    std::abort();
  }

  void record(std::initializer_list<std::string_view> fields) {
    appendField(pending_, encodeFields(fields));
    ++records_;
  }
  void recordSnapshot(const char* kind, const Snapshot& s) {
    Bytes membership = s.meta.membership.encode();
    record({kind, num(s.meta.index.value), num(s.meta.term.value), membership.view(), s.data.view()});
  }

  // Applies the file's records to memory_; returns the length of the complete ones.
  size_t replay(std::string_view file) {
    size_t at = 0;
    std::vector<std::string_view> f;
    while (at + 4 <= file.size()) {
      uint32_t n = 0;
      for (int i = 0; i < 4; ++i) n |= uint32_t(uint8_t(file[at + i])) << (8 * i);
      if (file.size() - at - 4 < n) break;  // a torn tail
      if (!decodeFields(file.substr(at + 4, n), f) || f.empty()) throw std::runtime_error("a corrupt record");
      if (f[0] == "hard" && f.size() == 4) {
        memory_.setHardState(HardState{Term{parse(f[1])}, NodeId{parse(f[2])}, Index{parse(f[3])}});
      } else if (f[0] == "entry" && f.size() == 5) {
        Entry e{Term{parse(f[1])}, Index{parse(f[2])}, EntryType(parse(f[3])), Bytes(f[4])};
        memory_.append(std::span<const Entry>(&e, 1));
      } else if ((f[0] == "install" || f[0] == "compact") && f.size() == 5) {
        Snapshot s{SnapshotMeta{Index{parse(f[1])}, Term{parse(f[2])}, {}}, Bytes(f[4])};
        if (!Membership::decode(f[3], s.meta.membership)) throw std::runtime_error("a corrupt membership");
        f[0] == "install" ? memory_.installSnapshot(s) : memory_.compact(s);
      } else {
        throw std::runtime_error("an unknown record");
      }
      ++replayed_;
      at += 4 + n;
    }
    return at;
  }

  MemoryLog memory_;
  int fd_ = -1;
  std::string pending_;  // records written since the last sync
  uint64_t records_ = 0, syncs_ = 0, replayed_ = 0;
};

}  // namespace keel::examples
