// keel: SegmentedLog. The on-disk format is in format.h and docs/log-format.md; the contract in
// include/keel/segmented-log.h.
//
// Structure. The owner thread (the caller's) keeps the whole logical state in memory: the hard
// state, the snapshot's metadata, and an index with one 24-byte Loc per entry (term, segment,
// offset, length, type). Writes are encoded on the owner thread into a write buffer and handed,
// as immutable chunks, to the I/O thread through a FIFO of operations (Op). The I/O thread
// performs the operations in order and, at each Sync operation, fdatasyncs every file it
// modified and fsyncs the directory if a name changed, then publishes the batch as durable.
//
// Ordering rules the recovery relies on (each enforced by the I/O thread's FIFO):
//   * Seal(segment N) fdatasyncs N (and the directory) before Create(N + 1) runs: only the
//     last segment can have a torn tail.
//   * A suffix truncation removes the later segments, fsyncs the directory, then ftruncates and
//     fdatasyncs the segment it cuts, all before any write that follows it: new records never
//     land over old bytes that a crash could bring back.
//   * A snapshot is durable (tmp file synced, renamed, directory synced) before the segments it
//     covers are removed.
//   * Create fsyncs the directory first if a removal is pending, so a reused name never meets a
//     stale file of the same name after a crash.
#include <keel/segmented-log.h>

#include "direct-appender.h"
#include "format.h"

#include <algorithm>
#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_set>

namespace keel {

using namespace logformat;

namespace {

constexpr const char* kMetaNames[2] = {"meta-a", "meta-b"};
constexpr uint64_t kScanChunk = 4u << 20;
constexpr uint64_t kMaxInFlightBytes = 64u << 20;
constexpr uint64_t kReceiveFlushBytes = 16u << 20;

struct Segment {
  uint32_t id = 0;          // position key: segments_[id - segments_.front()->id]
  uint64_t first = 0;       // index of its first entry (its name)
  uint64_t epoch = 0;
  std::string path;
  uint64_t bytes = 0;       // owner: logical size, header included
  uint64_t flushedEnd = 0;  // owner: end of the bytes handed to the I/O thread
  // Set at open (owner) or by the I/O thread's Create. The owner dereferences it only after
  // the Create operation completed (ordered by writtenOps_).
  std::shared_ptr<File> file;
};
using SegPtr = std::shared_ptr<Segment>;

// Where an entry is: 24 bytes.
struct Loc {
  uint64_t term;
  uint64_t offsetAndType;  // low 56 bits: offset of the record header; high 8: EntryType
  uint32_t length;         // payload bytes
  uint32_t segId;
  uint64_t offset() const { return offsetAndType & ((1ull << 56) - 1); }
  uint8_t type() const { return uint8_t(offsetAndType >> 56); }
};
static_assert(sizeof(Loc) == 24);

using Chunk = std::vector<uint8_t>;
using ChunkPtr = std::shared_ptr<Chunk>;

struct Op {
  enum Kind { Create, Write, Seal, Truncate, Remove, DirSync, Meta, Snap, SnapPart, RemoveRecv, Sync, Stop } kind;
  uint64_t opNo = 0;
  SegPtr seg;
  uint64_t offset = 0;   // Write: file offset; Truncate: new size
  ChunkPtr data;         // Write, Meta, Snap (the header)
  // Snap: the state machine's bytes, written after the header. The owner keeps the Bytes they
  // belong to alive until the operation was performed (Impl::snapKeep); the I/O thread only
  // reads them.
  const uint8_t* payload = nullptr;
  uint64_t payloadSize = 0;
  // Snap: where the I/O thread leaves the written file, which the owner reads the snapshot
  // from once the operation completed (then it no longer holds the bytes in memory).
  std::shared_ptr<std::shared_ptr<File>> snapOut;
  // SnapPart: a received snapshot's bytes (payload) go to this file at `offset` (the I/O thread
  // creates it with the first part); each but the `lastPart` is also sent on to storage at
  // once, so that little is left to flush when the snapshot is installed. Snap: when set, the
  // data is already in this file (snapshot.recv), and only the header is written before it is
  // renamed.
  std::shared_ptr<std::shared_ptr<File>> recvFile;
  bool lastPart = false;
  uint64_t seq = 0;      // Sync
  int slot = 0;          // Meta
  bool syncMeta = false; // Meta
};

struct InFlight {
  uint64_t opNo;
  uint32_t segId;
  uint64_t offset;
  uint64_t end;  // the chunk's bytes from `end` on were cut by a suffix truncation: stale
  ChunkPtr data;
};

// Membership::encode's format, read back without judging the configuration (the log stores
// what it was given).
bool decodeMembership(const uint8_t* p, size_t n, Membership& out) {
  Membership m;
  for (auto* list : {&m.voters, &m.outgoing, &m.learners}) {
    if (n < 4) return false;
    uint32_t count = get32(p);
    p += 4, n -= 4;
    if (count > n / 8) return false;
    for (uint32_t k = 0; k < count; ++k, p += 8, n -= 8) list->push_back(NodeId{get64(p)});
  }
  if (n != 0) return false;
  out = std::move(m);
  return true;
}

bool allZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

}  // namespace

struct SegmentedLog::Impl {
  Impl(std::string d, Options o) : dir(std::move(d)), opts(std::move(o)) {
    fs = opts.fs ? opts.fs : &posixFileSystem();
    if (opts.segmentBytes < 4096) opts.segmentBytes = 4096;
    if (opts.writeBufferBytes < 4096) opts.writeBufferBytes = 4096;
  }

  std::string dir;
  Options opts;
  FileSystem* fs;
  RecoveryReport report;

  // ---- owner-thread state ----
  HardState hs;
  uint64_t metaSeq = 0;
  int lastSyncedSlot = 1;  // the slot holding the latest record that was (to be) synced
  SnapshotMeta snapMeta;
  uint64_t epoch = 0;
  Bytes snapData;                       // set when the snapshot was given in this process...
  bool snapInMemory = false;
  std::shared_ptr<File> snapFile;       // ...else (and once it is written) read from here
  uint64_t snapDataOffset = 0, snapDataSize = 0;
  // Snapshots handed to the I/O thread and not yet written: the Bytes the Snap operation reads
  // from, and the slot where it leaves the file.
  struct SnapKeep {
    uint64_t opNo;
    Bytes data;
    uint64_t dataOffset;
    std::shared_ptr<std::shared_ptr<File>> file;
  };
  std::deque<SnapKeep> snapKeep;
  // A snapshot being received (receiveSnapshot): its bytes in memory and in snapshot.recv.
  struct Received {
    SnapshotMeta meta;
    Bytes data;
    uint64_t size = 0;
    uint64_t got = 0;         // bytes written into `data`
    uint64_t handedOff = 0;   // bytes handed to the I/O thread
    uint64_t headerBytes = 0; // where the data starts in the file
    bool complete = false;
    std::shared_ptr<std::shared_ptr<File>> file = std::make_shared<std::shared_ptr<File>>();
  };
  std::shared_ptr<Received> received;
  std::deque<std::pair<uint64_t, Bytes>> keepAlive;  // bytes the I/O thread reads, until op done

