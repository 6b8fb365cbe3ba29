// keel internal: a reusable list of outgoing messages. Message objects (and the capacity of
// their entry vectors) are kept across clear(), so a steady stream of Appends allocates nothing.
#pragma once

#include <keel/message.h>

#include <span>
#include <vector>

namespace keel {

class Outbox {
 public:
  Message& add() {
    if (size_ == slots_.size()) slots_.emplace_back();
    Message& m = slots_[size_++];
    std::vector<Entry> entries = std::move(m.entries);  // keep the capacity
    m = Message{};
    m.entries = std::move(entries);
    return m;
  }
  size_t size() const { return size_; }
  std::span<const Message> span() const { return {slots_.data(), size_}; }
  void clear() {
    for (size_t i = 0; i < size_; ++i) {
      slots_[i].entries.clear();  // drops the payload references now
      slots_[i].snapshot.reset();
    }
    size_ = 0;
  }

 private:
  std::vector<Message> slots_;
  size_t size_ = 0;
};

}  // namespace keel
