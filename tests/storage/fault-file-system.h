// keel tests: an in-memory FileSystem that records every write, sync, rename and removal, and
// rebuilds the states a crash could leave behind (LevelDB's fault-injection Env, extended).
//
// The model of a disk: a file's data written since its last sync() is volatile, and so is a
// change of a name (create, rename, remove) since the last syncDir(). A crash keeps all that
// was synced and any of the following for the rest, which crashStates() enumerates:
//   * nothing: every unsynced write and name change dropped;
//   * everything (a crash of the process only: the page cache survives);
//   * every unsynced write, the last one torn at each 512-byte boundary it spans (the sectors
//     before the boundary written, the rest never);
//   * every unsynced write but one, for each of the most recent ones (writes reordered: a later
//     write reached the disk, an earlier one did not; an unwritten range of a file that grew
//     reads as zeros);
//   * name changes applied as a prefix, none or all.
#pragma once

#include <keel/segmented-log.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace keel::test {

class FaultFileSystem final : public FileSystem {
 public:
  // One recorded operation.
  struct Rec {
    enum Kind { Create, Write, Truncate, Sync, Rename, Remove, SyncDir, Marker } kind;
    Rec(Kind k, int i = -1, std::string p = {}, std::string t = {})
        : kind(k), inode(i), path(std::move(p)), to(std::move(t)) {}
    int inode = -1;
    std::string path, to;
    uint64_t offset = 0;  // Write: offset; Truncate: size
    std::vector<uint8_t> bytes;
    uint64_t marker = 0;
  };

  using Files = std::map<std::string, std::vector<uint8_t>>;  // path -> content

  FaultFileSystem() = default;
  // A file system holding `files`, all durable.
  explicit FaultFileSystem(const Files& files) {
    for (auto& [p, data] : files) {
      int id = int(inodes_.size());
      inodes_.push_back(data);
      names_[p] = id;
    }
  }

  // ---- fault injection ----
  // The n-th sync() or syncDir() from now on (1 = the next) fails with EIO.
  void failSyncAfter(int n) {
    std::lock_guard<std::mutex> lk(mu_);
    failIn_ = n;
  }

  // Direct I/O (openDirect) is taken once this is set. A direct handle writes to the same
  // file, recorded as any write, and refuses (throws std::invalid_argument) a buffer, offset or
  // size that is not a multiple of 4096, as O_DIRECT does.
  void takeDirectIo(bool on) { direct_ = on; }
  size_t directOpens() const { return directOpens_; }

  // ---- FileSystem ----
  std::unique_ptr<File> open(const std::string& path, bool create) override;
  std::unique_ptr<File> openDirect(const std::string& path) override;
  bool exists(const std::string& path) override {
    std::lock_guard<std::mutex> lk(mu_);
    return names_.count(path) > 0;
  }
  void rename(const std::string& from, const std::string& to) override {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = names_.find(from);
    if (it == names_.end()) throw std::system_error(ENOENT, std::generic_category(), from);
    int id = it->second;
    names_.erase(it);
    names_[to] = id;
    record({Rec::Rename, id, from, to});
  }
  void remove(const std::string& path) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (names_.erase(path)) record({Rec::Remove, -1, path});
  }
  void makeDir(const std::string&) override {}
  void syncDir(const std::string& path) override {
    std::lock_guard<std::mutex> lk(mu_);
    maybeFail("fsync of directory", path);
    record({Rec::SyncDir});
  }
  std::vector<std::string> list(const std::string& dir) override {
    std::lock_guard<std::mutex> lk(mu_);
    std::vector<std::string> out;
    std::string prefix = dir + "/";
    for (auto& [p, id] : names_)
      if (p.compare(0, prefix.size(), prefix) == 0) out.push_back(p.substr(prefix.size()));
    return out;
  }

  // A marker in the journal (e.g. "batch 7 is durable": the durable callback writes it).
  void mark(uint64_t value) {
    std::lock_guard<std::mutex> lk(mu_);
    Rec r{Rec::Marker};
    r.marker = value;
    journal_.push_back(std::move(r));
  }

  // The current (volatile) content of every file.
  Files current() const {
    std::lock_guard<std::mutex> lk(mu_);
    Files out;
    for (auto& [p, id] : names_) out[p] = inodes_[id];
    return out;
  }

  std::vector<Rec> journal() const {
    std::lock_guard<std::mutex> lk(mu_);
    return journal_;
  }
  size_t syncs() const { return syncs_; }
  // The read-ahead hints (File::willNeed) given so far: {offset, size} per call, in order.
  std::vector<std::pair<uint64_t, uint64_t>> willNeeds() const {
    std::lock_guard<std::mutex> lk(mu_);
    return willNeeds_;
  }

  // ---- crash states ----
  struct CrashState {
    std::string what;  // a description, for failure messages
    Files files;
    uint64_t marker = 0;  // the highest marker recorded before the crash
  };
  // Every crash state after the first `n` operations of `journal` (on top of `initial`).
  static std::vector<CrashState> crashStates(const Files& initial, const std::vector<Rec>& journal,
                                             size_t n, size_t maxReorder = 6);

 private:
  friend class FaultFile;
  void record(Rec r) { journal_.push_back(std::move(r)); }
  void maybeFail(const char* op, const std::string& path) {
    ++syncs_;
    if (failIn_ > 0 && --failIn_ == 0) fatalIoError(op, path, EIO);
  }

  mutable std::mutex mu_;
  std::vector<std::vector<uint8_t>> inodes_;
  std::map<std::string, int> names_;
  std::vector<Rec> journal_;
  std::vector<std::pair<uint64_t, uint64_t>> willNeeds_;
  int failIn_ = 0;
  std::atomic<size_t> syncs_{0};
  bool direct_ = false;
  std::atomic<size_t> directOpens_{0};
};