  std::deque<SegPtr> segments;
  uint32_t nextSegId = 0;
  std::deque<Loc> index;                // index[k] is entry snapMeta.index + 1 + k

  Chunk pend;                           // records not yet handed to the I/O thread
  SegPtr pendSeg;
  uint64_t pendOff = 0;
  std::deque<InFlight> inflight;        // handed over, maybe not yet written
  uint64_t inflightBytes = 0;
  std::vector<ChunkPtr> freeChunks;
  uint64_t nextOpNo = 0;
  uint64_t nextSeq = 0;

  // ---- shared ----
  std::mutex mu;
  std::condition_variable ioCv;         // the I/O thread waits for work
  mutable std::condition_variable durableCv;
  std::vector<Op> queue;
  bool ioSleeping = false;
  std::atomic<uint64_t> writtenOps{0};
  std::atomic<uint64_t> durable{0};
  std::function<void(uint64_t)> callback;
  std::thread io;

  // ---- I/O-thread state ----
  std::vector<std::shared_ptr<File>> dirty;
  bool dirDirty = false;
  std::shared_ptr<File> metaFiles[2];
  std::unique_ptr<DirectAppender> recvDirect;  // writes the parts of the receive of recvDirectOf
  const void* recvDirectOf = nullptr;

  std::string path(const std::string& name) const { return dir + "/" + name; }

  // =========================== recovery ===========================

  void open() {
    fs->makeDir(dir);
    std::vector<std::string> names = fs->list(dir);
    bool removedAny = false;
    auto removeFile = [&](const std::string& name) {
      fs->remove(path(name));
      report.removed.push_back(name);
      removedAny = true;
    };
    for (const char* leftover : {"snapshot.tmp", "snapshot.recv"})
      if (std::find(names.begin(), names.end(), leftover) != names.end()) removeFile(leftover);

    loadMeta();
    loadSnapshot();

    std::vector<std::pair<uint64_t, std::string>> segNames;
    for (auto& n : names) {
      uint64_t first;
      if (parseSegmentName(n, first)) segNames.emplace_back(first, n);
    }
    std::sort(segNames.begin(), segNames.end());

    // Headers: drop stale epochs and a torn new last segment.
    std::vector<SegPtr> segs;
    for (size_t k = 0; k < segNames.size(); ++k) {
      auto& [first, name] = segNames[k];
      auto seg = std::make_shared<Segment>();
      seg->first = first;
      seg->path = path(name);
      seg->file = std::shared_ptr<File>(fs->open(seg->path, false));
      uint64_t size = seg->file->size();
      uint8_t h[kSegmentHeaderBytes] = {};
      size_t got = seg->file->pread(h, sizeof h, 0);
      bool ok = got == sizeof h && std::memcmp(h, kSegmentMagic, 8) == 0 &&
                get32(h + 8) == kVersion && get32(h + 12) == segmentHeaderCheck(h);
      if (!ok) {
        bool last = k + 1 == segNames.size();
        // Torn: the file was created but its first write never reached the disk.
        if (last && (size < kSegmentHeaderBytes || allZero(h, sizeof h))) {
          report.tornTail = true;
          report.tornFile = seg->path;
          report.tornOffset = 0;
          report.tornBytes = size;
          seg->file.reset();
          removeFile(name);
          continue;
        }
        throw CorruptionError(seg->path, 0, "bad segment header");
      }
      seg->epoch = get64(h + 16);
      if (get64(h + 24) != first)
        throw CorruptionError(seg->path, 24, "segment header names first index " +
                                                 std::to_string(get64(h + 24)));
      if (seg->epoch < epoch) {  // replaced by installSnapshot
        seg->file.reset();
        removeFile(name);
        continue;
      }
      if (seg->epoch > epoch)
        throw CorruptionError(seg->path, 16, "segment epoch " + std::to_string(seg->epoch) +
                                                 " is newer than the snapshot's " +
                                                 std::to_string(epoch));
      segs.push_back(std::move(seg));
    }

    // Segments wholly covered by the snapshot.
    const uint64_t snapIndex = snapMeta.index.value;
    size_t keepFrom = 0;
    while (keepFrom + 1 < segs.size() && segs[keepFrom + 1]->first <= snapIndex + 1) {
      std::string name = segs[keepFrom]->path.substr(dir.size() + 1);
      segs[keepFrom]->file.reset();
      removeFile(name);
      ++keepFrom;
    }
    segs.erase(segs.begin(), segs.begin() + keepFrom);

    // Scan.
    uint64_t expected = 0;
    for (size_t k = 0; k < segs.size(); ++k) {
      Segment& seg = *segs[k];
      if (k == 0) {
        if (seg.first > snapIndex + 1)
          throw CorruptionError(seg.path, 24, "the log starts at index " +
                                                  std::to_string(seg.first) +
                                                  " but the snapshot ends at " +
                                                  std::to_string(snapIndex));
      } else if (seg.first != expected) {
        throw CorruptionError(seg.path, 24, "gap: the previous segment ends before index " +
                                                std::to_string(expected) +
                                                ", this one starts at " +
                                                std::to_string(seg.first));
      }
      seg.id = uint32_t(k);
      expected = scanSegment(seg, k + 1 == segs.size(), seg.first);
      ++report.segments;
    }
    nextSegId = uint32_t(segs.size());
    if (!segs.empty() && expected <= snapIndex) {
      // Every entry on disk is older than the snapshot: start afresh after it.
      for (auto& s : segs) {
        s->file.reset();
        removeFile(s->path.substr(dir.size() + 1));
      }
      segs.clear();
      index.clear();
      nextSegId = 0;
    }
    for (auto& s : segs) {
      s->flushedEnd = s->bytes;
      segments.push_back(s);
    }
    report.entries = index.size();
    // What was read back may be in the page cache only (the process, not the machine, died):
    // make it durable before anyone acts on it.
    if (!segments.empty()) segments.back()->file->sync();
    for (auto& f : metaFiles)
      if (f) f->sync();
    fs->syncDir(dir);
    (void)removedAny;
    if (report.tornTail)
      std::fprintf(stderr, "keel: log %s: cut a torn tail of %llu bytes from %s at offset %llu\n",
                   dir.c_str(), (unsigned long long)report.tornBytes, report.tornFile.c_str(),
                   (unsigned long long)report.tornOffset);
  }

