// keel: RestoreThread, which parses a snapshot on a thread of its own while it streams in.
#pragma once

#include <keel/state-machine.h>

#include <kj/async.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>

namespace keel::server {

// A state machine's SnapshotRestore copies every value of a snapshot into the new state; on a
// node receiving a large snapshot that was half of the event loop's work. This runs it on
// another thread, over the snapshot's bytes as the event loop hands them over, in order, piece
// by piece; parsed() says which of them the thread is done with.
class RestoreThread {
 public:
  explicit RestoreThread(std::unique_ptr<SnapshotRestore> restore);
  ~RestoreThread();  // stops the parse, if it is still going, and waits for the thread
  RestoreThread(const RestoreThread&) = delete;
  RestoreThread& operator=(const RestoreThread&) = delete;

  // The next bytes of the snapshot, which must stay in place, unchanged, until parsed() covers
  // them.
  void arrived(std::string_view bytes);
  // How many of the bytes handed over the thread is done with (parsed, or passed over once a
  // parse failed): the pieces up to there may go. Any thread.
  uint64_t parsed() const noexcept { return parsed_.load(std::memory_order_acquire); }
  // Every byte arrived: resolves, on the calling thread's event loop, once the thread parsed
  // them, to the restore if its finish() took them as a snapshot, else to nullptr. Once.
  kj::Promise<std::unique_ptr<SnapshotRestore>> finish();

 private:
  void run();

  std::unique_ptr<SnapshotRestore> restore_;
  std::atomic<uint64_t> parsed_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string_view> pieces_;  // guarded by mu_, like the two below
  bool finishing_ = false;
  bool stop_ = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<bool>> done_;
  std::thread thread_;
};

}  // namespace keel::server
