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



#include "segmented-log-impl.h"

namespace keel {

void SegmentedLog::Impl::enqueue(Op op) {
  op.opNo = ++nextOpNo;
  if (here) {
    here->push_back(std::move(op));
    return;
  }
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

void SegmentedLog::Impl::markDirty(const std::shared_ptr<File>& f) {
  for (auto& d : dirty)
    if (d == f) return;
  dirty.push_back(f);
}

void SegmentedLog::Impl::syncDirty() {
  for (auto& f : dirty) f->sync();
  dirty.clear();
}

void SegmentedLog::Impl::syncDirIfDirty() {
  if (dirDirty) {
    fs->syncDir(dir);
    dirDirty = false;
  }
}

void SegmentedLog::Impl::zeroAhead(Segment& seg, uint64_t end) {
  if (end <= seg.fileEnd) return;
  seg.fileEnd = end;
  constexpr uint64_t kPage = 4096;
  auto roundUp = [](uint64_t n) { return (n + kPage - 1) / kPage * kPage; };
  uint64_t to = std::min(roundUp(end + opts.zeroAheadBytes), roundUp(opts.segmentBytes));
  if (opts.zeroAheadBytes == 0 || to <= end) return;
  static const std::vector<uint8_t> zeros(64 << 10);
  for (uint64_t at = end; at < to; at += std::min<uint64_t>(zeros.size(), to - at))
    seg.file->pwrite(zeros.data(), std::min<uint64_t>(zeros.size(), to - at), at);
  seg.fileEnd = to;
}

void SegmentedLog::Impl::ioLoop() {
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
      perform(op);
    }
    work.clear();
  }
}

void SegmentedLog::Impl::perform(Op& op) {
  try {
    execute(op);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keel: FATAL: log %s: I/O failed: %s\n", dir.c_str(), e.what());
    std::fflush(stderr);
    std::abort();
  }
  writtenOps.store(op.opNo, std::memory_order_release);
}

