// keel: SegmentedLog, the durable Log: a write-ahead log in segment files with group commit.
//
// WHAT IT PROMISES
//
// Every entry, hard state and snapshot that a completed sync covered survives any crash of the
// process or the machine, and is read back exactly: a record that was acknowledged is never
// lost, never altered, never silently dropped. What was written after the last completed sync
// may be lost after a crash, but only as a suffix: the log read back is always a prefix of what
// was written.
//
// THE DIRECTORY (docs/log-format.md describes every byte)
//
//   meta-a, meta-b      Hard state (term, vote, commit). Two 64-byte records written
//                       alternately, each with a version number and a checksum; the valid one
//                       with the higher version is current. Writing one never touches the other,
//                       so an update is atomic: after a crash either the old or the new hard
//                       state is read back, never a mix.
//   snapshot            The latest snapshot: its metadata (index, term, membership, epoch) and
//                       the state machine's bytes, each checksummed. Written as snapshot.tmp,
//                       synced, renamed over `snapshot`, and the directory synced.
//   <first>.seg         A segment: a 32-byte header (magic, version, epoch, index of its first
//                       entry) and then one record per entry, in index order. <first> is the
//                       index of its first entry in 20 decimal digits, so that names sort in log
//                       order. A segment holds at most Options::segmentBytes (plus one record);
//                       then a new one is started.
//   A record: a 32-byte header (payload length, entry type, term, index, a checksum of the
//   header and a checksum of the payload, both XXH3) followed by the payload.
//
// WRITES, GROUP COMMIT AND THE I/O THREAD
//
// The write side of Log (append, setHardState, compact, installSnapshot) returns at once: it
// checks its arguments, updates the in-memory state (so the read side sees the new state
// immediately), copies the bytes into a write buffer and queues the file operations for the
// log's I/O thread. The I/O thread performs them strictly in order: writes, file creation,
// truncation, removal, rename, and for each batch one fdatasync per modified file plus one fsync
// of the directory if a name changed. Many appends therefore cost one fdatasync.
//
//   uint64_t seq = log.syncAsync();   // closes a batch: everything written so far
//   ...                               // the event loop goes on (e.g. sends AppendEntries)
//   log.durableSeq() >= seq           // later: the batch is on stable storage
//
// Batches complete in order. Log::sync() is syncAsync() followed by waitDurable(). To learn of
// completions without polling, set a callback with onDurable(): it runs on the I/O thread right
// after a batch became durable, so it must be quick and must not touch the log. From a KJ event
// loop, capture `kj::getCurrentThreadExecutor()` on the loop's thread and, in the callback, call
// `executor.executeSync([&]{ server.logDurable(seq); })` (or executeAsync from a thread with an
// event loop) to run the acknowledgement on the loop. keel_log itself depends on std + POSIX.
//
// THREADS
//
// A SegmentedLog is owned by one thread (the event loop). Every method but durableSeq() and
// waitDurable() must be called from that thread. The read side (term, entries, hardState, ...)
// is safe while a batch is in flight on the I/O thread: entries not yet written to their file
// are served from the write buffer, the rest with pread(2).
//
// ERRORS
//
// Bad input (an append that is not contiguous, a compaction outside the log) throws
// std::invalid_argument. Corruption found on open or when reading throws CorruptionError, which
// names the file and the offset; the log refuses to serve. Any failure of a write, fsync or
// fdatasync ends the process with a message naming the file and errno, never retried: after a
// failed fsync the kernel may have dropped the dirty pages, so nothing that was written can be
// trusted to be on disk (the "fsyncgate" lesson of PostgreSQL, 2018).
//
// RECOVERY ON OPEN
//
//   * Only the last segment can hold a torn tail: a new segment file is created only after the
//     previous one was fdatasync'ed. A record of the last segment that is incomplete (runs past
//     the end of the file, or overlaps a 512-byte sector that is all zeros, i.e. a sector that
//     was never written) and everything after it is cut off, and reported in recoveryReport().
//   * Any other bad record, a segment header that does not match, a gap between segments, or a
//     bad meta or snapshot file is corruption: open throws CorruptionError.
//   * Segments wholly covered by the snapshot, segments of an older epoch (the log was replaced
//     by installSnapshot) and a leftover snapshot.tmp are deleted.
//   * Reopening reads every record once to check it, but keeps only an index in memory (term,
//     file and offset of each entry, 24 bytes); payloads are read on demand.
#pragma once

#include <keel/log.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace keel {

// Corruption of the stored log: a record, header or file that does not check out.
class CorruptionError : public std::runtime_error {
 public:
  CorruptionError(std::string file, uint64_t offset, const std::string& what);
  const std::string& file() const noexcept { return file_; }
  uint64_t offset() const noexcept { return offset_; }

 private:
  std::string file_;
  uint64_t offset_;
};

// ---- The file layer (LevelDB's Env idea): the only way SegmentedLog touches the disk. ----
// PosixFileSystem is the real one; the crash tests substitute one that records every write,
// sync and rename and replays crash states. Methods that fail throw std::system_error, except
// sync() and syncDir(), whose failure ends the process (see ERRORS above).

