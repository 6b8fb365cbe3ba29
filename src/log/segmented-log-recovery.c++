// keel: opening a SegmentedLog: leftovers removed, the meta records, the snapshot and every
// segment read back and checked, a torn tail cut (docs/log-format.md, "Recovery on open").
#include "segmented-log-impl.h"

#include <algorithm>

namespace keel {

void SegmentedLog::Impl::open() {
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
  // The commit index is a hint (Raft paper, Figure 2: commitIndex is volatile state), written
  // without a sync and apart from the entries: a process killed between the two writes, or a
  // machine that lost unsynced pages, can leave it past the entries that survived. Those were
  // committed by the cluster, which sends them again; the node starts from what it holds.
  if (hs.commit.value > lastIdx()) hs.commit = Index{lastIdx()};
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

uint64_t SegmentedLog::Impl::scanSegment(Segment& seg, bool last, uint64_t expected) {
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
    // Zeros from here to the end of the file: the active segment's zeros ahead of its records
    // (Options::zeroAheadBytes), or records whose writes never reached the disk. Either way the
    // log ends here and the file keeps its zeros for the appends to come.
    bool zeros = true;
    for (uint64_t at = off; zeros && at < size; at += std::min(kScanChunk, size - at))
      zeros = allZero(fetch(at, std::min(kScanChunk, size - at)), std::min(kScanChunk, size - at));
    if (zeros) {
      seg.bytes = off;
      return;
    }
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
    seg.bytes = seg.fileEnd = off;
  };

  uint64_t off = kSegmentHeaderBytes;
  seg.bytes = seg.fileEnd = size;
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

void SegmentedLog::Impl::loadMeta() {
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

void SegmentedLog::Impl::loadSnapshot() {
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

}  // namespace keel