void SegmentedLog::Impl::execute(Op& op) {
  switch (op.kind) {
    case Op::Create: {
      syncDirIfDirty();  // a pending removal of the same name must not come back
      op.seg->file = std::shared_ptr<File>(fs->open(op.seg->path, true));
      dirDirty = true;
      break;
    }
    case Op::Write:
      op.seg->file->pwrite(op.data->data(), op.data->size(), op.offset);
      zeroAhead(*op.seg, op.offset + op.data->size());
      markDirty(op.seg->file);
      break;
    case Op::Seal:
      if (op.seg->fileEnd > op.offset) {  // the zeros past the last record go
        op.seg->file->truncate(op.offset);
        op.seg->fileEnd = op.offset;
        markDirty(op.seg->file);
      }
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
      op.seg->fileEnd = op.offset;
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
        if (auto d = fs->openDirect(tmp)) {
          // Past the page cache, as a received snapshot is: copying a large state into it cost
          // this thread (and the appends queued behind it) more than the disk did.
          DirectAppender a(std::move(d), 0);
          a.append(op.data->data(), op.data->size());
          if (op.payloadSize) a.append(op.payload, op.payloadSize);
          a.finish();
          f->truncate(a.end());  // the padding of the last block goes
        } else {
          f->pwrite(op.data->data(), op.data->size(), 0);
          if (op.payloadSize) f->pwrite(op.payload, op.payloadSize, op.data->size());
        }
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

ChunkPtr SegmentedLog::Impl::newChunk() {
  if (!freeChunks.empty()) {
    ChunkPtr c = std::move(freeChunks.back());
    freeChunks.pop_back();
    return c;
  }
  auto c = std::make_shared<Chunk>();
  c->reserve(std::min<uint64_t>(opts.writeBufferBytes, 256 << 10));
  return c;
}

void SegmentedLog::Impl::retire() {
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

void SegmentedLog::Impl::flush() {
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

uint8_t* SegmentedLog::Impl::reserve(Segment& seg, const SegPtr& segPtr, uint64_t n) {
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

void SegmentedLog::Impl::startSegment(uint64_t first) {
  if (!segments.empty()) {
    flush();
    Op seal;
    seal.kind = Op::Seal;
    seal.seg = segments.back();
    seal.offset = seal.seg->bytes;
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

void SegmentedLog::Impl::removeSegment(SegPtr seg) {
  if (pendSeg == seg) {
    pend.clear();
    pendSeg.reset();
  }
  Op op;
  op.kind = Op::Remove;
  op.seg = std::move(seg);
  enqueue(std::move(op));
}

Segment& SegmentedLog::Impl::segmentOf(const Loc& l) const {
  auto it = std::lower_bound(segments.begin(), segments.end(), l.segId,
                             [](const SegPtr& s, uint32_t id) { return s->id < id; });
  return **it;
}

void SegmentedLog::Impl::truncateSuffix(uint64_t i) {
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

ChunkPtr SegmentedLog::Impl::encodeSnapshotHeader(const Snapshot& s, uint64_t ep, uint64_t dataHash) {
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
  put64(p + 48, dataHash);
  if (m.size()) std::memcpy(p + kSnapFixedBytes, m.data(), m.size());
  put64(p + kSnapFixedBytes + m.size(), hash64(p, kSnapFixedBytes + m.size()));
  return c;
}

void SegmentedLog::Impl::saveSnapshot(const Snapshot& s, bool install) {
  flush();
  Op op;
  op.kind = Op::Snap;
  bool wasReceived = install && received && received->complete && s.data.size() == received->size &&
                     (s.data.empty() || s.data.data() == received->data.data());
  // The received bytes were hashed as they arrived: they are not read back for it.
  op.data = encodeSnapshotHeader(s, epoch, wasReceived ? received->dataHash : hash64(s.data.data(), s.data.size()));
  if (wasReceived && op.data->size() == received->headerBytes) {
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

void SegmentedLog::Impl::dropReceived() {
  if (!received) return;
  Op op;
  op.kind = Op::RemoveRecv;
  op.recvFile = received->file;
  enqueue(std::move(op));
  received.reset();
}

void SegmentedLog::Impl::handOffReceived(bool last) {
  Received& r = *received;
  if (r.got == r.handedOff && !last) return;
  Op op;
  op.kind = Op::SnapPart;
  op.recvFile = r.file;
  op.payload = r.current.data() + (r.handedOff - r.currentStart);
  op.payloadSize = r.got - r.handedOff;
  op.offset = r.headerBytes + r.handedOff;
  op.lastPart = last;
  enqueue(std::move(op));
  keepAlive.emplace_back(nextOpNo, r.current);
  r.handedOff = r.got;
}

Bytes SegmentedLog::Impl::stagingBuffer(Received& r, size_t n) {
  for (const Bytes& b : r.staging)
    if (b.useCount() == 1 && b.size() >= n) return b;
  Bytes b = Bytes::uninitialized(std::max<size_t>(kStageBytes, n));
  if (n <= kStageBytes) r.staging.push_back(b);  // an outsized one is not kept
  return b;
}

bool SegmentedLog::Impl::readCached(uint32_t segId, uint64_t off, uint64_t n, uint8_t* out) const {
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

Entry SegmentedLog::Impl::makeEntry(uint64_t i, const Loc& l, const uint8_t* rec, const Segment& seg) const {
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


// =========================== public methods ===========================

SegmentedLog::SegmentedLog(std::string dir, Options options)
    : impl_(std::make_unique<Impl>(std::move(dir), std::move(options))) {
  impl_->open();
  impl_->io = std::thread([this] { impl_->ioLoop(); });
}

SegmentedLog::~SegmentedLog() {
  Impl& m = *impl_;
  m.flush();
  if (m.metaDeferred) m.writeMeta(false);
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
    // A stream reads the snapshot in order: the bytes up to kReadAhead past these are asked
    // for now (in steps of half of it), so that a file the page cache no longer holds (a
    // snapshot taken long before) comes from the disk while these are sent, and the next read
    // does not hold the leader's loop. A read elsewhere (the reader used again from the start)
    // is advised from where it is.
    uint64_t end = offset + n, from = advisedTo_.load(std::memory_order_relaxed);
    if (from < end || from > end + kReadAhead) from = end;
    uint64_t to = std::min(size_, end + kReadAhead);
    if (from < to && (to - from >= kReadAhead / 2 || to == size_)) {
      file_->willNeed(fileOffset_ + from, to - from);
      advisedTo_.store(to, std::memory_order_relaxed);
    }
  }

 private:
  static constexpr uint64_t kReadAhead = 32 << 20;
  mutable std::atomic<uint64_t> advisedTo_{0};  // snapshot bytes asked for so far (a hint)
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

class SegmentedLog::Receiver final : public SegmentedLog::SnapshotReceiver {
 public:
  Receiver(Impl& impl, std::weak_ptr<Impl::Received> r) : impl_(impl), r_(std::move(r)) {}
  ~Receiver() override {
    auto r = r_.lock();
    if (!finished_ && r && r == impl_.received) impl_.dropReceived();
  }

  Piece write(const uint8_t* data, size_t n) override {
    auto r = live("write");
    if (n > r->size - r->got)
      throw std::invalid_argument("SnapshotReceiver::write: more bytes than announced");
    if (n == 0) return Piece{};
    impl_.retire();
    size_t used = size_t(r->got - r->currentStart);
    if (r->current.empty() || used + n > r->current.size()) {
      impl_.handOffReceived(false);  // what the current buffer holds goes to the file first
      r->current = impl_.stagingBuffer(*r, n);
      r->currentStart = r->got;
      used = 0;
    }
    uint8_t* at = r->current.mutableData() + used;
    std::memcpy(at, data, n);
    XXH3_64bits_update(r->hash.get(), data, n);
    r->got += n;
    Piece piece{r->current, std::string_view(reinterpret_cast<const char*>(at), n)};
    // A full buffer goes to the file (and on to the disk) now, so that both work while the rest
    // streams in.
    if (r->got - r->currentStart == r->current.size()) impl_.handOffReceived(false);
    return piece;
  }

  bool backlogged() override {
    auto r = live("backlogged");
    impl_.retire();
    size_t busy = 0;
    for (const Bytes& b : r->staging) busy += b.useCount() > 1;
    return busy >= kMaxStaged;
  }

  Bytes finish() override {
    auto r = live("finish");
    if (r->got != r->size) throw std::invalid_argument("SnapshotReceiver::finish: bytes are missing");
    finished_ = true;
    impl_.handOffReceived(true);
    r->complete = true;
    r->current = Bytes();
    r->staging.clear();  // each goes once the I/O thread has written it
    // The bytes are read back from the file: wait for the I/O thread to have written them.
    uint64_t last = impl_.nextOpNo;
    while (impl_.writtenOps.load(std::memory_order_acquire) < last)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    impl_.retire();
    r->dataHash = XXH3_64bits_digest(r->hash.get());
    r->data = r->size ? (*r->file)->map(r->headerBytes, r->size) : Bytes();
    return r->data;
  }

 private:
  std::shared_ptr<Impl::Received> live(const char* what) {
    auto r = r_.lock();
    if (!r || r != impl_.received || finished_)
      throw std::logic_error(std::string("SnapshotReceiver::") + what + ": the receive was abandoned or finished");
    return r;
  }

  Impl& impl_;
  std::weak_ptr<Impl::Received> r_;
  bool finished_ = false;
};

std::unique_ptr<SegmentedLog::SnapshotReceiver> SegmentedLog::receiveSnapshot(const SnapshotMeta& meta,
                                                                               uint64_t size) {
  Impl& m = *impl_;
  m.retire();
  m.dropReceived();
  auto r = std::make_shared<Impl::Received>();
  if (!r->hash) throw std::bad_alloc();
  XXH3_64bits_reset(r->hash.get());
  r->meta = meta;
  r->size = size;
  r->headerBytes = kSnapFixedBytes + meta.membership.encode().size() + 8;
  m.received = r;
  return std::make_unique<Receiver>(m, r);
}

void SegmentedLog::Impl::writeMeta(bool sync) {
  // The slot holding the latest record meant to be synced is never overwritten by an unsynced one.
  int slot = 1 - lastSyncedSlot;
  if (sync) lastSyncedSlot = slot;
  metaDeferred = false;
  auto c = std::make_shared<Chunk>(kMetaBytes);
  uint8_t* p = c->data();
  std::memcpy(p, kMetaMagic, 8);
  put32(p + 8, kVersion);
  put64(p + 16, ++metaSeq);
  put64(p + 24, hs.term.value);
  put64(p + 32, hs.vote.value);
  put64(p + 40, hs.commit.value);
  put64(p + 56, hash64(p, 56));
  Op op;
  op.kind = Op::Meta;
  op.slot = slot;
  op.syncMeta = sync;
  op.data = std::move(c);
  enqueue(std::move(op));
}

void SegmentedLog::setHardState(const HardState& hs) {
  Impl& m = *impl_;
  if (hs == m.hs) return;
  // A term or vote change must be durable with the next batch. A change of commit alone is
  // written when the next batch closes (syncAsync()), one record for however many changes came
  // before it: an operation of its own would wake the I/O thread at every commit.
  bool needSync = hs.mustPersistOver(m.hs);
  m.hs = hs;
  m.metaDeferred = !needSync;
  if (needSync) m.writeMeta(true);
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
  if (m.metaDeferred) m.writeMeta(false);
  Op op;
  op.kind = Op::Sync;
  op.seq = ++m.nextSeq;
  m.enqueue(std::move(op));
  return m.nextSeq;
}

uint64_t SegmentedLog::syncHere(uint64_t maxBytes) {
  Impl& m = *impl_;
  bool idle;
  {
    std::lock_guard<std::mutex> lk(m.mu);
    idle = m.ioSleeping && m.queue.empty();
  }
  if (!idle || m.pend.size() > maxBytes) return syncAsync();
  // The I/O thread has done everything handed to it and waits, and only this thread hands it
  // work: the batch's writes, its hard state and its sync run here, in the order they would
  // have run there. (The mutex taken above and at the next enqueue() orders the I/O thread's
  // state between the two threads.)
  std::vector<Op> ops;
  m.here = &ops;
  uint64_t seq = syncAsync();
  m.here = nullptr;
  for (Op& op : ops) m.perform(op);
  m.retire();
  return seq;
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