class File {
 public:
  virtual ~File() = default;
  // Reads up to `size` bytes at `offset`; returns the number read (short only at the end).
  virtual size_t pread(void* buf, size_t size, uint64_t offset) const = 0;
  virtual void pwrite(const void* buf, size_t size, uint64_t offset) = 0;
  virtual void truncate(uint64_t size) = 0;
  virtual uint64_t size() const = 0;
  // fdatasync(2): the file's data and size are on stable storage when it returns.
  virtual void sync() = 0;
  // A hint that [offset, offset + size) will be read soon (posix_fadvise WILLNEED).
  virtual void willNeed(uint64_t offset, uint64_t size) {}
  // A hint to start writing [offset, offset + size) to storage now, without waiting for it
  // (sync_file_range WRITE). It makes nothing durable: only sync() does.
  virtual void startWriteback(uint64_t offset, uint64_t size) {}
  // The `size` bytes at `offset` (all within the file), for reading while the returned Bytes is
  // held, which must not outlive a change to them. The real layer maps the file (mmap(2)), so
  // pages are read from storage as they are touched and none is copied into the heap; this
  // default reads them into memory. Throws std::system_error, or CorruptionError on a short read.
  virtual Bytes map(uint64_t offset, uint64_t size);
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Opens a file for reading and writing; `create` creates it when absent (it is not durable
  // until syncDir). Throws std::system_error when it does not exist and !create.
  virtual std::unique_ptr<File> open(const std::string& path, bool create) = 0;
  virtual bool exists(const std::string& path) = 0;
  virtual void rename(const std::string& from, const std::string& to) = 0;
  virtual void remove(const std::string& path) = 0;
  // Opens the existing file `path` a second time, for direct writes (O_DIRECT: past the page
  // cache), whose buffers, offsets and sizes must be multiples of 4096. It checks that the file
  // system takes them by writing one block of zeros at offset 0. nullptr when it does not
  // (tmpfs), and from file layers without direct I/O.
  virtual std::unique_ptr<File> openDirect(const std::string& path) { return nullptr; }
  virtual void makeDir(const std::string& path) = 0;  // no error when it exists
  // fsync(2) of a directory: creations, renames and removals in it are durable.
  virtual void syncDir(const std::string& path) = 0;
  // The names (not paths) of the files in a directory.
  virtual std::vector<std::string> list(const std::string& path) = 0;
};

// The real file layer. Ends the process on a failed fsync/fdatasync.
FileSystem& posixFileSystem();

// Ends the process: prints "keel: FATAL: <op> of <path> failed: <strerror>" and aborts. Used on
// any failed sync; never returns.
[[noreturn]] void fatalIoError(const char* op, const std::string& path, int err);

class SegmentedLog final : public Log {
 public:
  struct Options {
    // A segment is closed and a new one started once it holds this many bytes.
    uint64_t segmentBytes = 64ull << 20;
    // Appends are buffered in memory and handed to the I/O thread at each syncAsync() or when
    // this many bytes are waiting, whichever comes first.
    uint64_t writeBufferBytes = 1ull << 20;
    // The active segment's file is written with zeros this far past its last record, and
    // appends overwrite them: an fdatasync of an append within the file's size need not write
    // the file's new size (its inode, or a journal commit) as well as the data (on the ext4
    // here: 0.11 against 0.19 ms). The zeros are cut off when the segment is closed. 0: the
    // file grows with each append.
    uint64_t zeroAheadBytes = 1ull << 20;
    // The configuration of a new cluster: the membership of the empty snapshot at index 0
    // when the directory holds no snapshot yet.
    Membership initialMembership;
    // The file layer; nullptr means posixFileSystem().
    FileSystem* fs = nullptr;
  };

  // What opening the log found and repaired.
  struct RecoveryReport {
    uint64_t segments = 0;          // segment files read
    uint64_t entries = 0;           // entries in the log after recovery
    bool tornTail = false;          // a torn tail was cut off...
    std::string tornFile;           // ... from this segment
    uint64_t tornOffset = 0;        // ... at this offset
    uint64_t tornBytes = 0;         // ... this many bytes
    std::vector<std::string> removed;  // stale files deleted (covered segments, snapshot.tmp)
  };

  // Opens (creating when absent) the log in directory `dir`, recovering as described above.
  // Throws CorruptionError when the stored log is corrupt.
  SegmentedLog(std::string dir, Options options);
  explicit SegmentedLog(std::string dir) : SegmentedLog(std::move(dir), Options{}) {}
  // Waits for every queued operation to finish (a final sync included) and stops the I/O thread.
  ~SegmentedLog() override;
  SegmentedLog(const SegmentedLog&) = delete;
  SegmentedLog& operator=(const SegmentedLog&) = delete;

