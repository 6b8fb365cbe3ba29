// RestoreThread (src/server): a snapshot parsed on a thread of its own as its bytes arrive,
// the result handed back on the event loop, and a stop mid-stream.
#include "restore-thread.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <cstring>
#include <string>
#include <thread>

namespace keel::server {
namespace {

// Keeps what it was given, and on which thread; takes the bytes as a snapshot when they are
// the expected ones.
struct Recording final : SnapshotRestore {
  std::string expected, got;
  std::thread::id writer;
  void write(std::string_view chunk) override {
    got.append(chunk);
    writer = std::this_thread::get_id();
  }
  bool finish() override { return got == expected; }
  void apply() override {}
};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char('a' + i * 7 % 26);
  return s;
}

// Copies `snap` into `buf` in pieces of `piece` bytes, saying after each that it arrived.
void stream(RestoreThread& t, Bytes& buf, const std::string& snap, size_t from, size_t to, size_t piece) {
  for (size_t at = from; at < to; at += piece) {
    size_t n = std::min(piece, to - at);
    std::memcpy(buf.mutableData() + at, snap.data() + at, n);
    t.arrived(at + n);
  }
}

TEST(RestoreThread, ParsesTheBytesOnAThreadOfItsOwnAsTheyArrive) {
  auto io = kj::setupAsyncIo();
  std::string snap = pattern(3 << 20);
  Bytes buf = Bytes::uninitialized(snap.size());
  auto rec = std::make_unique<Recording>();
  rec->expected = snap;
  Recording* raw = rec.get();
  RestoreThread t(std::move(rec), buf.data());
  stream(t, buf, snap, 0, snap.size(), 77777);
  std::unique_ptr<SnapshotRestore> r = t.finish().wait(io.waitScope);
  ASSERT_EQ(r.get(), raw);
  EXPECT_EQ(raw->got, snap);
  EXPECT_NE(raw->writer, std::this_thread::get_id());
}

TEST(RestoreThread, BytesThatAreNotASnapshotResolveToNothing) {
  auto io = kj::setupAsyncIo();
  std::string snap = pattern(100000);
  Bytes buf = Bytes::uninitialized(snap.size());
  auto rec = std::make_unique<Recording>();
  rec->expected = snap + "x";
  RestoreThread t(std::move(rec), buf.data());
  stream(t, buf, snap, 0, snap.size(), 4096);
  EXPECT_EQ(t.finish().wait(io.waitScope), nullptr);
}

// A restore that throws (say, out of memory) fails the parse, not the process: the bytes are
// then judged whole by restore().
TEST(RestoreThread, ARestoreThatThrowsResolvesToNothing) {
  struct Throwing final : SnapshotRestore {
    size_t writes = 0;
    void write(std::string_view) override {
      if (++writes == 2) throw std::bad_alloc();
    }
    bool finish() override { return true; }
    void apply() override {}
  };
  auto io = kj::setupAsyncIo();
  std::string snap = pattern(20 << 20);
  Bytes buf = Bytes::uninitialized(snap.size());
  RestoreThread t(std::make_unique<Throwing>(), buf.data());
  stream(t, buf, snap, 0, snap.size(), 1 << 20);
  EXPECT_EQ(t.finish().wait(io.waitScope), nullptr);
}

TEST(RestoreThread, AnEmptySnapshotFinishesAtOnce) {
  auto io = kj::setupAsyncIo();
  auto rec = std::make_unique<Recording>();
  Recording* raw = rec.get();
  RestoreThread t(std::move(rec), nullptr);
  EXPECT_EQ(t.finish().wait(io.waitScope).get(), raw);
}

// A connection that drops mid-transfer destroys the sink, and with it the thread: neither a
// parse in progress nor a finish() nobody waits for any more holds that up.
TEST(RestoreThread, DestroyedMidStreamStopsItsThread) {
  auto io = kj::setupAsyncIo();
  std::string snap = pattern(8 << 20);
  Bytes buf = Bytes::uninitialized(snap.size());
  for (int k = 0; k < 20; ++k) {
    auto rec = std::make_unique<Recording>();
    rec->expected = snap;
    auto t = std::make_unique<RestoreThread>(std::move(rec), buf.data());
    stream(*t, buf, snap, 0, snap.size() / (k % 4 + 1), 1 << 20);
    if (k % 2) {
      auto pending = t->finish();
      (void)pending;  // dropped unresolved
    }
    t.reset();
  }
}

}  // namespace
}  // namespace keel::server
