#include <keel/types.h>

#include <algorithm>

namespace keel {
namespace {

bool has(const std::vector<NodeId>& v, NodeId id) { return std::binary_search(v.begin(), v.end(), id); }

bool sortedUnique(const std::vector<NodeId>& v) {
  for (size_t i = 1; i < v.size(); ++i) if (!(v[i - 1] < v[i])) return false;
  return true;
}

void putU32(std::string& s, uint32_t v) { for (int i = 0; i < 4; ++i) s.push_back(char(v >> (8 * i))); }
void putU64(std::string& s, uint64_t v) { for (int i = 0; i < 8; ++i) s.push_back(char(v >> (8 * i))); }

bool getU(std::string_view& in, int bytes, uint64_t& v) {
  if (in.size() < size_t(bytes)) return false;
  v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(uint8_t(in[i])) << (8 * i);
  in.remove_prefix(bytes);
  return true;
}

std::string listString(const std::vector<NodeId>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i].value);
  return s + "]";
}

}  // namespace

bool Membership::isVoter(NodeId id) const noexcept { return has(voters, id) || has(outgoing, id); }
bool Membership::isLearner(NodeId id) const noexcept { return has(learners, id); }

std::vector<NodeId> Membership::members() const {
  std::vector<NodeId> all(voters);
  all.insert(all.end(), outgoing.begin(), outgoing.end());
  all.insert(all.end(), learners.begin(), learners.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

std::string Membership::validate() const {
  if (voters.empty()) return "a configuration needs at least one voter";
  for (const auto* list : {&voters, &outgoing, &learners}) {
    if (!sortedUnique(*list)) return "membership lists must be sorted and free of duplicates";
    if (has(*list, kNoNode)) return "node id 0 is reserved for 'none'";
  }
  for (NodeId l : learners)
    if (isVoter(l)) return "node " + std::to_string(l.value) + " is both a voter and a learner";
  return {};
}

std::string Membership::toString() const {
  std::string s = "voters=" + listString(voters);
  if (joint()) s += " outgoing=" + listString(outgoing);
  if (!learners.empty()) s += " learners=" + listString(learners);
  return s;
}

Bytes Membership::encode() const {
  std::string s;
  s.reserve(12 + 8 * (voters.size() + outgoing.size() + learners.size()));
  for (const auto* list : {&voters, &outgoing, &learners}) {
    putU32(s, uint32_t(list->size()));
    for (NodeId id : *list) putU64(s, id.value);
  }
  return Bytes(s);
}

bool Membership::decode(std::string_view in, Membership& out) {
  Membership m;
  for (auto* list : {&m.voters, &m.outgoing, &m.learners}) {
    uint64_t n;
    if (!getU(in, 4, n) || n > in.size() / 8) return false;
    list->resize(n);
    for (auto& id : *list) getU(in, 8, id.value);
  }
  if (!in.empty() || !m.validate().empty()) return false;
  out = std::move(m);
  return true;
}

}  // namespace keel
