// keel: RestoreThread, which parses a snapshot on a thread of its own while it streams in.
#pragma once

#include <keel/state-machine.h>

#include <kj/async.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace keel::server {

// A state machine's SnapshotRestore copies every value of a snapshot into the new state; on a
// node receiving a large snapshot that was half of the event loop's work. This runs it on
// another thread, over a buffer the snapshot's bytes are copied into in order: the event loop
// says how many have arrived, the thread parses up to there.
class RestoreThread {
 public:
  // `buffer` holds the bytes as they arrive, and must stay valid and in place until finish()
  // resolved or this is destroyed.
  RestoreThread(std::unique_ptr<SnapshotRestore> restore, const uint8_t* buffer);
  ~RestoreThread();  // stops the parse, if it is still going, and waits for the thread
  RestoreThread(const RestoreThread&) = delete;
  RestoreThread& operator=(const RestoreThread&) = delete;

  // The first `bytes` bytes of the buffer are in place.
  void arrived(uint64_t bytes);
  // Every byte arrived: resolves, on the calling thread's event loop, once the thread parsed
  // them, to the restore if its finish() took them as a snapshot, else to nullptr. Once.
  kj::Promise<std::unique_ptr<SnapshotRestore>> finish();

 private:
  void run();

  std::unique_ptr<SnapshotRestore> restore_;
  const uint8_t* buffer_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t arrived_ = 0;  // guarded by mu_, like the two below
  bool finishing_ = false;
  bool stop_ = false;
  kj::Own<kj::CrossThreadPromiseFulfiller<bool>> done_;
  std::thread thread_;
};

}  // namespace keel::server
