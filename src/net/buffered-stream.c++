// keel: BufferedStream (see buffered-stream.h).
#include "buffered-stream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstring>

namespace keel::net {

BufferedStream::BufferedStream(kj::Own<kj::AsyncIoStream> inner)
    : inner_(kj::mv(inner)),
      readBuffer_(kj::heapArray<kj::byte>(kReadBufferBytes)),
      chain_(kj::Promise<void>(kj::READY_NOW).fork()) {}

BufferedStream::~BufferedStream() noexcept(false) {}

kj::Promise<size_t> BufferedStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  auto* out = static_cast<kj::byte*>(buffer);
  size_t n = kj::min(maxBytes, readEnd_ - readPos_);
  std::memcpy(out, readBuffer_.begin() + readPos_, n);
  readPos_ += n;
  if (n >= minBytes) return n;
  out += n;
  size_t minLeft = minBytes - n;
  size_t maxLeft = maxBytes - n;
  ++innerReads_;
  if (maxLeft >= readBuffer_.size()) {
    // Large enough to go straight into the caller's buffer.
    return inner_->tryRead(out, minLeft, maxLeft).then([n](size_t r) { return n + r; });
  }
  readPos_ = readEnd_ = 0;
  return inner_->tryRead(readBuffer_.begin(), minLeft, readBuffer_.size())
      .then([this, out, n, maxLeft](size_t r) {
        size_t take = kj::min(r, maxLeft);
        std::memcpy(out, readBuffer_.begin(), take);
        readPos_ = take;
        readEnd_ = r;
        return n + take;
      });
}

kj::Promise<void> BufferedStream::write(const void* buffer, size_t size) {
  kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
  return write(kj::arrayPtr(&piece, 1));
}

kj::Promise<void> BufferedStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  KJ_IF_MAYBE(e, writeError_) { return kj::cp(*e); }
  size_t size = 0;
  for (auto& p : pieces) size += p.size();
  if (size >= kDirectBytes) {
    // The caller keeps `pieces` alive until the promise resolves (AsyncOutputStream's contract).
    flush();
    inChain_ += size;
    append([this, pieces, size]() {
      ++innerWrites_;
      return inner_->write(pieces).then([this, size]() { inChain_ -= size; });
    });
    return chain_.addBranch();
  }
  if (pending_.empty() && pending_.capacity() == 0) pending_.swap(spare_);
  for (auto& p : pieces) pending_.insert(pending_.end(), p.begin(), p.end());
  if (pending_.size() + inChain_ >= kHighWaterBytes) {
    flush();
    return chain_.addBranch();
  }
  if (!flushQueued_) {
    flushQueued_ = true;
    flushTask_ = kj::evalLast([this]() {
                   flushQueued_ = false;
                   flush();
                 }).eagerlyEvaluate(nullptr);
  }
  return kj::READY_NOW;
}

void BufferedStream::flush() {
  if (pending_.empty()) return;
  auto data = kj::heap<std::vector<kj::byte>>(std::move(pending_));
  pending_ = {};
  size_t size = data->size();
  inChain_ += size;
  append([this, data = kj::mv(data), size]() mutable {
    ++innerWrites_;
    auto p = inner_->write(data->data(), data->size());
    return p.then([this, size, data = kj::mv(data)]() mutable {
      inChain_ -= size;
      if (spare_.capacity() == 0 && data->capacity() <= 4 * kDirectBytes) {
        data->clear();
        spare_.swap(*data);
      }
    });
  });
}

void BufferedStream::append(kj::Function<kj::Promise<void>()> step) {
  auto next = chain_.addBranch()
                  .then([this, step = kj::mv(step)]() mutable -> kj::Promise<void> {
                    KJ_IF_MAYBE(e, writeError_) { return kj::cp(*e); }
                    return step();
                  })
                  .catch_([this](kj::Exception&& e) -> kj::Promise<void> {
                    if (writeError_ == nullptr) writeError_ = kj::cp(e);
                    return kj::mv(e);
                  });
  chain_ = next.fork();
}

void BufferedStream::shutdownWrite() {
  flush();
  append([this]() -> kj::Promise<void> {
    inner_->shutdownWrite();
    return kj::READY_NOW;
  });
}

kj::Own<BufferedStream> buffered(kj::Own<kj::AsyncIoStream> stream) {
  int one = 1;
  // Not every stream is a TCP socket (tests use pipes): then there is nothing to set.
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { stream->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); })) {
    (void)e;
  }
  return kj::heap<BufferedStream>(kj::mv(stream));
}

}  // namespace keel::net