  // Reads every record of `seg`, checks it and indexes those after the snapshot. Returns the
  // index after its last entry. Sets seg.bytes.
  uint64_t scanSegment(Segment& seg, bool last, uint64_t expected) {
    File& f = *seg.file;
    const uint64_t size = f.size();
    const uint64_t snapIndex = snapMeta.index.value;
    std::vector<uint8_t> buf;
    uint64_t bufOff = 0, bufLen = 0;
    auto fetch = [&](uint64_t off, uint64_t n) -> const uint8_t* {
      if (off >= bufOff && off + n <= bufOff + bufLen) return buf.data() + (off - bufOff);
      uint64_t want = std::min(std::max(n, kScanChunk), size - off);
      if (buf.size() < want) buf.resize(want);
      bufLen = f.pread(buf.data(), want, off);
      bufOff = off;
      // Let the disk fetch the next chunk while this one is checked.
      if (off + bufLen < size) f.willNeed(off + bufLen, kScanChunk);
      if (bufLen < n) throw CorruptionError(seg.path, off, "short read");
      return buf.data();
    };
    // A bad record at `off` whose bytes (as far as they can be delimited) end at `end`.
    auto bad = [&](uint64_t off, uint64_t end, bool incomplete, const std::string& why) {
      if (!last) throw CorruptionError(seg.path, off, why);
      // A write torn at a sector boundary leaves zeros from that boundary to the end of the
      // record (a write holds whole records, and new records only go to fresh space): the
      // record is torn when it ends in zeros that start at its beginning or at a boundary.
      bool torn = incomplete;
      if (!torn) {
        const uint8_t* r = fetch(off, end - off);
        uint64_t z = end;
        while (z > off && r[z - 1 - off] == 0) --z;
        torn = z == off || (z < end && (z + kSectorBytes - 1) / kSectorBytes * kSectorBytes < end);
      }
      if (!torn) throw CorruptionError(seg.path, off, why);
      report.tornTail = true;
      report.tornFile = seg.path;
      report.tornOffset = off;
      report.tornBytes = size - off;
      f.truncate(off);
      f.sync();
      seg.bytes = off;
    };

    uint64_t off = kSegmentHeaderBytes;
    seg.bytes = size;
    while (off < size) {
      if (size - off < kRecordHeaderBytes) {
        bad(off, size, true, "incomplete record header");
        return expected;
      }
      const uint8_t* h = fetch(off, kRecordHeaderBytes);
      if (hash32(h, 24) != get32(h + 24)) {
        bad(off, off + kRecordHeaderBytes, false, "bad record header checksum");
        return expected;
      }
      uint32_t len = get32(h);
      uint8_t type = h[4];
      uint64_t term = get64(h + 8), idx = get64(h + 16);
      uint32_t check = get32(h + 28);
      if (len > kMaxPayload || type > 1 || h[5] || h[6] || h[7])
        throw CorruptionError(seg.path, off, "bad record header fields");
      if (size - off - kRecordHeaderBytes < len) {
        bad(off, size, true, "record runs past the end of the file");
        return expected;
      }
      const uint8_t* p = fetch(off, kRecordHeaderBytes + len) + kRecordHeaderBytes;
      if (hash32(p, len) != check) {
        bad(off, off + kRecordHeaderBytes + len, false, "bad payload checksum");
        return expected;
      }
      if (idx != expected)
        throw CorruptionError(seg.path, off + 16, "record has index " + std::to_string(idx) +
                                                      ", expected " + std::to_string(expected));
      if (idx > snapIndex) {
        Loc loc;
        loc.term = term;
        loc.offsetAndType = off | (uint64_t(type) << 56);
        loc.length = len;
        loc.segId = seg.id;
        index.push_back(loc);
      }
      ++expected;
      off += kRecordHeaderBytes + len;
    }
    return expected;
  }

  void loadMeta() {
    bool found = false;
    for (int slot = 0; slot < 2; ++slot) {
      std::string p = path(kMetaNames[slot]);
      if (!fs->exists(p)) continue;
      auto f = fs->open(p, false);
      uint8_t m[kMetaBytes] = {};
      size_t got = f->pread(m, sizeof m, 0);
      if (allZero(m, got)) continue;  // created, never written (a crash before its sync)
      metaFiles[slot] = std::shared_ptr<File>(std::move(f));
      if (got < kMetaBytes) throw CorruptionError(p, got, "meta file is short");
      if (std::memcmp(m, kMetaMagic, 8) != 0 || get32(m + 8) != kVersion ||
          get64(m + 56) != hash64(m, 56))
        throw CorruptionError(p, 0, "bad meta record");
      uint64_t seq = get64(m + 16);
      if (!found || seq > metaSeq) {
        found = true;
        metaSeq = seq;
        hs.term = Term{get64(m + 24)};
        hs.vote = NodeId{get64(m + 32)};
        hs.commit = Index{get64(m + 40)};
        lastSyncedSlot = slot;
      }
    }
  }

  void loadSnapshot() {
    snapMeta = SnapshotMeta{};
    snapMeta.membership = opts.initialMembership;
    std::string p = path("snapshot");
    if (!fs->exists(p)) return;
    auto f = std::shared_ptr<File>(fs->open(p, false));
    uint64_t size = f->size();
    uint8_t h[kSnapFixedBytes];
    if (f->pread(h, sizeof h, 0) != sizeof h) throw CorruptionError(p, 0, "snapshot is short");
    if (std::memcmp(h, kSnapMagic, 8) != 0 || get32(h + 8) != kVersion)
      throw CorruptionError(p, 0, "bad snapshot header");
    uint32_t mlen = get32(h + 12);
    uint64_t dlen = get64(h + 40), dhash = get64(h + 48);
    if (mlen > (1u << 24) || kSnapFixedBytes + mlen + 8 > size)
      throw CorruptionError(p, 0, "bad snapshot header (membership length)");
    std::vector<uint8_t> hdr(kSnapFixedBytes + mlen + 8);
    if (f->pread(hdr.data(), hdr.size(), 0) != hdr.size())
      throw CorruptionError(p, 0, "snapshot is short");
    if (get64(hdr.data() + kSnapFixedBytes + mlen) != hash64(hdr.data(), kSnapFixedBytes + mlen))
      throw CorruptionError(p, 0, "bad snapshot header checksum");
    uint64_t dataOff = hdr.size();
    if (size != dataOff + dlen)
      throw CorruptionError(p, dataOff, "snapshot data is " + std::to_string(size - dataOff) +
                                            " bytes, the header says " + std::to_string(dlen));
    // Check the data, streaming.
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    std::vector<uint8_t> buf(std::min<uint64_t>(dlen, kScanChunk));
    for (uint64_t o = 0; o < dlen;) {
      size_t n = std::min<uint64_t>(buf.size(), dlen - o);
      if (f->pread(buf.data(), n, dataOff + o) != n) {
        XXH3_freeState(st);
        throw CorruptionError(p, dataOff + o, "snapshot data is short");
      }
      XXH3_64bits_update(st, buf.data(), n);
      o += n;
    }
    uint64_t got = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (got != dhash) throw CorruptionError(p, dataOff, "bad snapshot data checksum");
    Membership m;
    if (!decodeMembership(hdr.data() + kSnapFixedBytes, mlen, m))
      throw CorruptionError(p, kSnapFixedBytes, "bad snapshot membership");
    epoch = get64(h + 16);
    snapMeta.index = Index{get64(h + 24)};
    snapMeta.term = Term{get64(h + 32)};
    snapMeta.membership = std::move(m);
    snapFile = std::move(f);
    snapDataOffset = dataOff;
    snapDataSize = dlen;
  }

