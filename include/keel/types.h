// keel: the vocabulary shared by every layer.
//
// Strong types for the three numbers Raft is made of (Term, Index, NodeId), an immutable
// reference-counted byte buffer (Bytes) that lets an entry travel from a proposal through the
// log, messages and the state machine without copying its payload, and the records the log
// stores: Entry, HardState, Membership, SnapshotMeta, Snapshot.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace keel {

// A Raft term (Raft paper §5.1). Term{0} is "before any election".
struct Term {
  uint64_t value = 0;
  constexpr Term() noexcept = default;
  constexpr explicit Term(uint64_t v) noexcept : value(v) {}
  constexpr auto operator<=>(const Term&) const = default;
  constexpr Term next() const noexcept { return Term{value + 1}; }
};

// A position in the log. Index{0} is "before the first entry"; the first entry is Index{1}.
struct Index {
  uint64_t value = 0;
  constexpr Index() noexcept = default;
  constexpr explicit Index(uint64_t v) noexcept : value(v) {}
  constexpr auto operator<=>(const Index&) const = default;
  constexpr Index next() const noexcept { return Index{value + 1}; }
  constexpr Index prev() const noexcept { return Index{value - 1}; }
  constexpr Index operator+(uint64_t n) const noexcept { return Index{value + n}; }
  constexpr Index operator-(uint64_t n) const noexcept { return Index{value - n}; }
  // The number of entries in [b, a).
  friend constexpr uint64_t operator-(Index a, Index b) noexcept { return a.value - b.value; }
};

// A member of the cluster. NodeId{0} means "none" (no vote, no known leader).
struct NodeId {
  uint64_t value = 0;
  constexpr NodeId() noexcept = default;
  constexpr explicit NodeId(uint64_t v) noexcept : value(v) {}
  constexpr auto operator<=>(const NodeId&) const = default;
  constexpr explicit operator bool() const noexcept { return value != 0; }
};
inline constexpr NodeId kNoNode{};

// An immutable byte string shared by reference count. Copying a Bytes copies a pointer; the
// payload is allocated once, when it is created. The count is not atomic: a Bytes belongs to
// one thread at a time (the event loop that runs the core). To hand bytes to another thread,
// hand over the only reference (move it) or copy the payload.
class Bytes {
 public:
  Bytes() noexcept = default;
  explicit Bytes(std::string_view s) : Bytes(s.data(), s.size()) {}
  Bytes(const void* data, size_t size);
  Bytes(const Bytes& o) noexcept : rep_(o.rep_) { if (rep_) ++rep_->refs; }
  Bytes(Bytes&& o) noexcept : rep_(o.rep_) { o.rep_ = nullptr; }
  Bytes& operator=(const Bytes& o) noexcept {
    Rep* r = o.rep_;
    if (r) ++r->refs;
    release();
    rep_ = r;
    return *this;
  }
  Bytes& operator=(Bytes&& o) noexcept {
    if (this != &o) { release(); rep_ = o.rep_; o.rep_ = nullptr; }
    return *this;
  }
  ~Bytes() { release(); }

  // A buffer of `size` bytes to fill, through mutableData(). Bytes that share it must not read
  // what is still being filled (a snapshot receive's readers read only what has arrived).
  static Bytes uninitialized(size_t size);
  // Bytes that live elsewhere (a file's mapping): `data` stays valid until the last Bytes that
  // shares them goes, and then `release` runs (once). Read-only: no mutableData(), no shrink().
  static Bytes external(const void* data, size_t size, std::function<void()> release);
  uint8_t* mutableData() noexcept { return rep_ ? rep_->bytes() : nullptr; }
  // Keeps the first n bytes (n <= size()) of a payload nobody else shares: a buffer allocated
  // larger than it turned out to need. The memory stays allocated until the payload goes.
  void shrink(size_t n) noexcept;

