// keel internal: BufferedStream, a byte stream that reads ahead and coalesces writes.
//
// Cap'n Proto 0.9.2's two-party transport reads each message with two or more read(2) calls
// (the segment table, then the segments) and writes each message with its own writev(2). Under
// load a node answers dozens of calls per event-loop turn, each reply a syscall (and, on
// loopback, a trip through the receiver's TCP stack). Wrapped in a BufferedStream:
//  - reads are served from a 64 KiB read-ahead buffer, so one read(2) brings in every message
//    that has arrived;
//  - small writes are copied into a buffer flushed by one write(2) when the event loop has
//    nothing else to run (kj::evalLast), so the replies of one turn leave together. A write of
//    at least kDirectBytes (a large batch of entries, a snapshot chunk) flushes the buffer and
//    goes out directly, and a caller that lets the buffer pass kHighWaterBytes waits for it.
// Order is kept: every flush and direct write is chained after the previous one. A failed write
// fails every later write with the same exception.
#pragma once

#include <kj/async-io.h>
#include <vector>

namespace keel::net {

class BufferedStream final : public kj::AsyncIoStream {
 public:
  static constexpr size_t kReadBufferBytes = 64 * 1024;
  static constexpr size_t kDirectBytes = 64 * 1024;
  static constexpr size_t kHighWaterBytes = 1024 * 1024;

  explicit BufferedStream(kj::Own<kj::AsyncIoStream> inner);
  ~BufferedStream() noexcept(false);

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override;
  void abortRead() override { inner_->abortRead(); }
  void getsockopt(int level, int option, void* value, kj::uint* length) override {
    inner_->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, kj::uint length) override {
    inner_->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, kj::uint* length) override { inner_->getsockname(addr, length); }
  void getpeername(struct sockaddr* addr, kj::uint* length) override { inner_->getpeername(addr, length); }
  kj::Maybe<int> getFd() const override { return inner_->getFd(); }

  // Counters, for tests: read and write calls made on the wrapped stream.
  uint64_t innerReads() const { return innerReads_; }
  uint64_t innerWrites() const { return innerWrites_; }

 private:
  // Moves the buffered bytes into the write chain.
  void flush();
  // Appends `step` to the write chain (skipped once a write failed).
  void append(kj::Function<kj::Promise<void>()> step);

  kj::Own<kj::AsyncIoStream> inner_;

  kj::Array<kj::byte> readBuffer_;
  size_t readPos_ = 0;
  size_t readEnd_ = 0;

  // Written, not yet handed to inner_. A std::vector: its copies are memmove in every build,
  // where kj::Vector<byte> (0.9.2) copies byte by byte, which unoptimized builds feel.
  std::vector<kj::byte> pending_;
  std::vector<kj::byte> spare_;  // a written buffer kept for the next flush (no allocation)
  size_t inChain_ = 0;            // bytes handed to the chain, not yet written
  kj::ForkedPromise<void> chain_;
  bool flushQueued_ = false;
  kj::Maybe<kj::Promise<void>> flushTask_;  // the evalLast() that flushes this turn's writes
  kj::Maybe<kj::Exception> writeError_;
  uint64_t innerReads_ = 0;
  uint64_t innerWrites_ = 0;
};

// Wraps a connected socket: sets TCP_NODELAY (the buffering is ours now) where it applies.
kj::Own<BufferedStream> buffered(kj::Own<kj::AsyncIoStream> stream);

}  // namespace keel::net