  // =========================== the I/O thread ===========================

  void enqueue(Op op) {
    op.opNo = ++nextOpNo;
    bool wake;
    {
      std::lock_guard<std::mutex> lk(mu);
      queue.push_back(std::move(op));
      wake = ioSleeping;
      ioSleeping = false;  // one wake-up for the ops that follow it in this turn
    }
    // Outside the lock: woken while it is held, the I/O thread would block on it at once.
    if (wake) ioCv.notify_one();
  }

  void markDirty(const std::shared_ptr<File>& f) {
    for (auto& d : dirty)
      if (d == f) return;
    dirty.push_back(f);
  }

  void syncDirty() {
    for (auto& f : dirty) f->sync();
    dirty.clear();
  }

  void syncDirIfDirty() {
    if (dirDirty) {
      fs->syncDir(dir);
      dirDirty = false;
    }
  }

  void ioLoop() {
    std::vector<Op> work;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu);
        while (queue.empty()) {
          ioSleeping = true;
          ioCv.wait(lk);
          ioSleeping = false;
        }
        work.swap(queue);
      }
      for (Op& op : work) {
        if (op.kind == Op::Stop) return;
        try {
          execute(op);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "keel: FATAL: log %s: I/O failed: %s\n", dir.c_str(), e.what());
          std::fflush(stderr);
          std::abort();
        }
        writtenOps.store(op.opNo, std::memory_order_release);
      }
      work.clear();
    }
  }

  void execute(Op& op) {
    switch (op.kind) {
      case Op::Create: {
        syncDirIfDirty();  // a pending removal of the same name must not come back
        op.seg->file = std::shared_ptr<File>(fs->open(op.seg->path, true));
        dirDirty = true;
        break;
      }
      case Op::Write:
        op.seg->file->pwrite(op.data->data(), op.data->size(), op.offset);
        markDirty(op.seg->file);
        break;
      case Op::Seal:
        // Everything of this segment (and its name) is durable before the next one exists.
        for (auto it = dirty.begin(); it != dirty.end(); ++it)
          if (*it == op.seg->file) {
            (*it)->sync();
            dirty.erase(it);
            break;
          }
        syncDirIfDirty();
        break;
      case Op::Truncate:
        syncDirIfDirty();  // the removal of later segments first
        op.seg->file->truncate(op.offset);
        op.seg->file->sync();
        break;
      case Op::Remove:
        for (auto it = dirty.begin(); it != dirty.end(); ++it)
          if (*it == op.seg->file) {
            dirty.erase(it);
            break;
          }
        fs->remove(op.seg->path);
        op.seg->file.reset();
        dirDirty = true;
        break;
      case Op::DirSync:
        syncDirIfDirty();
        break;
      case Op::Meta: {
        auto& f = metaFiles[op.slot];
        if (!f) {
          std::string p = path(kMetaNames[op.slot]);
          bool existed = fs->exists(p);
          f = std::shared_ptr<File>(fs->open(p, true));
          if (!existed) dirDirty = true;
        }
        f->pwrite(op.data->data(), op.data->size(), 0);
        if (op.syncMeta) markDirty(f);
        break;
      }
      case Op::SnapPart: {
        auto& f = *op.recvFile;
        if (!f) {
          f = std::shared_ptr<File>(fs->open(path("snapshot.recv"), true));
          f->truncate(0);
          // Past the page cache where the file system allows it.
          recvDirect.reset();
          if (auto d = fs->openDirect(path("snapshot.recv")))
            recvDirect = std::make_unique<DirectAppender>(std::move(d), op.offset);
          recvDirectOf = op.recvFile.get();
        }
        if (recvDirect && recvDirectOf == op.recvFile.get()) {
          recvDirect->append(op.payload, op.payloadSize);
          if (op.lastPart) {
            recvDirect->finish();
            f->truncate(recvDirect->end());  // the padding of the last block goes
            recvDirect.reset();
          }
        } else {
          if (op.payloadSize) f->pwrite(op.payload, op.payloadSize, op.offset);
          if (!op.lastPart) f->startWriteback(op.offset, op.payloadSize);
        }
        break;
      }
      case Op::RemoveRecv: {
        if (recvDirectOf == op.recvFile.get()) recvDirect.reset();
        if (*op.recvFile) {
          op.recvFile->reset();
          fs->remove(path("snapshot.recv"));
          dirDirty = true;
        }
        break;
      }
      case Op::Snap: {
        std::string tmp = path(op.recvFile ? "snapshot.recv" : "snapshot.tmp");
        std::shared_ptr<File> f;
        if (op.recvFile) {
          // The data is in place (SnapPart): the header completes the file.
          f = *op.recvFile;
          op.recvFile->reset();
          if (!f) {  // no part was written (an empty snapshot)
            f = std::shared_ptr<File>(fs->open(tmp, true));
            f->truncate(0);
          }
          f->pwrite(op.data->data(), op.data->size(), 0);
        } else {
          f = std::shared_ptr<File>(fs->open(tmp, true));
          f->truncate(0);
          f->pwrite(op.data->data(), op.data->size(), 0);
          if (op.payloadSize) f->pwrite(op.payload, op.payloadSize, op.data->size());
        }
        f->sync();
        fs->rename(tmp, path("snapshot"));
        fs->syncDir(dir);
        dirDirty = false;
        // The open file stays valid under its new name; the owner reads the snapshot from it.
        if (op.snapOut) *op.snapOut = std::move(f);
        break;
      }
      case Op::Sync: {
        syncDirty();
        syncDirIfDirty();
        // The callback runs first, so that waitDurable(seq) returning implies it ran.
        if (callback) callback(op.seq);
        durable.store(op.seq, std::memory_order_release);
        { std::lock_guard<std::mutex> lk(mu); }
        durableCv.notify_all();
        break;
      }
      case Op::Stop:
        break;
    }
  }

  // =========================== owner-thread writes ===========================

  ChunkPtr newChunk() {
    if (!freeChunks.empty()) {
      ChunkPtr c = std::move(freeChunks.back());
      freeChunks.pop_back();
      return c;
    }
    auto c = std::make_shared<Chunk>();
    c->reserve(std::min<uint64_t>(opts.writeBufferBytes, 256 << 10));
    return c;
  }

  // Drops in-flight chunks the I/O thread has written; a snapshot that was written is read
  // from its file from then on, and its bytes are no longer held in memory.
  void retire() {
    uint64_t done = writtenOps.load(std::memory_order_acquire);
    while (!snapKeep.empty() && snapKeep.front().opNo <= done) {
      SnapKeep& k = snapKeep.front();
      if (snapInMemory && k.data.data() == snapData.data() && *k.file) {
        snapFile = *k.file;
        snapDataOffset = k.dataOffset;
        snapInMemory = false;
        snapData = Bytes();
      }
      snapKeep.pop_front();
    }
    while (!keepAlive.empty() && keepAlive.front().first <= done) keepAlive.pop_front();
    // A finished receive that nobody holds any more (the core did not install it: it had the
    // entries already) is dropped rather than kept in memory.
    if (received && received->complete && keepAlive.empty() && received->data.useCount() == 1) dropReceived();
    while (!inflight.empty() && inflight.front().opNo <= done) {
      ChunkPtr c = std::move(inflight.front().data);
      inflight.pop_front();
      inflightBytes -= c->size();
      if (c.use_count() == 1 && freeChunks.size() < 4 && c->capacity() <= 4 * opts.writeBufferBytes) {
        c->clear();
        freeChunks.push_back(std::move(c));
      }
    }
  }

  void flush() {
    if (pend.empty()) return;
    // Back-pressure: the owner may run ahead of the disk by a bounded amount only.
    while (inflightBytes > kMaxInFlightBytes) {
      retire();
      if (inflightBytes > kMaxInFlightBytes) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    ChunkPtr c = newChunk();
    c->swap(pend);
    Op op;
    op.kind = Op::Write;
    op.seg = pendSeg;
    op.offset = pendOff;
    op.data = c;
    pendSeg->flushedEnd = std::max(pendSeg->flushedEnd, pendOff + c->size());
    enqueue(std::move(op));
    uint64_t end = pendOff + c->size();
    inflightBytes += c->size();
    inflight.push_back(InFlight{nextOpNo, pendSeg->id, pendOff, end, std::move(c)});
    pendSeg.reset();
  }

  // Reserves `n` bytes at the end of the active segment in the write buffer.
  uint8_t* reserve(Segment& seg, const SegPtr& segPtr, uint64_t n) {
    if (pendSeg && (pendSeg.get() != &seg || pendOff + pend.size() != seg.bytes)) flush();
    if (!pendSeg) {
      pendSeg = segPtr;
      pendOff = seg.bytes;
    }
    size_t at = pend.size();
    pend.resize(at + n);
    seg.bytes += n;
    return pend.data() + at;
  }

  SegPtr& active() { return segments.back(); }

  void startSegment(uint64_t first) {
    if (!segments.empty()) {
      flush();
      Op seal;
      seal.kind = Op::Seal;
      seal.seg = segments.back();
      enqueue(std::move(seal));
    }
    auto seg = std::make_shared<Segment>();
    seg->id = nextSegId++;
    seg->first = first;
    seg->epoch = epoch;
    seg->path = path(segmentName(first));
    seg->bytes = 0;
    segments.push_back(seg);
    Op create;
    create.kind = Op::Create;
    create.seg = seg;
    enqueue(std::move(create));
    uint8_t* h = reserve(*seg, seg, kSegmentHeaderBytes);
    encodeSegmentHeader(h, epoch, first);
  }

  void removeSegment(SegPtr seg) {
    if (pendSeg == seg) {
      pend.clear();
      pendSeg.reset();
    }
    Op op;
    op.kind = Op::Remove;
    op.seg = std::move(seg);
    enqueue(std::move(op));
  }

  // Segment ids grow and are never reused, so a stale in-flight chunk never matches.
  Segment& segmentOf(const Loc& l) const {
    auto it = std::lower_bound(segments.begin(), segments.end(), l.segId,
                               [](const SegPtr& s, uint32_t id) { return s->id < id; });
    return **it;
  }

  uint64_t lastIdx() const { return snapMeta.index.value + index.size(); }

  // Drops entries [i, lastIndex].
  void truncateSuffix(uint64_t i) {
    const Loc& loc = index[i - snapMeta.index.value - 1];
    uint32_t keepId = loc.segId;
    uint64_t cut = loc.offset();
    index.resize(i - snapMeta.index.value - 1);
    bool removedAny = false;
    while (segments.back()->id != keepId) {
      removeSegment(segments.back());
      segments.pop_back();
      removedAny = true;
    }
    SegPtr seg = segments.back();
    if (seg->first == i) {  // nothing of it stays
      removeSegment(seg);
      segments.pop_back();
      removedAny = true;
    }
    if (removedAny) {
      // The removals are durable before any later write: a crash must not find new records
      // followed by a segment that was removed.
      Op op;
      op.kind = Op::DirSync;
      enqueue(std::move(op));
    }
    if (seg->first == i) return;
    for (auto& f : inflight)
      if (f.segId == seg->id) f.end = std::max(f.offset, std::min(f.end, cut));
    if (pendSeg == seg && cut >= pendOff) {
      pend.resize(cut - pendOff);
    } else if (pendSeg == seg) {
      pend.clear();
      pendSeg.reset();
    }
    if (seg->flushedEnd > cut) {
      Op op;
      op.kind = Op::Truncate;
      op.seg = seg;
      op.offset = cut;
      enqueue(std::move(op));
      seg->flushedEnd = cut;
    }
    seg->bytes = cut;
  }

  // The snapshot file's header (everything before the data, docs/log-format.md).
  ChunkPtr encodeSnapshotHeader(const Snapshot& s, uint64_t ep) {
    Bytes m = s.meta.membership.encode();
    auto c = std::make_shared<Chunk>(kSnapFixedBytes + m.size() + 8);
    uint8_t* p = c->data();
    std::memcpy(p, kSnapMagic, 8);
    put32(p + 8, kVersion);
    put32(p + 12, uint32_t(m.size()));
    put64(p + 16, ep);
    put64(p + 24, s.meta.index.value);
    put64(p + 32, s.meta.term.value);
    put64(p + 40, s.data.size());
    put64(p + 48, hash64(s.data.data(), s.data.size()));
    if (m.size()) std::memcpy(p + kSnapFixedBytes, m.data(), m.size());
    put64(p + kSnapFixedBytes + m.size(), hash64(p, kSnapFixedBytes + m.size()));
    return c;
  }

  // `install`: a snapshot from the leader (it may be the one receiveSnapshot() took in, and
  // replaces any other receive); else a local one (compact), which leaves a receive alone.
  void saveSnapshot(const Snapshot& s, bool install) {
    flush();
    Op op;
    op.kind = Op::Snap;
    op.data = encodeSnapshotHeader(s, epoch);
    if (install && received && received->complete && s.data.size() == received->size &&
        (s.data.empty() || s.data.data() == received->data.data()) && op.data->size() == received->headerBytes) {
      // The bytes of a snapshot received with receiveSnapshot(): already in snapshot.recv.
      op.recvFile = received->file;
      received.reset();
    } else {
      if (install) dropReceived();
      // No copy of the data: the I/O thread writes it from s.data, which snapKeep holds.
      op.payload = s.data.data();
      op.payloadSize = s.data.size();
    }
    op.snapOut = std::make_shared<std::shared_ptr<File>>();
    uint64_t dataOffset = op.data->size();
    auto out = op.snapOut;
    enqueue(std::move(op));
    snapKeep.push_back(SnapKeep{nextOpNo, s.data, dataOffset, std::move(out)});
    snapMeta = s.meta;
    snapData = s.data;
    snapInMemory = true;
    snapFile.reset();
    snapDataSize = s.data.size();
  }

  // Abandons the snapshot being received, if any: its file goes, its bytes once written.
  void dropReceived() {
    if (!received) return;
    Op op;
    op.kind = Op::RemoveRecv;
    op.recvFile = received->file;
    enqueue(std::move(op));
    received.reset();
  }

  // Hands the received bytes [handedOff, got) to the I/O thread.
  void handOffReceived(bool last) {
    Received& r = *received;
    if (r.got == r.handedOff && !last) return;
    Op op;
    op.kind = Op::SnapPart;
    op.recvFile = r.file;
    op.payload = r.data.data() + r.handedOff;
    op.payloadSize = r.got - r.handedOff;
    op.offset = r.headerBytes + r.handedOff;
    op.lastPart = last;
    enqueue(std::move(op));
    keepAlive.emplace_back(nextOpNo, r.data);
    r.handedOff = r.got;
  }

  // =========================== owner-thread reads ===========================

  // Copies [off, off + n) of segment `seg` from the write buffer or an in-flight chunk.
  bool readCached(uint32_t segId, uint64_t off, uint64_t n, uint8_t* out) const {
    if (pendSeg && pendSeg->id == segId && off >= pendOff && off + n <= pendOff + pend.size()) {
      std::memcpy(out, pend.data() + (off - pendOff), n);
      return true;
    }
    for (auto it = inflight.rbegin(); it != inflight.rend(); ++it) {
      if (it->segId == segId && off >= it->offset && off + n <= it->end) {
        std::memcpy(out, it->data->data() + (off - it->offset), n);
        return true;
      }
    }
    return false;
  }

  Entry makeEntry(uint64_t i, const Loc& l, const uint8_t* rec, const Segment& seg) const {
    // Checked again on every read: a bit that rots after open is not served.
    if (hash32(rec, 24) != get32(rec + 24) || get32(rec) != l.length ||
        get64(rec + 16) != i || hash32(rec + kRecordHeaderBytes, l.length) != get32(rec + 28))
      throw CorruptionError(seg.path, l.offset(), "record changed on disk since it was written");
    Entry e;
    e.term = Term{l.term};
    e.index = Index{i};
    e.type = EntryType(l.type());
    e.data = Bytes(rec + kRecordHeaderBytes, l.length);
    return e;
  }
};

