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

void DirectAppender::write(size_t bytes) {
  file_->pwrite(buf_.get(), bytes, start_);
  start_ += bytes;
  len_ = 0;
}

}  // namespace keel
