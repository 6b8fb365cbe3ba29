#include "restore-thread.h"

#include <algorithm>

namespace keel::server {

RestoreThread::RestoreThread(std::unique_ptr<SnapshotRestore> restore)
    : restore_(std::move(restore)), thread_([this] { run(); }) {}

RestoreThread::~RestoreThread() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void RestoreThread::arrived(std::string_view bytes) {
  if (bytes.empty()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    pieces_.push_back(bytes);
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
  constexpr size_t kSlice = 4u << 20;
  bool failed = false;  // the restore threw: the bytes are judged whole by restore() instead
  for (;;) {
    std::string_view slice;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !pieces_.empty() || finishing_; });
      if (stop_) return;
      if (pieces_.empty()) {  // finishing, and every byte that came is parsed (or passed over)
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
      slice = pieces_.front().substr(0, kSlice);
    }
    if (!failed) {
      try {
        restore_->write(slice);
      } catch (const std::exception&) {
        failed = true;  // e.g. std::bad_alloc: not this thread's to end the process for
      }
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      std::string_view& front = pieces_.front();
      front.remove_prefix(slice.size());
      if (front.empty()) pieces_.pop_front();
    }
    parsed_.fetch_add(slice.size(), std::memory_order_release);
  }
}

}  // namespace keel::server
