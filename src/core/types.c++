#include <keel/types.h>
#include <keel/message.h>

#include <cassert>
#include <cstdlib>
#include <new>

namespace keel {

Bytes::Bytes(const void* data, size_t size) {
  if (size == 0) return;
  *this = uninitialized(size);
  std::memcpy(rep_->bytes(), data, size);
}

Bytes Bytes::uninitialized(size_t size) {
  Bytes b;
  if (size == 0) return b;
  void* mem = ::operator new(sizeof(Rep) + size);
  Rep* r = new (mem) Rep{1, size, nullptr};
  r->ptr = reinterpret_cast<uint8_t*>(r + 1);
  b.rep_ = r;
  return b;
}

struct Bytes::ExternalRep : Rep {
  std::function<void()> release;
};

Bytes Bytes::external(const void* data, size_t size, std::function<void()> release) {
  auto* r = new ExternalRep;
  r->refs = 1;
  r->size = size;
  r->ptr = static_cast<uint8_t*>(const_cast<void*>(data));
  r->release = std::move(release);
  Bytes b;
  b.rep_ = r;
  return b;
}

void Bytes::shrink(size_t n) noexcept {
  assert(n <= size() && useCount() <= 1 && (!rep_ || rep_->inline_()));
  if (n == 0) release();
  else rep_->size = n;
}

void Bytes::destroy(Rep* rep) noexcept {
  if (rep->inline_()) return ::operator delete(rep);
  auto* e = static_cast<ExternalRep*>(rep);
  if (e->release) e->release();
  delete e;
}

std::string toString(Term t) { return "t" + std::to_string(t.value); }
std::string toString(Index i) { return "i" + std::to_string(i.value); }
std::string toString(NodeId n) { return n ? "n" + std::to_string(n.value) : "none"; }

const char* toString(MessageType t) noexcept {
  switch (t) {
    case MessageType::PreVote: return "PreVote";
    case MessageType::PreVoteResponse: return "PreVoteResponse";
    case MessageType::Vote: return "Vote";
    case MessageType::VoteResponse: return "VoteResponse";
    case MessageType::Append: return "Append";
    case MessageType::AppendResponse: return "AppendResponse";
    case MessageType::Heartbeat: return "Heartbeat";
    case MessageType::HeartbeatResponse: return "HeartbeatResponse";
    case MessageType::Snapshot: return "Snapshot";
    case MessageType::TimeoutNow: return "TimeoutNow";
    case MessageType::ReadIndex: return "ReadIndex";
    case MessageType::ReadIndexResponse: return "ReadIndexResponse";
  }
  return "?";
}

std::string Message::toString() const {
  std::string s = keel::toString(from) + "->" + keel::toString(to) + " " + keel::toString(type) +
                  " term=" + std::to_string(term.value);
  auto add = [&](const char* k, uint64_t v) { s += " "; s += k; s += "="; s += std::to_string(v); };
  switch (type) {
    case MessageType::Append:
      add("index", index.value); add("logTerm", logTerm.value); add("commit", commit.value);
      s += " entries=[";
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i) s += ",";
        s += std::to_string(entries[i].term.value) + "/" + std::to_string(entries[i].index.value);
      }
      s += "]";
      break;
    case MessageType::AppendResponse:
      add("index", index.value);
      if (reject) { s += " reject"; add("hintIndex", hintIndex.value); add("hintTerm", hintTerm.value); }
      break;
    case MessageType::Vote: case MessageType::PreVote:
      add("index", index.value); add("logTerm", logTerm.value);
      if (transfer) s += " transfer";
      break;
    case MessageType::VoteResponse: case MessageType::PreVoteResponse:
      s += reject ? " reject" : " grant";
      break;
    case MessageType::Heartbeat: add("commit", commit.value); add("context", context); break;
    case MessageType::HeartbeatResponse: add("context", context); break;
    case MessageType::Snapshot:
      if (snapshot) { add("snapIndex", snapshot->meta.index.value); add("snapTerm", snapshot->meta.term.value); }
      break;
    case MessageType::ReadIndex: add("context", context); break;
    case MessageType::ReadIndexResponse:
      add("index", index.value); add("context", context); if (reject) s += " reject";
      break;
    case MessageType::TimeoutNow: break;
  }
  return s;
}

}  // namespace keel
