// keel: DirectAppender, which writes a stream of bytes to a file opened for direct I/O
// (FileSystem::openDirect). Private to keel_log.
#pragma once

#include <keel/segmented-log.h>

#include <cstdint>
#include <memory>

namespace keel {

// Direct writes skip the page cache: no copy into it, and none of its bookkeeping, which on a
// virtual machine cost more CPU than the transfer that fills the file (a received snapshot).
// Their buffers, offsets and sizes must be multiples of kAlign; the appender takes pieces of
// any size and writes them through an aligned buffer, a whole buffer at a time.
class DirectAppender {
 public:
  static constexpr size_t kAlign = 4096;

  // The stream's first byte goes to `offset` of `file`; the bytes before it in its block are
  // written as zeros (the caller writes them later, through its own buffered handle).
  DirectAppender(std::unique_ptr<File> file, uint64_t offset, size_t bufferBytes = 16u << 20);
  DirectAppender(const DirectAppender&) = delete;
  DirectAppender& operator=(const DirectAppender&) = delete;

  uint64_t end() const noexcept { return end_; }  // the file offset of the next byte
  void append(const uint8_t* p, size_t n);
  // Writes what is left, its last block padded with zeros: the file is then longer than end()
  // by up to kAlign - 1 bytes, which the caller truncates.
  void finish();

 private:
  void write(size_t bytes);  // buf_[0, bytes) at start_; empties buf_

  std::unique_ptr<File> file_;
  std::unique_ptr<uint8_t, void (*)(void*)> buf_;
  size_t cap_;
  uint64_t start_;  // the file offset of buf_[0]
  size_t len_;      // bytes in buf_ (at first the zeros ahead of the stream)
  uint64_t end_;
};

}  // namespace keel
