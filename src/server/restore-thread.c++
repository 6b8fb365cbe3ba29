#include "restore-thread.h"

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
  uint64_t parsed = 0;
  for (;;) {
    uint64_t upTo;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || arrived_ > parsed || finishing_; });
      if (stop_) return;
      upTo = arrived_;
      if (upTo == parsed) {  // finishing, and every byte is parsed
        lk.unlock();
        bool ok = restore_->finish();
        lk.lock();
        if (!stop_) done_->fulfill(kj::mv(ok));
        return;
      }
    }
    restore_->write(std::string_view(reinterpret_cast<const char*>(buffer_) + parsed, size_t(upTo - parsed)));
    parsed = upTo;
  }
}

}  // namespace keel::server
