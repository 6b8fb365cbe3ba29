#include "restore-thread.h"

#include <algorithm>
#include <string_view>

namespace keel::server {

RestoreThread::RestoreThread(std::unique_ptr<SnapshotRestore> restore, const uint8_t* buffer)
    : restore_(std::move(restore)), buffer_(buffer), thread_([this] { run(); }) {}

RestoreThread::~RestoreThread() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void RestoreThread::arrived(uint64_t bytes) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    arrived_ = bytes;
  }
  cv_.notify_one();
}

kj::Promise<std::unique_ptr<SnapshotRestore>> RestoreThread::finish() {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<bool>();
  {
    std::lock_guard<std::mutex> lk(mu_);
    done_ = kj::mv(paf.fulfiller);
    finishing_ = true;
  }
  cv_.notify_one();
  // The thread no longer touches restore_ once it fulfilled.
  return paf.promise.then([this](bool ok) { return ok ? std::move(restore_) : nullptr; });
}

void RestoreThread::run() {
  // At most this much per write(), so that a stop waits for little even when the parse lags.
  constexpr uint64_t kSlice = 4u << 20;
  uint64_t parsed = 0;
  bool failed = false;  // the restore threw: the bytes are judged whole by restore() instead
  for (;;) {
    uint64_t upTo;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || arrived_ > parsed || finishing_; });
      if (stop_) return;
      upTo = failed ? parsed : std::min(arrived_, parsed + kSlice);
      if (upTo == parsed) {  // every byte that will come is parsed, or the parse failed
        if (!finishing_) {  // failed: only the end to wait for
          cv_.wait(lk, [&] { return stop_ || finishing_; });
          if (stop_) return;
        }
        lk.unlock();
        bool ok = false;
        try {
          ok = !failed && restore_->finish();
        } catch (const std::exception&) {
        }
        lk.lock();
        if (!stop_) done_->fulfill(kj::mv(ok));
        return;
      }
    }
    try {
      restore_->write(std::string_view(reinterpret_cast<const char*>(buffer_) + parsed, size_t(upTo - parsed)));
    } catch (const std::exception&) {
      failed = true;  // e.g. std::bad_alloc: not this thread's to end the process for
    }
    parsed = upTo;
  }
}

}  // namespace keel::server