  // ---- Log ----
  HardState hardState() const override;
  Index firstIndex() const override;
  Index lastIndex() const override;
  Term term(Index i) const override;
  void entries(Index lo, Index hi, uint64_t maxBytes, std::vector<Entry>& out) const override;
  SnapshotMeta snapshotMeta() const override;
  Snapshot snapshot() const override;
  // Term and vote changes are made durable by the next batch. A change of commit alone is
  // written with the next batch but not forced to disk by it (it is not needed for safety:
  // a restarted node relearns the commit index from the leader).
  void setHardState(const HardState& hs) override;
  void append(std::span<const Entry> entries) override;
  void installSnapshot(const Snapshot& snapshot) override;
  void compact(const Snapshot& snapshot) override;
  // syncAsync() + waitDurable(): blocks until everything written so far is durable.
  void sync() override;

  // ---- Group commit ----
  // Closes the current batch: every write made so far becomes durable when this batch does.
  // Returns the batch's sequence number (1, 2, 3, ...). Never blocks on the disk.
  uint64_t syncAsync();
  // syncAsync(), except that when the I/O thread is idle and the batch holds at most
  // `maxBytes` of records, the batch is written and synced on the calling thread before this
  // returns (durableSeq() then reports it, and the callback has run on this thread). It saves
  // the two hand-overs between the threads, and blocks the caller for the fdatasync: for an
  // owner with nothing else to do meanwhile (a follower, whose answer waits for the sync).
  uint64_t syncHere(uint64_t maxBytes);
  // The highest batch that is durable (batches complete in order). Any thread.
  uint64_t durableSeq() const noexcept;
  // Blocks until batch `seq` is durable. Any thread.
  void waitDurable(uint64_t seq) const;
  // `callback(seq)` runs on the I/O thread after batch `seq` became durable, and before
  // durableSeq() reports it (so waitDurable(seq) returning implies the callback ran). Set it
  // before the first syncAsync(); it must be quick and must not call into the log.
  void onDurable(std::function<void(uint64_t seq)> callback);

  // ---- Snapshot transfer ----
  // The size of the latest snapshot's data, and up to `maxBytes` of it from `offset` (empty at
  // the end). A snapshot found on open is read from its file, chunk by chunk, never held whole
  // in memory; one given to compact()/installSnapshot() in this process is served from the
  // Bytes it came in (the log keeps a reference).
  uint64_t snapshotSize() const;
  Bytes snapshotChunk(uint64_t offset, uint64_t maxBytes) const;

  // The latest snapshot as a stable source to stream from: its metadata, its size and its
  // bytes stay those of this snapshot even after later compactions or installs replace it in
  // the log (the reader holds the open file, or the in-memory bytes, it reads from). A snapshot
  // given to compact()/installSnapshot() is held in memory only until the log has written it;
  // from then on it is read from its file. Owner thread only, like the log.
  class SnapshotReader {
   public:
    virtual ~SnapshotReader() = default;
    virtual const SnapshotMeta& meta() const = 0;
    virtual uint64_t size() const = 0;
    // Copies the `n` bytes at `offset` (offset + n <= size()) to `out`. Throws
    // CorruptionError on a short read of the file.
    virtual void readInto(uint64_t offset, uint8_t* out, uint64_t n) const = 0;
  };
  std::shared_ptr<const SnapshotReader> snapshotReader() const;

  // Receiving a snapshot from the leader (§7) as it streams in. Its bytes are written to
  // `snapshot.recv` in the log's directory as they arrive, through staging buffers of 8 MiB that
  // are used again once written (past the page cache where the file system allows:
  // FileSystem::openDirect), so that a receive holds tens of MiB of memory however large the
  // snapshot is. finish() returns the bytes as read from that file (File::map), and
  // installSnapshot() of them only writes the header (their checksum was taken as they
  // arrived), syncs and renames the file. One receive at a time: a new one, an
  // installSnapshot() or compact() of other bytes, and destroying an unfinished receiver
  // abandon it (the file goes). Owner thread only.
  class SnapshotReceiver {
   public:
    virtual ~SnapshotReceiver() = default;
    // Where write() put a piece: `bytes` stay in place and unchanged while `holder` is held,
    // and may be read from another thread meanwhile (holder itself stays on this one).
    struct Piece {
      Bytes holder;
      std::string_view bytes;
    };
    // Copies the next `n` bytes in. Throws std::invalid_argument past the announced size.
    virtual Piece write(const uint8_t* data, size_t n) = 0;
    // Every staging buffer is in use (being written, or held through a Piece): the caller
    // should let go of pieces, or wait, before it writes more. Writes still work (in more memory).
    virtual bool backlogged() = 0;
    // Every announced byte arrived: waits for the last of them to be written to the file (up
    // to a few staging buffers), and returns them, mapped from it, for installSnapshot().
    virtual Bytes finish() = 0;
  };
  std::unique_ptr<SnapshotReceiver> receiveSnapshot(const SnapshotMeta& meta, uint64_t size);

  // Lets go of what the I/O thread has finished with: written write buffers, and the bytes of a
  // snapshot once its file is written (from then on it is read from the file). Every write does
  // this anyway; an owner that may go idle calls it now and then (the server: every tick).
  // Returns true when it let go of a snapshot's bytes.
  bool releaseWritten();

  const RecoveryReport& recoveryReport() const noexcept;
  const std::string& dir() const noexcept;

 private:
  struct Impl;
  class Receiver;  // receiveSnapshot()'s
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel
