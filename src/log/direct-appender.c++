#include "direct-appender.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace keel {

namespace {
uint8_t* alignedBuffer(size_t bytes) {
  void* p = std::aligned_alloc(DirectAppender::kAlign, bytes);
  if (!p) throw std::bad_alloc();
  return static_cast<uint8_t*>(p);
}
}  // namespace

DirectAppender::DirectAppender(std::unique_ptr<File> file, uint64_t offset, size_t bufferBytes)
    : file_(std::move(file)),
      buf_(nullptr, std::free),
      cap_(std::max(kAlign, bufferBytes / kAlign * kAlign)),
      start_(offset / kAlign * kAlign),
      len_(size_t(offset - start_)),
      end_(offset) {
  buf_.reset(alignedBuffer(cap_));
  std::memset(buf_.get(), 0, len_);
}

void DirectAppender::append(const uint8_t* p, size_t n) {
  while (n) {
    size_t k = std::min(n, cap_ - len_);
    std::memcpy(buf_.get() + len_, p, k);
    len_ += k, end_ += k, p += k, n -= k;
    if (len_ == cap_) write(cap_);
  }
}

void DirectAppender::finish() {
  size_t padded = (len_ + kAlign - 1) / kAlign * kAlign;
  std::memset(buf_.get() + len_, 0, padded - len_);
  if (padded) write(padded);
}

DirectWriter::DirectWriter(std::unique_ptr<File> direct, std::shared_ptr<File> buffered, size_t bufferBytes)
    : file_(std::move(direct)),
      buffered_(std::move(buffered)),
      buf_(nullptr, std::free),
      cap_(std::max(2 * kAlign, bufferBytes / kAlign * kAlign)),
      last_(alignedBuffer(kAlign), std::free) {
  buf_.reset(alignedBuffer(cap_));
}

uint64_t DirectWriter::write(const uint8_t* p, size_t n, uint64_t offset) {
  uint64_t start = offset / kAlign * kAlign;
  size_t len = size_t(offset - start);  // bytes in buf_, at first those before the piece
  if (len) {
    if (lastBlock_ == start) {
      std::memcpy(buf_.get(), last_.get(), len);
    } else {
      size_t got = buffered_->pread(buf_.get(), len, start);
      std::memset(buf_.get() + got, 0, len - got);
    }
  }
  for (;;) {
    size_t k = std::min(n, cap_ - len);
    std::memcpy(buf_.get() + len, p, k);
    len += k, p += k, n -= k;
    if (n == 0) break;
    file_->pwrite(buf_.get(), len, start);  // full: cap_ is a multiple of kAlign
    start += len, len = 0;
  }
  size_t padded = (len + kAlign - 1) / kAlign * kAlign;
  std::memset(buf_.get() + len, 0, padded - len);
  if (padded) {
    file_->pwrite(buf_.get(), padded, start);
    std::memcpy(last_.get(), buf_.get() + padded - kAlign, kAlign);
    lastBlock_ = start + padded - kAlign;
  }
  return start + padded;
}

void DirectWriter::zeros(uint64_t from, uint64_t to) {
  std::memset(buf_.get(), 0, cap_);
  for (uint64_t at = from; at < to; at += std::min<uint64_t>(cap_, to - at))
    file_->pwrite(buf_.get(), size_t(std::min<uint64_t>(cap_, to - at)), at);
}

void DirectAppender::write(size_t bytes) {
  file_->pwrite(buf_.get(), bytes, start_);
  start_ += bytes;
  len_ = 0;
}

}  // namespace keel