  const uint8_t* data() const noexcept { return rep_ ? rep_->bytes() : nullptr; }
  size_t size() const noexcept { return rep_ ? rep_->size : 0; }
  bool empty() const noexcept { return size() == 0; }
  // How many Bytes share this payload (0 for an empty Bytes without one).
  size_t useCount() const noexcept { return rep_ ? rep_->refs : 0; }
  std::string_view view() const noexcept {
    return rep_ ? std::string_view(reinterpret_cast<const char*>(rep_->bytes()), rep_->size)
                : std::string_view();
  }
  std::string str() const { return std::string(view()); }
  friend bool operator==(const Bytes& a, const Bytes& b) noexcept { return a.view() == b.view(); }

 private:
  struct Rep {
    size_t refs;
    size_t size;
    uint8_t* ptr;  // right after the Rep, or elsewhere (external())
    uint8_t* bytes() noexcept { return ptr; }
    bool inline_() noexcept { return ptr == reinterpret_cast<uint8_t*>(this + 1); }
  };
  struct ExternalRep;
  void release() noexcept {
    if (rep_ && --rep_->refs == 0) destroy(rep_);
    rep_ = nullptr;
  }
  static void destroy(Rep* rep) noexcept;
  Rep* rep_ = nullptr;
};

enum class EntryType : uint8_t {
  Normal = 0,      // application data; empty data is the leader's no-op (§5.4.2, §8)
  Membership = 1,  // data is an encoded Membership that takes effect when applied
};

// One log entry (Raft paper §5.3).
struct Entry {
  Term term;
  Index index;
  EntryType type = EntryType::Normal;
  Bytes data;
};

// What must be on stable storage before a message depending on it leaves the node (§5.1,
// Figure 2: currentTerm and votedFor are persistent state). `commit` is stored too so that a
// restarted node can apply what it knew to be committed without waiting for a leader.
struct HardState {
  Term term;
  NodeId vote;
  Index commit;
  friend bool operator==(const HardState&, const HardState&) = default;
  // Whether this state, replacing `before`, must be durable before anything that follows: a new
  // term or vote must (Raft paper, Figure 2: persistent state); the commit index alone is
  // volatile and may be written lazily.
  bool mustPersistOver(const HardState& before) const { return term != before.term || vote != before.vote; }
};

// A cluster configuration. Outside a membership change `outgoing` is empty and decisions need
// a majority of `voters`. In the joint configuration of a change (Raft paper §6) `outgoing`
// holds the old voters and every decision needs a majority of both sets. Learners receive the
// log but neither vote nor count towards any majority. Each list is sorted and free of
// duplicates; no node is a learner and a voter at once.
struct Membership {
  std::vector<NodeId> voters;
  std::vector<NodeId> outgoing;
  std::vector<NodeId> learners;

  bool joint() const noexcept { return !outgoing.empty(); }
  bool isVoter(NodeId id) const noexcept;  // in voters or outgoing
  bool isLearner(NodeId id) const noexcept;
  bool contains(NodeId id) const noexcept { return isVoter(id) || isLearner(id); }
  // Every member (voters, outgoing and learners), sorted, without duplicates.
  std::vector<NodeId> members() const;
  // Empty when well-formed, else what is wrong with it.
  std::string validate() const;
  std::string toString() const;

  // The wire and log form, little-endian: u32 count then u64 ids, for each list in order.
  Bytes encode() const;
  // False when `bytes` is not an encoded Membership.
  static bool decode(std::string_view bytes, Membership& out);

  friend bool operator==(const Membership&, const Membership&) = default;
};

// Describes the state a snapshot captures: everything up to and including `index`, whose term
// was `term`, under `membership` (the configuration as of `index`).
struct SnapshotMeta {
  Index index;
  Term term;
  Membership membership;
  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

// A snapshot: its description and the state machine's bytes (opaque to the core).
struct Snapshot {
  SnapshotMeta meta;
  Bytes data;
};

std::string toString(Term t);
std::string toString(Index i);
std::string toString(NodeId n);

}  // namespace keel
