// keel: SegmentedLog's private parts, shared by segmented-log.c++ (writes, the I/O thread,
// reads) and segmented-log-recovery.c++ (opening a log). The structure is described at the top
// of segmented-log.c++.
#pragma once

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

namespace seglog {

inline constexpr const char* kMetaNames[2] = {"meta-a", "meta-b"};
inline constexpr uint64_t kScanChunk = 4u << 20;
inline constexpr uint64_t kMaxInFlightBytes = 64u << 20;
// A received snapshot passes through staging buffers of this size (a larger write gets one of
// its own), at most this many in use at a time before the receiver says it is backlogged.
inline constexpr uint64_t kStageBytes = 8u << 20;
inline constexpr size_t kMaxStaged = 8;

struct Segment {
  uint32_t id = 0;          // position key: segments_[id - segments_.front()->id]
  uint64_t first = 0;       // index of its first entry (its name)
  uint64_t epoch = 0;
  std::string path;
  uint64_t bytes = 0;       // owner: logical size, header included
  uint64_t flushedEnd = 0;  // owner: end of the bytes handed to the I/O thread
  uint64_t fileEnd = 0;     // I/O thread (after open): the file's size; zeros past the records
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
  uint64_t offset = 0;   // Write: file offset; Truncate, Seal: the segment's new size
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
inline bool decodeMembership(const uint8_t* p, size_t n, Membership& out) {
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

inline bool allZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

}  // namespace seglog
using namespace seglog;

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
  bool metaDeferred = false;  // `hs` has a new commit index not yet handed to the I/O thread
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
  // A snapshot being received (receiveSnapshot): its bytes pass through staging buffers on
  // their way to snapshot.recv.
  struct Received {
    SnapshotMeta meta;
    Bytes data;               // once complete: the bytes, mapped from snapshot.recv
    uint64_t size = 0;
    uint64_t got = 0;         // bytes received
    uint64_t handedOff = 0;   // bytes handed to the I/O thread
    uint64_t headerBytes = 0; // where the data starts in the file
    bool complete = false;
    std::vector<Bytes> staging;  // used again once nobody else holds them
    Bytes current;               // the one being filled: bytes [currentStart, got)
    uint64_t currentStart = 0;
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> hash{XXH3_createState(), XXH3_freeState};
    uint64_t dataHash = 0;    // once complete: hash64 of the bytes, for the file's header
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
  std::vector<Op>* here = nullptr;      // set: enqueue() collects the ops for syncHere()

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

  void open();

  // Reads every record of `seg`, checks it and indexes those after the snapshot. Returns the
  // index after its last entry. Sets seg.bytes.
  uint64_t scanSegment(Segment& seg, bool last, uint64_t expected);

  void loadMeta();

  void loadSnapshot();

  // =========================== the I/O thread ===========================

  void enqueue(Op op);

  void markDirty(const std::shared_ptr<File>& f);

  void syncDirty();

  void syncDirIfDirty();

  // After a write that ended at `end`: zeros past it, Options::zeroAheadBytes ahead (bounded by
  // the segment's size), so that the syncs of the appends that land on them change no metadata.
  void zeroAhead(Segment& seg, uint64_t end);

  void ioLoop();

  void execute(Op& op);

  // execute(), then marks the op written; ends the process if it failed.
  void perform(Op& op);

  // =========================== owner-thread writes ===========================

  ChunkPtr newChunk();

  // Drops in-flight chunks the I/O thread has written; a snapshot that was written is read
  // from its file from then on, and its bytes are no longer held in memory.
  void retire();

  void flush();

  // Hands a record of `hs` to the I/O thread; `sync`: the batch it goes with syncs it.
  void writeMeta(bool sync);

  // Reserves `n` bytes at the end of the active segment in the write buffer.
  uint8_t* reserve(Segment& seg, const SegPtr& segPtr, uint64_t n);

  SegPtr& active() { return segments.back(); }

  void startSegment(uint64_t first);

  void removeSegment(SegPtr seg);

  // Segment ids grow and are never reused, so a stale in-flight chunk never matches.
  Segment& segmentOf(const Loc& l) const;

  uint64_t lastIdx() const { return snapMeta.index.value + index.size(); }

  // Drops entries [i, lastIndex].
  void truncateSuffix(uint64_t i);

  // The snapshot file's header (everything before the data, docs/log-format.md).
  ChunkPtr encodeSnapshotHeader(const Snapshot& s, uint64_t ep, uint64_t dataHash);

  // `install`: a snapshot from the leader (it may be the one receiveSnapshot() took in, and
  // replaces any other receive); else a local one (compact), which leaves a receive alone.
  void saveSnapshot(const Snapshot& s, bool install);

  // Abandons the snapshot being received, if any: its file goes, its bytes once written.
  void dropReceived();

  // Hands the received bytes [handedOff, got) (all in the current staging buffer) to the I/O
  // thread.
  void handOffReceived(bool last);
  // A staging buffer nobody else holds with room for `n` bytes, or a new one.
  Bytes stagingBuffer(Received& r, size_t n);

  // =========================== owner-thread reads ===========================

  // Copies [off, off + n) of segment `seg` from the write buffer or an in-flight chunk.
  bool readCached(uint32_t segId, uint64_t off, uint64_t n, uint8_t* out) const;

  Entry makeEntry(uint64_t i, const Loc& l, const uint8_t* rec, const Segment& seg) const;
};

}  // namespace keel