// =========================== public methods ===========================

SegmentedLog::SegmentedLog(std::string dir, Options options)
    : impl_(std::make_unique<Impl>(std::move(dir), std::move(options))) {
  impl_->open();
  impl_->io = std::thread([this] { impl_->ioLoop(); });
}

SegmentedLog::~SegmentedLog() {
  Impl& m = *impl_;
  m.flush();
  Op sync;
  sync.kind = Op::Sync;
  sync.seq = ++m.nextSeq;
  m.enqueue(std::move(sync));
  Op stop;
  stop.kind = Op::Stop;
  m.enqueue(std::move(stop));
  m.io.join();
}

HardState SegmentedLog::hardState() const { return impl_->hs; }
Index SegmentedLog::firstIndex() const { return impl_->snapMeta.index.next(); }
Index SegmentedLog::lastIndex() const { return Index{impl_->lastIdx()}; }
SnapshotMeta SegmentedLog::snapshotMeta() const { return impl_->snapMeta; }
const SegmentedLog::RecoveryReport& SegmentedLog::recoveryReport() const noexcept {
  return impl_->report;
}
const std::string& SegmentedLog::dir() const noexcept { return impl_->dir; }

Term SegmentedLog::term(Index i) const {
  const Impl& m = *impl_;
  uint64_t snap = m.snapMeta.index.value;
  if (i.value == snap) return m.snapMeta.term;
  if (i.value < snap || i.value > m.lastIdx())
    throw std::out_of_range("SegmentedLog::term: index " + toString(i) + " not in log");
  return Term{m.index[i.value - snap - 1].term};
}