class FaultFile final : public File {
 public:
  FaultFile(FaultFileSystem& fs, int inode, std::string path, bool direct = false)
      : fs_(fs), inode_(inode), path_(std::move(path)), direct_(direct) {}
  size_t pread(void* buf, size_t size, uint64_t offset) const override {
    std::lock_guard<std::mutex> lk(fs_.mu_);
    auto& d = fs_.inodes_[inode_];
    if (offset >= d.size()) return 0;
    size_t n = std::min<uint64_t>(size, d.size() - offset);
    std::memcpy(buf, d.data() + offset, n);
    return n;
  }
  void pwrite(const void* buf, size_t size, uint64_t offset) override {
    if (direct_ && (reinterpret_cast<uintptr_t>(buf) % 4096 || size % 4096 || offset % 4096))
      throw std::invalid_argument("unaligned direct write of " + std::to_string(size) +
                                  " bytes at " + std::to_string(offset) + " of " + path_);
    std::lock_guard<std::mutex> lk(fs_.mu_);
    auto& d = fs_.inodes_[inode_];
    if (d.size() < offset + size) d.resize(offset + size);
    std::memcpy(d.data() + offset, buf, size);
    FaultFileSystem::Rec r{FaultFileSystem::Rec::Write, inode_, path_};
    r.offset = offset;
    r.bytes.assign(static_cast<const uint8_t*>(buf), static_cast<const uint8_t*>(buf) + size);
    fs_.record(std::move(r));
  }
  void truncate(uint64_t size) override {
    std::lock_guard<std::mutex> lk(fs_.mu_);
    fs_.inodes_[inode_].resize(size);
    FaultFileSystem::Rec r{FaultFileSystem::Rec::Truncate, inode_, path_};
    r.offset = size;
    fs_.record(std::move(r));
  }
  uint64_t size() const override {
    std::lock_guard<std::mutex> lk(fs_.mu_);
    return fs_.inodes_[inode_].size();
  }
  void willNeed(uint64_t offset, uint64_t size) override {
    std::lock_guard<std::mutex> lk(fs_.mu_);
    fs_.willNeeds_.push_back({offset, size});
  }
  void sync() override {
    std::lock_guard<std::mutex> lk(fs_.mu_);
    fs_.maybeFail("fdatasync", path_);
    fs_.record({FaultFileSystem::Rec::Sync, inode_, path_});
  }

 private:
  FaultFileSystem& fs_;
  int inode_;
  std::string path_;
  bool direct_;
};

inline std::unique_ptr<File> FaultFileSystem::open(const std::string& path, bool create) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = names_.find(path);
  int id;
  if (it != names_.end()) {
    id = it->second;
  } else {
    if (!create) throw std::system_error(ENOENT, std::generic_category(), "open " + path);
    id = int(inodes_.size());
    inodes_.emplace_back();
    names_[path] = id;
    record({Rec::Create, id, path});
  }
  return std::make_unique<FaultFile>(*this, id, path);
}

inline std::unique_ptr<File> FaultFileSystem::openDirect(const std::string& path) {
  int id;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = names_.find(path);
    if (!direct_ || it == names_.end()) return nullptr;
    id = it->second;
  }
  auto f = std::make_unique<FaultFile>(*this, id, path, true);
  // The real layer's probe: a block of zeros at offset 0.
  std::unique_ptr<uint8_t, void (*)(void*)> block(static_cast<uint8_t*>(std::aligned_alloc(4096, 4096)), std::free);
  std::memset(block.get(), 0, 4096);
  f->pwrite(block.get(), 4096, 0);
  ++directOpens_;
  return f;
}

// ---- crash-state reconstruction ----

