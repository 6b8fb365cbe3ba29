// keel example: plugging a custom Log (file-log.h) into the consensus module.
//
// Three nodes in one process, each a Consensus over its own FileLog and a RegisterMachine
// (../register), with messages passed in memory. It writes to the register, compacts one
// node's log into a snapshot, "restarts" every node from its file alone, and checks that the
// cluster comes back with the same state and keeps working.
//
//   keel-custom-log [DIR]     the log files go to DIR (default: a temporary directory, removed)
//
// Exit status 0 when every check passed (the last line says "OK").
#include <keel/consensus.h>

#include "../register/register-machine.h"
#include "file-log.h"

#include <deque>
#include <filesystem>
#include <map>
#include <memory>

using namespace keel;
using namespace keel::examples;

namespace {

struct Member {
  std::unique_ptr<FileLog> log;
  RegisterMachine machine;
  std::unique_ptr<Consensus> node;
  std::map<uint64_t, std::string> results;  // what apply() returned, by index
};

class Cluster {
 public:
  explicit Cluster(std::string dir) : dir_(std::move(dir)) {}

  // Opens (or reopens) every node from its file, as a process would after a restart.
  void start() {
    members_.clear();
    members_.resize(3);
    Membership voters{{NodeId{1}, NodeId{2}, NodeId{3}}, {}, {}};
    for (uint64_t id = 1; id <= 3; ++id) {
      Member& m = member(id);
      m.log = std::make_unique<FileLog>(dir_ + "/n" + std::to_string(id) + ".log", voters);
      Snapshot snap = m.log->snapshot();
      if (!snap.data.empty() && !m.machine.restore(snap.data.view())) throw std::runtime_error("bad snapshot");
      Config config;
      config.id = NodeId{id};
      config.seed = id;      // deterministic: the same run every time
      config.applied = snap.meta.index;  // the core hands out the committed entries after it
      m.node = std::make_unique<Consensus>(config, *m.log);
      std::printf("n%llu opened: %llu records replayed, log %llu..%llu, snapshot at %llu, term %llu\n",
                  (unsigned long long)id, (unsigned long long)m.log->replayed(),
                  (unsigned long long)m.log->firstIndex().value, (unsigned long long)m.log->lastIndex().value,
                  (unsigned long long)snap.meta.index.value, (unsigned long long)m.log->hardState().term.value);
    }
  }

  Member& member(uint64_t id) { return members_.at(id - 1); }

  // One tick everywhere, then messages and Readies until nothing moves.
  void tick() {
    for (Member& m : members_) m.node->tick();
    settle();
  }

  uint64_t waitLeader() {
    for (int i = 0; i < 100; ++i, tick())
      for (uint64_t id = 1; id <= 3; ++id)
        if (member(id).node->role() == Role::Leader) return id;
    return 0;
  }

  // Proposes on the leader and ticks long enough for every node to apply it (heartbeats carry
  // the commit index to the followers); returns what the leader's machine answered.
  std::string write(uint64_t leader, std::string command) {
    Result r = member(leader).node->propose(Bytes(command));
    if (!r.ok()) return std::string("refused: ") + toString(r.refusal);
    for (int i = 0; i < 20; ++i) tick();
    return member(leader).results[r.index.value];
  }

 private:
  // The driver loop of include/keel/consensus.h, for one node.
  void drive(Member& m) {
    while (m.node->hasReady()) {
      const Ready& rd = m.node->ready();
      for (const Message& msg : rd.messages) network_.push_back(msg);
      if (rd.snapshot) {
        m.log->installSnapshot(*rd.snapshot);
        m.machine.restore(rd.snapshot->data.view());
      }
      if (rd.hardState) m.log->setHardState(*rd.hardState);
      m.log->append(rd.entries);
      m.log->sync();  // durable before anything below
      for (const Message& msg : rd.messagesAfterPersist) network_.push_back(msg);
      for (const Entry& e : rd.committed)
        if (e.type == EntryType::Normal && !e.data.empty()) m.results[e.index.value] = m.machine.apply(e.index, e.data.view());
      m.node->advance();
    }
  }
  void settle() {
    for (bool busy = true; busy;) {
      busy = false;
      for (Member& m : members_)
        if (m.node->hasReady()) drive(m), busy = true;
      while (!network_.empty()) {
        Message msg = std::move(network_.front());
        network_.pop_front();
        member(msg.to.value).node->step(msg);
        busy = true;
      }
    }
  }