void SegmentedLog::entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const {
  Impl& m = *impl_;
  if (lo < firstIndex() || hi > lastIndex().next() || lo > hi)
    throw std::out_of_range("SegmentedLog::entries: range [" + toString(lo) + ", " +
                            toString(hi) + ") not in log " + toString(firstIndex()) + ".." +
                            toString(lastIndex()));
  m.retire();
  const uint64_t base = m.snapMeta.index.value + 1;
  uint64_t bytes = 0;
  std::vector<uint8_t> buf;
  uint64_t i = lo.value;
  while (i < hi.value) {
    // A run of consecutive records in one segment, within maxBytes: one read.
    const Loc& first = m.index[i - base];
    uint64_t j = i;
    uint64_t runBytes = 0;
    uint64_t runPayload = 0;
    while (j < hi.value) {
      const Loc& l = m.index[j - base];
      if (l.segId != first.segId) break;
      if (j != i && l.offset() != first.offset() + runBytes) break;
      uint64_t nb = bytes + runPayload + l.length;
      if (nb > maxBytes && (j != lo.value)) break;
      runPayload += l.length;
      runBytes += kRecordHeaderBytes + l.length;
      ++j;
      if (nb > maxBytes) break;  // the one entry we always give
    }
    if (j == i) break;  // maxBytes reached
    const Segment& seg = m.segmentOf(first);
    if (buf.size() < runBytes) buf.resize(runBytes);
    bool cached = m.readCached(first.segId, first.offset(), runBytes, buf.data());
    if (!cached) {
      // Possibly split between the file and the buffer: read entry by entry then.
      bool whole = true;
      for (uint64_t k = i; k < j; ++k) {
        const Loc& l = m.index[k - base];
        if (m.readCached(l.segId, l.offset(), kRecordHeaderBytes + l.length,
                         buf.data() + (l.offset() - first.offset())))
          whole = false;
      }
      if (whole) {
        if (seg.file->pread(buf.data(), runBytes, first.offset()) != runBytes)
          throw CorruptionError(seg.path, first.offset(), "short read");
      } else {
        for (uint64_t k = i; k < j; ++k) {
          const Loc& l = m.index[k - base];
          uint8_t* at = buf.data() + (l.offset() - first.offset());
          uint64_t n = kRecordHeaderBytes + l.length;
          if (!m.readCached(l.segId, l.offset(), n, at) && seg.file->pread(at, n, l.offset()) != n)
            throw CorruptionError(seg.path, l.offset(), "short read");
        }
      }
    }
    for (uint64_t k = i; k < j; ++k) {
      const Loc& l = m.index[k - base];
      out.push_back(m.makeEntry(k, l, buf.data() + (l.offset() - first.offset()), seg));
    }
    bytes += runPayload;
    i = j;
    if (bytes > maxBytes) break;
  }
}

