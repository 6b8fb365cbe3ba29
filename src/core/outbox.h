// keel internal: a reusable list of outgoing messages. Message objects (and the capacity of
// their entry vectors) are kept across clear(), so a steady stream of Appends allocates nothing.
#pragma once

#include <keel/message.h>

#include <span>
#include <vector>

namespace keel {

class Outbox {
 public:
  // The first message reserves room for `n` (one per peer is typical for a round).
  void expect(size_t n) { expected_ = n; }
  // A message with every field at its default (entries empty, their capacity kept).
  Message& add() {
    if (size_ == slots_.size()) {
      if (slots_.empty()) slots_.reserve(expected_);
      return slots_.emplace_back(), slots_[size_++];
    }
    Message& m = slots_[size_++];
    m.type = MessageType::Append;
    m.from = m.to = NodeId{};
    m.term = m.logTerm = m.hintTerm = Term{};
    m.index = m.commit = m.hintIndex = Index{};
    m.reject = m.transfer = false;
    m.context = 0;
    return m;  // entries and snapshot were cleared by clear()
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
  size_t expected_ = 4;
};

}  // namespace keel