  std::string dir_;
  std::vector<Member> members_;
  std::deque<Message> network_;
};

std::string reply(const std::string& bytes) {
  std::vector<std::string_view> f;
  if (!decodeFields(bytes, f) || f.empty()) return "(undecodable: " + bytes + ")";
  std::string s(f[0]);
  for (size_t i = 1; i < f.size(); ++i) s += " \"" + std::string(f[i]) + "\"";
  return s;
}

std::string value(Member& m) { return reply(m.machine.query(encodeFields({"get"}))); }

int failures = 0;
void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool temporary = argc < 2;
  std::string dir = temporary ? (std::filesystem::temp_directory_path() / "keel-custom-log-XXXXXX").string() : argv[1];
  if (temporary && !::mkdtemp(dir.data())) return 1;
  std::filesystem::create_directories(dir);

  Cluster cluster(dir);
  std::printf("-- a new cluster of 3 nodes, logs in %s\n", temporary ? "a temporary directory" : dir.c_str());
  cluster.start();
  uint64_t leader = cluster.waitLeader();
  std::printf("leader: n%llu\n", (unsigned long long)leader);
  check(leader != 0, "a leader is elected");

  std::string r1 = cluster.write(leader, encodeFields({"put", "hello"}));
  std::string r2 = cluster.write(leader, encodeFields({"cas", "hello", "world"}));
  std::string r3 = cluster.write(leader, encodeFields({"cas", "hello", "again"}));
  std::printf("put hello -> %s\ncas hello world -> %s\ncas hello again -> %s\n", reply(r1).c_str(),
              reply(r2).c_str(), reply(r3).c_str());
  check(reply(r1) == "ok" && reply(r2) == "ok" && reply(r3) == "compare-failed \"world\"", "the writes' results");
  for (uint64_t id = 1; id <= 3; ++id) {
    Member& m = cluster.member(id);
    std::printf("n%llu: register %s, %llu records in %llu syncs\n", (unsigned long long)id, value(m).c_str(),
                (unsigned long long)m.log->records(), (unsigned long long)m.log->syncs());
    check(value(m) == "ok \"world\"", "every node applied the writes");
  }

  // Compact n1's log: a snapshot of its machine replaces the entries it has applied.
  Member& n1 = cluster.member(1);
  struct : SnapshotSink {
    std::string data;
    void write(std::string_view chunk) override { data.append(chunk); }
  } sink;
  n1.machine.snapshot(sink);
  n1.log->compact(Snapshot{n1.node->snapshotMeta(), Bytes(sink.data)});
  n1.log->sync();
  std::printf("n1 compacted: snapshot at %llu\n", (unsigned long long)n1.log->snapshotMeta().index.value);

  std::printf("-- every node restarts from its file\n");
  cluster.start();
  check(cluster.member(1).log->firstIndex() > Index{1}, "n1 restarts from its snapshot");
  leader = cluster.waitLeader();
  std::printf("leader: n%llu\n", (unsigned long long)leader);
  check(leader != 0, "a leader is elected after the restart");
  std::string r4 = cluster.write(leader, encodeFields({"cas", "world", "again"}));
  std::printf("cas world again -> %s\n", reply(r4).c_str());
  check(reply(r4) == "ok", "the cluster keeps working");
  for (uint64_t id = 1; id <= 3; ++id) {
    std::printf("n%llu: register %s\n", (unsigned long long)id, value(cluster.member(id)).c_str());
    check(value(cluster.member(id)) == "ok \"again\"", "every node has the same state after the restart");
  }

  if (temporary) std::filesystem::remove_all(dir);
  std::printf(failures ? "custom-log example: %d checks FAILED\n" : "custom-log example: OK\n", failures);
  return failures ? 1 : 0;
}
