// RestoreThread (src/server): a snapshot parsed on a thread of its own as its bytes arrive,
// the result handed back on the event loop, and a stop mid-stream.
#include "restore-thread.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <chrono>
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

// Hands [from, to) of `snap` over in pieces of `piece` bytes.
void stream(RestoreThread& t, const std::string& snap, size_t from, size_t to, size_t piece) {
  for (size_t at = from; at < to; at += piece) t.arrived(std::string_view(snap).substr(at, std::min(piece, to - at)));
}

TEST(RestoreThread, ParsesTheBytesOnAThreadOfItsOwnAsTheyArrive) {
  auto io = kj::setupAsyncIo();
  std::string snap = pattern(3 << 20);
  auto rec = std::make_unique<Recording>();
  rec->expected = snap;
  Recording* raw = rec.get();
  RestoreThread t(std::move(rec));
  stream(t, snap, 0, snap.size() / 2, 77777);
  // The pieces it is done with may go before the rest arrives.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (t.parsed() < snap.size() / 2 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  EXPECT_EQ(t.parsed(), snap.size() / 2);
  stream(t, snap, snap.size() / 2, snap.size(), 77777);
  std::unique_ptr<SnapshotRestore> r = t.finish().wait(io.waitScope);
  ASSERT_EQ(r.get(), raw);
  EXPECT_EQ(raw->got, snap);
  EXPECT_EQ(t.parsed(), snap.size());
  EXPECT_NE(raw->writer, std::this_thread::get_id());
}

TEST(RestoreThread, BytesThatAreNotASnapshotResolveToNothing) {
  auto io = kj::setupAsyncIo();
  std::string snap = pattern(100000);
  auto rec = std::make_unique<Recording>();
  rec->expected = snap + "x";
  RestoreThread t(std::move(rec));
  stream(t, snap, 0, snap.size(), 4096);
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
  RestoreThread t(std::make_unique<Throwing>());
  stream(t, snap, 0, snap.size(), 1 << 20);
  EXPECT_EQ(t.finish().wait(io.waitScope), nullptr);
  EXPECT_EQ(t.parsed(), snap.size()) << "the pieces after the failure are let go too";
}

TEST(RestoreThread, AnEmptySnapshotFinishesAtOnce) {
  auto io = kj::setupAsyncIo();
  auto rec = std::make_unique<Recording>();
  Recording* raw = rec.get();
  RestoreThread t(std::move(rec));
  EXPECT_EQ(t.finish().wait(io.waitScope).get(), raw);
}

// A connection that drops mid-transfer destroys the sink, and with it the thread: neither a
// parse in progress nor a finish() nobody waits for any more holds that up.
TEST(RestoreThread, DestroyedMidStreamStopsItsThread) {
  auto io = kj::setupAsyncIo();
  std::string snap = pattern(8 << 20);
  for (int k = 0; k < 20; ++k) {
    auto rec = std::make_unique<Recording>();
    rec->expected = snap;
    auto t = std::make_unique<RestoreThread>(std::move(rec));
    stream(*t, snap, 0, snap.size() / (k % 4 + 1), 1 << 20);
    if (k % 2) {
      auto pending = t->finish();
      (void)pending;  // dropped unresolved
    }
    t.reset();
  }
}

}  // namespace
}  // namespace keel::server
