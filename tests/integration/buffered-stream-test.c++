// BufferedStream (src/net): coalesced writes, read-ahead, order, large writes, errors, and a
// Cap'n Proto RPC conversation over it.
#include "buffered-stream.h"

#include <client.capnp.h>
#include <raft.capnp.h>

#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <string>

namespace keel::net {
namespace {

struct Pipe {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Own<BufferedStream> a;
  BufferedStream* aRaw;
  kj::Own<kj::AsyncIoStream> b;
  Pipe() {
    auto p = io.provider->newTwoWayPipe();
    a = buffered(kj::mv(p.ends[0]));
    aRaw = a.get();
    b = kj::mv(p.ends[1]);
  }
  // Reads exactly n bytes from `s`.
  std::string readN(kj::AsyncIoStream& s, size_t n) {
    std::string out(n, '\0');
    size_t got = s.tryRead(out.data(), n, n).wait(io.waitScope);
    out.resize(got);
    return out;
  }
};

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char(seed + i % 23);
  return s;
}

TEST(BufferedStream, WritesOfOneTurnLeaveInOneInnerWrite) {
  Pipe p;
  std::string expect;
  for (int i = 0; i < 50; ++i) {
    std::string m = "message " + std::to_string(i) + ";";
    expect += m;
    // Each write completes at once: the bytes were copied.
    p.a->write(m.data(), m.size()).wait(p.io.waitScope);
  }
  EXPECT_EQ(p.aRaw->innerWrites(), 0u);
  EXPECT_EQ(p.readN(*p.b, expect.size()), expect);
  EXPECT_EQ(p.aRaw->innerWrites(), 1u);
}

TEST(BufferedStream, LargeWritesKeepTheirPlaceInOrder) {
  Pipe p;
  std::string small1 = pattern(100, 'a'), big = pattern(BufferedStream::kDirectBytes * 3, 'b'),
              small2 = pattern(200, 'c');
  auto w1 = p.a->write(small1.data(), small1.size());
  auto reader = p.b->readAllText();  // runs once the writer shuts down
  w1.wait(p.io.waitScope);
  kj::ArrayPtr<const kj::byte> pieces[] = {
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(big.data()), big.size() / 2),
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(big.data()) + big.size() / 2, big.size() - big.size() / 2)};
  auto w2 = p.a->write(kj::arrayPtr(pieces, 2));
  w2.wait(p.io.waitScope);
  p.a->write(small2.data(), small2.size()).wait(p.io.waitScope);
  p.a->shutdownWrite();
  kj::String all = reader.wait(p.io.waitScope);
  EXPECT_EQ(std::string(all.cStr(), all.size()), small1 + big + small2);
}

TEST(BufferedStream, PastTheHighWaterMarkTheWriterWaits) {
  Pipe p;
  std::string chunk = pattern(1000, 'x');
  std::string expect;
  auto reader = p.b->readAllText();
  for (size_t i = 0; i < 3 * BufferedStream::kHighWaterBytes / chunk.size(); ++i) {
    p.a->write(chunk.data(), chunk.size()).wait(p.io.waitScope);
    expect += chunk;
  }
  p.a->shutdownWrite();
  kj::String all = reader.wait(p.io.waitScope);
  EXPECT_EQ(std::string(all.cStr(), all.size()), expect);
  // Nothing ran the event loop's evalLast() flush between writes: the high-water mark did.
  EXPECT_GE(p.aRaw->innerWrites(), 2u);
}

TEST(BufferedStream, ReadAheadServesManySmallReadsFromOneInnerRead) {
  Pipe p;
  std::string all;
  for (int i = 0; i < 40; ++i) all += pattern(16, char('a' + i % 20));
  p.b->write(all.data(), all.size()).wait(p.io.waitScope);
  std::string got;
  for (int i = 0; i < 40; ++i) got += p.readN(*p.a, 16);
  EXPECT_EQ(got, all);
  EXPECT_EQ(p.aRaw->innerReads(), 1u);
  // A read larger than the buffer goes straight to the caller's memory.
  std::string big = pattern(BufferedStream::kReadBufferBytes * 2, 'q');
  auto w = p.b->write(big.data(), big.size());
  EXPECT_EQ(p.readN(*p.a, big.size()), big);
  w.wait(p.io.waitScope);
}

TEST(BufferedStream, EndOfStreamIsAShortRead) {
  Pipe p;
  p.b->write("abc", 3).wait(p.io.waitScope);
  p.b->shutdownWrite();
  char buf[10];
  EXPECT_EQ(p.a->tryRead(buf, 10, 10).wait(p.io.waitScope), 3u);
  EXPECT_EQ(p.a->tryRead(buf, 1, 10).wait(p.io.waitScope), 0u);
}

TEST(BufferedStream, AFailedWriteFailsTheWritesAfterIt) {
  Pipe p;
  p.b = nullptr;  // the peer is gone
  std::string m = pattern(100, 'm');
  p.a->write(m.data(), m.size()).wait(p.io.waitScope);  // buffered: accepted
  // Let the flush run and fail.
  p.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(p.io.waitScope);
  EXPECT_EQ(p.aRaw->innerWrites(), 1u);
  EXPECT_ANY_THROW(p.a->write(m.data(), m.size()).wait(p.io.waitScope));
  EXPECT_ANY_THROW(p.a->write(m.data(), m.size()).wait(p.io.waitScope));
}

// A server answering status() calls, to drive a real RPC conversation over BufferedStreams.
class StatusServer final : public wire::Keel::Server {
 public:
  int calls = 0;
  kj::Promise<void> status(StatusContext context) override {
    context.getResults().initStatus().setId(uint64_t(++calls));
    return kj::READY_NOW;
  }
};

TEST(BufferedStream, CarriesManyConcurrentRpcCalls) {
  Pipe p;
  auto serverStream = buffered(kj::mv(p.b));
  auto impl = kj::heap<StatusServer>();
  StatusServer& server = *impl;
  capnp::TwoPartyServer srv(kj::mv(impl));
  srv.accept(kj::mv(serverStream));
  capnp::TwoPartyClient client(*p.a);
  auto cap = client.bootstrap().castAs<wire::Keel>();
  constexpr int kCalls = 500;
  kj::Vector<kj::Promise<uint64_t>> replies;
  for (int i = 0; i < kCalls; ++i) {
    replies.add(cap.statusRequest().send().then(
        [](capnp::Response<wire::Keel::StatusResults>&& r) { return r.getStatus().getId(); }));
  }
  auto ids = kj::joinPromises(replies.releaseAsArray()).wait(p.io.waitScope);
  ASSERT_EQ(ids.size(), size_t(kCalls));
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(ids[i], uint64_t(i + 1)) << i;  // in order, each once
  EXPECT_EQ(server.calls, kCalls);
  // 500 calls went out in far fewer writes than calls.
  EXPECT_LT(p.aRaw->innerWrites(), uint64_t(kCalls / 10));
}

}  // namespace
}  // namespace keel::net