inline std::vector<FaultFileSystem::CrashState> FaultFileSystem::crashStates(
    const Files& initial, const std::vector<Rec>& journal, size_t n, size_t maxReorder) {
  // Replay: durable content per inode, pending ops per inode, durable and pending names.
  struct Inode {
    std::vector<uint8_t> durable;
    std::vector<const Rec*> pending;  // Write / Truncate since the last sync
  };
  std::map<int, Inode> inodes;
  std::map<std::string, int> names;  // durable names
  std::vector<const Rec*> dirPending;
  int nextId = 0;
  // Inodes of `initial` are numbered as the constructor does.
  for (auto& [p, data] : initial) {
    inodes[nextId].durable = data;
    names[p] = nextId++;
  }
  uint64_t marker = 0;
  auto apply = [](std::vector<uint8_t>& d, const Rec& r) {
    if (r.kind == Rec::Truncate) {
      d.resize(r.offset);
    } else {
      if (d.size() < r.offset + r.bytes.size()) d.resize(r.offset + r.bytes.size());
      std::memcpy(d.data() + r.offset, r.bytes.data(), r.bytes.size());
    }
  };
  for (size_t k = 0; k < n; ++k) {
    const Rec& r = journal[k];
    switch (r.kind) {
      case Rec::Create: inodes[r.inode]; dirPending.push_back(&r); break;
      case Rec::Write:
      case Rec::Truncate: inodes[r.inode].pending.push_back(&r); break;
      case Rec::Sync: {
        Inode& in = inodes[r.inode];
        for (const Rec* p : in.pending) apply(in.durable, *p);
        in.pending.clear();
        break;
      }
      case Rec::Rename:
      case Rec::Remove: dirPending.push_back(&r); break;
      case Rec::SyncDir: {
        for (const Rec* p : dirPending) {
          if (p->kind == Rec::Create) names[p->path] = p->inode;
          else if (p->kind == Rec::Rename) { names.erase(p->path); names[p->to] = p->inode; }
          else names.erase(p->path);
        }
        dirPending.clear();
        break;
      }
      case Rec::Marker: marker = std::max(marker, r.marker); break;
    }
  }

  // All pending writes in journal order, to choose from.
  std::vector<const Rec*> pendingWrites;
  for (size_t k = 0; k < n; ++k)
    if (journal[k].kind == Rec::Write) {
      const Rec* r = &journal[k];
      auto& pend = inodes[r->inode].pending;
      if (std::find(pend.begin(), pend.end(), r) != pend.end()) pendingWrites.push_back(r);
    }

  // Builds one state: name changes [0, dirPrefix) applied; each pending op kept unless
  // `skip` says so; `torn` (if any) cut after `tornBytes` bytes.
  auto build = [&](const std::string& what, size_t dirPrefix, const std::set<const Rec*>& skip,
                   const Rec* torn, uint64_t tornBytes) {
    std::map<std::string, int> ns = names;
    for (size_t k = 0; k < dirPrefix; ++k) {
      const Rec* p = dirPending[k];
      if (p->kind == Rec::Create) ns[p->path] = p->inode;
      else if (p->kind == Rec::Rename) { ns.erase(p->path); ns[p->to] = p->inode; }
      else ns.erase(p->path);
    }
    CrashState cs;
    cs.what = what;
    cs.marker = marker;
    for (auto& [path, id] : ns) {
      Inode& in = inodes[id];
      std::vector<uint8_t> d = in.durable;
      for (const Rec* p : in.pending) {
        if (skip.count(p)) continue;
        if (p == torn) {
          Rec part = *p;
          part.bytes.resize(tornBytes);
          if (tornBytes) apply(d, part);
          continue;
        }
        apply(d, *p);
      }
      cs.files[path] = std::move(d);
    }
    return cs;
  };

  std::vector<CrashState> out;
  std::set<const Rec*> none, all(pendingWrites.begin(), pendingWrites.end());
  for (auto& [id, in] : inodes)
    for (const Rec* p : in.pending) all.insert(p);
  size_t dirAll = dirPending.size();
  out.push_back(build("unsynced dropped", 0, all, nullptr, 0));
  if (dirAll) out.push_back(build("unsynced data dropped, names kept", dirAll, all, nullptr, 0));
  bool anyPending = !all.empty();
  if (anyPending || dirAll) out.push_back(build("everything kept", dirAll, none, nullptr, 0));
  for (size_t k = 1; k < dirAll; ++k)
    out.push_back(build("names prefix " + std::to_string(k), k, none, nullptr, 0));
  if (!pendingWrites.empty()) {
    const Rec* last = pendingWrites.back();
    uint64_t begin = last->offset, end = last->offset + last->bytes.size();
    for (uint64_t b = (begin / 512) * 512; b < end; b += 512) {
      uint64_t keep = b <= begin ? 0 : b - begin;
      out.push_back(build("last write torn after " + std::to_string(keep) + " bytes", dirAll,
                          none, last, keep));
    }
    size_t from = pendingWrites.size() > maxReorder ? pendingWrites.size() - maxReorder : 0;
    for (size_t k = from; k + 1 < pendingWrites.size(); ++k)
      out.push_back(build("write " + std::to_string(k) + " of " +
                              std::to_string(pendingWrites.size()) + " unsynced ones lost",
                          dirAll, {pendingWrites[k]}, nullptr, 0));
    if (pendingWrites.size() > 1) {
      // Only the newest unsynced write made it.
      std::set<const Rec*> skip(pendingWrites.begin(), pendingWrites.end() - 1);
      out.push_back(build("only the last unsynced write kept", dirAll, skip, nullptr, 0));
    }
  }
  return out;
}

}  // namespace keel::test