Snapshot SegmentedLog::snapshot() const {
  Snapshot s;
  s.meta = impl_->snapMeta;
  if (impl_->snapInMemory)
    s.data = impl_->snapData;
  else
    s.data = snapshotChunk(0, impl_->snapDataSize);
  return s;
}

uint64_t SegmentedLog::snapshotSize() const { return impl_->snapDataSize; }

Bytes SegmentedLog::snapshotChunk(uint64_t offset, uint64_t maxBytes) const {
  const Impl& m = *impl_;
  if (offset >= m.snapDataSize) return Bytes();
  uint64_t n = std::min(maxBytes, m.snapDataSize - offset);
  if (m.snapInMemory) return Bytes(m.snapData.data() + offset, n);
  Bytes b = Bytes::uninitialized(n);
  if (m.snapFile->pread(b.mutableData(), n, m.snapDataOffset + offset) != n)
    throw CorruptionError(m.dir + "/snapshot", m.snapDataOffset + offset, "short read");
  return b;
}

namespace {
class SnapshotReaderImpl final : public SegmentedLog::SnapshotReader {
 public:
  SnapshotReaderImpl(SnapshotMeta meta, uint64_t size, Bytes data, std::shared_ptr<File> file,
                     uint64_t fileOffset, std::string path)
      : meta_(std::move(meta)), size_(size), data_(std::move(data)), file_(std::move(file)),
        fileOffset_(fileOffset), path_(std::move(path)) {}
  const SnapshotMeta& meta() const override { return meta_; }
  uint64_t size() const override { return size_; }
  void readInto(uint64_t offset, uint8_t* out, uint64_t n) const override {
    if (offset > size_ || n > size_ - offset)
      throw std::invalid_argument("SnapshotReader::readInto: past the end of the snapshot");
    if (n == 0) return;
    if (!file_) {
      std::memcpy(out, data_.data() + offset, n);
      return;
    }
    if (file_->pread(out, n, fileOffset_ + offset) != n)
      throw CorruptionError(path_, fileOffset_ + offset, "short read");
  }

 private:
  SnapshotMeta meta_;
  uint64_t size_;
  Bytes data_;
  std::shared_ptr<File> file_;
  uint64_t fileOffset_;
  std::string path_;
};
}  // namespace

bool SegmentedLog::releaseWritten() {
  Impl& m = *impl_;
  bool held = m.snapInMemory;
  m.retire();
  return held && !m.snapInMemory;
}

std::shared_ptr<const SegmentedLog::SnapshotReader> SegmentedLog::snapshotReader() const {
  Impl& m = *impl_;
  m.retire();
  if (m.snapInMemory || !m.snapFile)
    return std::make_shared<SnapshotReaderImpl>(m.snapMeta, m.snapDataSize, m.snapInMemory ? m.snapData : Bytes(),
                                                nullptr, 0, "");
  return std::make_shared<SnapshotReaderImpl>(m.snapMeta, m.snapDataSize, Bytes(), m.snapFile, m.snapDataOffset,
                                              m.dir + "/snapshot");
}

namespace {
class SnapshotReceiverImpl final : public SegmentedLog::SnapshotReceiver {
 public:
  SnapshotReceiverImpl(Bytes buffer, std::function<void(const uint8_t*, size_t)> write,
                       std::function<Bytes()> finish, std::function<void()> abandon)
      : buffer_(std::move(buffer)), write_(std::move(write)), finish_(std::move(finish)), abandon_(std::move(abandon)) {}
  ~SnapshotReceiverImpl() override {
    if (!finished_) abandon_();
  }
  void write(const uint8_t* data, size_t n) override { write_(data, n); }
  Bytes finish() override {
    finished_ = true;
    buffer_ = Bytes();  // from now on, whoever holds the bytes decides whether they are kept
    return finish_();
  }
  Bytes buffer() const override { return buffer_; }

 private:
  Bytes buffer_;
  std::function<void(const uint8_t*, size_t)> write_;
  std::function<Bytes()> finish_;
  std::function<void()> abandon_;
  bool finished_ = false;
};
}  // namespace

std::unique_ptr<SegmentedLog::SnapshotReceiver> SegmentedLog::receiveSnapshot(const SnapshotMeta& meta,
                                                                               uint64_t size) {
  Impl& m = *impl_;
  m.retire();
  m.dropReceived();
  auto r = std::make_shared<Impl::Received>();
  r->meta = meta;
  r->size = size;
  r->data = Bytes::uninitialized(size_t(size));
  r->headerBytes = kSnapFixedBytes + meta.membership.encode().size() + 8;
  m.received = r;
  std::weak_ptr<Impl::Received> weak = r;
  Impl* impl = &m;
  return std::make_unique<SnapshotReceiverImpl>(
      r->data,
      [impl, weak](const uint8_t* data, size_t n) {
        auto r = weak.lock();
        if (!r || r != impl->received) throw std::logic_error("SnapshotReceiver::write: the receive was abandoned");
        if (r->complete || n > r->size - r->got)
          throw std::invalid_argument("SnapshotReceiver::write: more bytes than announced");
        if (n) std::memcpy(r->data.mutableData() + r->got, data, n);
        r->got += n;
        impl->retire();
        // Every 16 MiB: to the file and on to the disk, so that both work while the rest
        // streams in.
        if (r->got - r->handedOff >= kReceiveFlushBytes) impl->handOffReceived(false);
      },
      [impl, weak]() -> Bytes {
        auto r = weak.lock();
        if (!r || r != impl->received) throw std::logic_error("SnapshotReceiver::finish: the receive was abandoned");
        if (r->got != r->size) throw std::invalid_argument("SnapshotReceiver::finish: bytes are missing");
        impl->handOffReceived(true);
        r->complete = true;
        return r->data;
      },
      [impl, weak]() {
        auto r = weak.lock();
        if (r && r == impl->received) impl->dropReceived();
      });
}

void SegmentedLog::setHardState(const HardState& hs) {
  Impl& m = *impl_;
  if (hs == m.hs) return;
  // A term or vote change must be durable with the next batch; commit alone need not be. The
  // slot holding the latest record meant to be synced is never overwritten by an unsynced one.
  bool needSync = hs.term != m.hs.term || hs.vote != m.hs.vote;
  m.hs = hs;
  int slot = 1 - m.lastSyncedSlot;
  if (needSync) m.lastSyncedSlot = slot;
  auto c = std::make_shared<Chunk>(kMetaBytes);
  uint8_t* p = c->data();
  std::memcpy(p, kMetaMagic, 8);
  put32(p + 8, kVersion);
  put64(p + 16, ++m.metaSeq);
  put64(p + 24, hs.term.value);
  put64(p + 32, hs.vote.value);
  put64(p + 40, hs.commit.value);
  put64(p + 56, hash64(p, 56));
  Op op;
  op.kind = Op::Meta;
  op.slot = slot;
  op.syncMeta = needSync;
  op.data = std::move(c);
  m.enqueue(std::move(op));
}

void SegmentedLog::append(std::span<const Entry> es) {
  Impl& m = *impl_;
  if (es.empty()) return;
  uint64_t first = es.front().index.value;
  if (first < m.snapMeta.index.value + 1 || first > m.lastIdx() + 1)
    throw std::invalid_argument("SegmentedLog::append: entries start at " + std::to_string(first) +
                                ", the log holds " + toString(firstIndex()) + ".." +
                                toString(lastIndex()));
  for (size_t k = 0; k < es.size(); ++k) {
    if (es[k].index.value != first + k)
      throw std::invalid_argument("SegmentedLog::append: entries are not contiguous: index " +
                                  toString(es[k].index) + " at position " + std::to_string(k));
    if (es[k].data.size() > kMaxPayload)
      throw std::invalid_argument("SegmentedLog::append: entry " + toString(es[k].index) +
                                  " is larger than 1 GiB");
    if (uint8_t(es[k].type) > 1)
      throw std::invalid_argument("SegmentedLog::append: entry " + toString(es[k].index) +
                                  " has an unknown type");
  }
  m.retire();
  if (first <= m.lastIdx()) m.truncateSuffix(first);
  for (const Entry& e : es) {
    uint64_t recBytes = kRecordHeaderBytes + e.data.size();
    if (m.segments.empty() || m.active()->bytes >= m.opts.segmentBytes ||
        (m.active()->bytes + recBytes > m.opts.segmentBytes &&
         m.active()->bytes > kSegmentHeaderBytes))
      m.startSegment(e.index.value);
    Segment& seg = *m.active();
    uint64_t off = seg.bytes;
    uint8_t* r = m.reserve(seg, m.active(), recBytes);
    if (e.data.size()) std::memcpy(r + kRecordHeaderBytes, e.data.data(), e.data.size());
    encodeRecordHeader(r, uint32_t(e.data.size()), uint8_t(e.type), e.term.value, e.index.value,
                       r + kRecordHeaderBytes);
    Loc loc;
    loc.term = e.term.value;
    loc.offsetAndType = off | (uint64_t(uint8_t(e.type)) << 56);
    loc.length = uint32_t(e.data.size());
    loc.segId = seg.id;
    m.index.push_back(loc);
    if (m.pend.size() >= m.opts.writeBufferBytes) m.flush();
  }
}

void SegmentedLog::installSnapshot(const Snapshot& s) {
  Impl& m = *impl_;
  m.retire();
  ++m.epoch;  // segments of older epochs are void once this snapshot is durable
  m.pend.clear();
  m.pendSeg.reset();
  m.saveSnapshot(s, true);
  while (!m.segments.empty()) {
    m.removeSegment(m.segments.back());
    m.segments.pop_back();
  }
  m.index.clear();
}

void SegmentedLog::compact(const Snapshot& s) {
  Impl& m = *impl_;
  uint64_t i = s.meta.index.value;
  if (i < m.snapMeta.index.value || i > m.lastIdx())
    throw std::invalid_argument("SegmentedLog::compact: snapshot index " + std::to_string(i) +
                                " outside the log " + toString(firstIndex().prev()) + ".." +
                                toString(lastIndex()));
  m.retire();
  uint64_t drop = i - m.snapMeta.index.value;
  m.saveSnapshot(s, false);
  for (uint64_t k = 0; k < drop; ++k) m.index.pop_front();
  // Segments whose entries are all covered, except the active one.
  while (m.segments.size() > 1 && m.segments[1]->first <= i + 1) {
    m.removeSegment(m.segments.front());
    m.segments.pop_front();
  }
}

uint64_t SegmentedLog::syncAsync() {
  Impl& m = *impl_;
  m.retire();
  m.flush();
  Op op;
  op.kind = Op::Sync;
  op.seq = ++m.nextSeq;
  m.enqueue(std::move(op));
  return m.nextSeq;
}

uint64_t SegmentedLog::durableSeq() const noexcept {
  return impl_->durable.load(std::memory_order_acquire);
}

void SegmentedLog::waitDurable(uint64_t seq) const {
  Impl& m = *impl_;
  if (m.durable.load(std::memory_order_acquire) >= seq) return;
  std::unique_lock<std::mutex> lk(m.mu);
  m.durableCv.wait(lk, [&] { return m.durable.load(std::memory_order_acquire) >= seq; });
}

void SegmentedLog::onDurable(std::function<void(uint64_t)> callback) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->callback = std::move(callback);
}

void SegmentedLog::sync() { waitDurable(syncAsync()); }

}  // namespace keel
