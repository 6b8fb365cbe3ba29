// keel_resp without a network: the RESP2 parser and writer, glob matching, the Redis commands
// over a fake backend that runs a real KvStateMachine, and the KV operations the commands need.
#include <commands.h>
#include <resp.h>

#include <keel/kv.h>

#include <gtest/gtest.h>

#include <deque>

namespace keel::resp {
namespace {

using Args = std::vector<std::string>;

std::vector<Args> parseAll(Parser& p, Parser::Result* last = nullptr) {
  std::vector<Args> out;
  Args a;
  Parser::Result r;
  while ((r = p.next(a)) == Parser::Result::Command) out.push_back(a);
  if (last) *last = r;
  return out;
}

TEST(Parser, MultibulkAndInlineCommandsInAnyChunks) {
  std::string wire = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*3\r\n$3\r\nSET\r\n$0\r\n\r\n$5\r\na\r\nb\n\r\n  echo   hi \r\n\r\n";
  std::vector<Args> want = {{"GET", "k"}, {"PING"}, {"SET", "", "a\r\nb\n"}, {"echo", "hi"}};
  // Whole, then one byte at a time, then in chunks of 3.
  for (size_t chunk : {wire.size(), size_t(1), size_t(3)}) {
    Parser p;
    std::vector<Args> got;
    for (size_t i = 0; i < wire.size(); i += chunk) {
      p.feed(std::string_view(wire).substr(i, chunk));
      auto more = parseAll(p);
      got.insert(got.end(), more.begin(), more.end());
    }
    EXPECT_EQ(got, want) << "chunk " << chunk;
    EXPECT_EQ(p.buffered(), 0u);
  }
}

TEST(Parser, EmptyMultibulksAreSkipped) {
  Parser p;
  p.feed("*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n");
  Parser::Result r;
  EXPECT_EQ(parseAll(p, &r), (std::vector<Args>{{"PING"}}));
  EXPECT_EQ(r, Parser::Result::NeedMore);
}

TEST(Parser, MalformedStreamsAreErrorsForGood) {
  struct Case { std::string bytes, error; };
  std::vector<Case> cases = {
      {"*2\r\n:3\r\n", "expected '$', got ':'"},
      {"*x\r\n", "invalid multibulk length"},
      {"*1\r\n$-2\r\n", "invalid bulk length"},
      {"*1\r\n$99999999999\r\n", "invalid bulk length"},
      {"*1\r\n$3\r\nabcXY", "bulk string not followed by CRLF"},
      {"*9999999\r\n", "invalid multibulk length"},
  };
  for (auto& c : cases) {
    Parser p;
    p.feed(c.bytes);
    Args a;
    EXPECT_EQ(p.next(a), Parser::Result::Error) << c.bytes;
    EXPECT_NE(p.error().find(c.error), std::string::npos) << p.error();
    p.feed("PING\r\n");
    EXPECT_EQ(p.next(a), Parser::Result::Error);
  }
}

TEST(Parser, LimitsBoundWhatOneConnectionHolds) {
  Parser::Limits l;
  l.maxInlineBytes = 16;
  l.maxBulkBytes = 8;
  l.maxArgs = 2;
  {
    Parser p(l);
    p.feed(std::string(17, 'a'));  // no newline yet, but already too long
    Args a;
    EXPECT_EQ(p.next(a), Parser::Result::Error);
    EXPECT_NE(p.error().find("too big inline request"), std::string::npos);
  }
  {
    Parser p(l);
    p.feed("*1\r\n$9\r\n");
    Args a;
    EXPECT_EQ(p.next(a), Parser::Result::Error);
  }
  {
    Parser p(l);
    p.feed("*3\r\n");
    Args a;
    EXPECT_EQ(p.next(a), Parser::Result::Error);
  }
  {
    Parser p(l);
    p.feed("*1\r\n$8\r\n12345678\r\n");
    Args a;
    EXPECT_EQ(p.next(a), Parser::Result::Command);
    EXPECT_EQ(a, Args{"12345678"});
  }
}

TEST(Parser, ALargeBulkInManyChunks) {
  Parser p;
  std::string big(300000, 'x');
  std::string wire = "*2\r\n$3\r\nSET\r\n$" + std::to_string(big.size()) + "\r\n" + big + "\r\n";
  Args a;
  for (size_t i = 0; i < wire.size(); i += 4096) {
    p.feed(std::string_view(wire).substr(i, 4096));
    if (i + 4096 < wire.size()) {
      EXPECT_EQ(p.next(a), Parser::Result::NeedMore);
    }
  }
  ASSERT_EQ(p.next(a), Parser::Result::Command);
  EXPECT_EQ(a[1], big);
}

TEST(Writer, RepliesInRedisForm) {
  std::string o;
  writeSimple(o, "OK");
  writeError(o, "ERR bad\r\nthing");
  writeInteger(o, -42);
  writeBulk(o, "a\r\nb");
  writeNull(o);
  writeArrayHeader(o, 2);
  writeNullArray(o);
  EXPECT_EQ(o, "+OK\r\n-ERR bad  thing\r\n:-42\r\n$4\r\na\r\nb\r\n$-1\r\n*2\r\n*-1\r\n");
}

TEST(Glob, RedisPatterns) {
  EXPECT_TRUE(globMatch("*", ""));
  EXPECT_TRUE(globMatch("*", "abc"));
  EXPECT_TRUE(globMatch("h?llo", "hello"));
  EXPECT_FALSE(globMatch("h?llo", "hllo"));
  EXPECT_TRUE(globMatch("h*llo", "heeeello"));
  EXPECT_TRUE(globMatch("h[ae]llo", "hallo"));
  EXPECT_FALSE(globMatch("h[ae]llo", "hillo"));
  EXPECT_TRUE(globMatch("h[^e]llo", "hallo"));
  EXPECT_FALSE(globMatch("h[^e]llo", "hello"));
  EXPECT_TRUE(globMatch("h[a-b]llo", "hbllo"));
  EXPECT_TRUE(globMatch("h[b-a]llo", "hallo"));
  EXPECT_TRUE(globMatch("a\\*b", "a*b"));
  EXPECT_FALSE(globMatch("a\\*b", "axb"));
  EXPECT_TRUE(globMatch("h[\\]]llo", "h]llo"));
  EXPECT_TRUE(globMatch("user:*:name", "user:12:name"));
  EXPECT_FALSE(globMatch("user:*:name", "user:12:names"));
  EXPECT_TRUE(globMatch("a**", "abc"));
  EXPECT_FALSE(globMatch("abc", "ab"));
  EXPECT_FALSE(globMatch("[abc", "d"));
}

// A backend over a real KvStateMachine. Completions run at once, or (deferred) when run().
class FakeBackend final : public Backend {
 public:
  KvStateMachine sm;
  uint64_t index = 0;
  bool deferred = false;
  std::string failWith;  // when set, every write and read fails with this
  std::deque<std::function<void()>> queue;
  std::vector<char> order;  // 'w' and 'r', in the order they were applied

  void write(std::string command, Completion done) override {
    submit([this, command, done]() {
      order.push_back('w');
      if (!failWith.empty()) return done({false, "", failWith});
      done({true, sm.apply(Index{++index}, command), ""});
    });
  }
  void read(std::string query, Completion done) override {
    submit([this, query, done]() {
      order.push_back('r');
      if (!failWith.empty()) return done({false, "", failWith});
      done({true, sm.query(query), ""});
    });
  }
  NodeInfo info() override {
    NodeInfo n;
    n.id = 2;
    n.role = "follower";
    n.term = 7;
    n.commit = 41;
    n.leader = 1;
    n.leaderAddress = "127.0.0.1:7101";
    return n;
  }
  void run() {
    while (!queue.empty()) {
      auto f = std::move(queue.front());
      queue.pop_front();
      f();
    }
  }

 private:
  void submit(std::function<void()> f) {
    if (deferred) queue.push_back(std::move(f));
    else f();
  }
};

class Commands : public ::testing::Test {
 protected:
  FakeBackend backend;
  Dispatcher d{backend};

  std::string run(Args args) {
    std::string out;
    bool called = false;
    d.dispatch(std::move(args), [&](std::string r) {
      EXPECT_FALSE(called) << "replied twice";
      called = true;
      out = std::move(r);
    });
    backend.run();
    EXPECT_TRUE(called);
    return out;
  }
};

TEST_F(Commands, PingEchoSelectQuit) {
  EXPECT_EQ(run({"PING"}), "+PONG\r\n");
  EXPECT_EQ(run({"ping", "hi"}), "$2\r\nhi\r\n");
  EXPECT_EQ(run({"ECHO", "x y"}), "$3\r\nx y\r\n");
  EXPECT_EQ(run({"SELECT", "0"}), "+OK\r\n");
  EXPECT_EQ(run({"SELECT", "1"}).substr(0, 25), "-ERR DB index is out of r");
  EXPECT_EQ(run({"SELECT", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(run({"QUIT"}), "+OK\r\n");
  EXPECT_EQ(kindOf({"QUIT"}), Kind::Quit);
  EXPECT_EQ(kindOf({"get", "k"}), Kind::Read);
  EXPECT_EQ(kindOf({"SET", "k", "v"}), Kind::Write);
  EXPECT_EQ(kindOf({"SET", "k"}), Kind::Local);  // an arity error is answered at once
  EXPECT_EQ(kindOf({"nope"}), Kind::Local);
}

TEST_F(Commands, UnknownCommandsAndWrongArity) {
  EXPECT_EQ(run({"FOO", "a", "b"}), "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
  EXPECT_EQ(run({"GET"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(run({"get", "a", "b"}), "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT_EQ(run({"MSET", "a", "1", "b"}), "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT_EQ(run({}), "-ERR empty command\r\n");
}

TEST_F(Commands, StringsOfAllKinds) {
  EXPECT_EQ(run({"GET", "k"}), "$-1\r\n");
  EXPECT_EQ(run({"SET", "k", "v"}), "+OK\r\n");
  EXPECT_EQ(run({"GET", "k"}), "$1\r\nv\r\n");
  EXPECT_EQ(run({"STRLEN", "k"}), ":1\r\n");
  EXPECT_EQ(run({"STRLEN", "none"}), ":0\r\n");
  EXPECT_EQ(run({"APPEND", "k", "xyz"}), ":4\r\n");
  EXPECT_EQ(run({"APPEND", "new", "ab"}), ":2\r\n");
  EXPECT_EQ(run({"GETSET", "k", "w"}), "$4\r\nvxyz\r\n");
  EXPECT_EQ(run({"GETSET", "fresh", "w"}), "$-1\r\n");
  EXPECT_EQ(run({"SET", "k", "z", "GET"}), "$1\r\nw\r\n");
  EXPECT_EQ(run({"MSET", "a", "1", "b", "2"}), "+OK\r\n");
  EXPECT_EQ(run({"MGET", "a", "nope", "b"}), "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
  EXPECT_EQ(run({"EXISTS", "a", "a", "nope"}), ":2\r\n");
  EXPECT_EQ(run({"DBSIZE"}), ":5\r\n");
  EXPECT_EQ(run({"DEL", "a", "b", "nope"}), ":2\r\n");
  EXPECT_EQ(run({"DEL", "a"}), ":0\r\n");
  EXPECT_EQ(run({"DBSIZE"}), ":3\r\n");
}

TEST_F(Commands, SetConditionsAndExpiry) {
  EXPECT_EQ(run({"SET", "k", "1", "XX"}), "$-1\r\n");
  EXPECT_EQ(run({"SET", "k", "1", "NX"}), "+OK\r\n");
  EXPECT_EQ(run({"SET", "k", "2", "nx"}), "$-1\r\n");
  EXPECT_EQ(run({"SET", "k", "3", "XX", "KEEPTTL"}), "+OK\r\n");
  EXPECT_EQ(run({"GET", "k"}), "$1\r\n3\r\n");
  EXPECT_EQ(run({"SETNX", "k", "4"}), ":0\r\n");
  EXPECT_EQ(run({"SETNX", "j", "4"}), ":1\r\n");
  EXPECT_EQ(run({"SET", "k", "1", "NX", "XX"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run({"SET", "k", "1", "BOGUS"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run({"SET", "k", "1", "EX"}), "-ERR syntax error\r\n");
  EXPECT_NE(run({"SET", "k", "1", "EX", "10"}).find("does not expire keys"), std::string::npos);
  EXPECT_NE(run({"SET", "k", "1", "px", "10"}).find("does not expire keys"), std::string::npos);
  EXPECT_NE(run({"SET", "k", "1", "NX", "GET"}).find("-ERR"), std::string::npos);
  EXPECT_EQ(run({"GET", "k"}), "$1\r\n3\r\n");
}

TEST_F(Commands, Counters) {
  EXPECT_EQ(run({"INCR", "n"}), ":1\r\n");
  EXPECT_EQ(run({"INCRBY", "n", "41"}), ":42\r\n");
  EXPECT_EQ(run({"DECR", "n"}), ":41\r\n");
  EXPECT_EQ(run({"DECRBY", "n", "50"}), ":-9\r\n");
  EXPECT_EQ(run({"GET", "n"}), "$2\r\n-9\r\n");
  EXPECT_EQ(run({"INCRBY", "n", "x"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(run({"DECRBY", "n", "-9223372036854775808"}), "-ERR decrement would overflow\r\n");
  EXPECT_EQ(run({"SET", "s", "abc"}), "+OK\r\n");
  EXPECT_EQ(run({"INCR", "s"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(run({"SET", "big", "9223372036854775807"}), "+OK\r\n");
  EXPECT_EQ(run({"INCR", "big"}), "-ERR value is not an integer or out of range\r\n");
  EXPECT_EQ(run({"SET", "lead", "007"}), "+OK\r\n");
  EXPECT_EQ(run({"INCR", "lead"}), "-ERR value is not an integer or out of range\r\n");
}

TEST_F(Commands, KeysAndScan) {
  for (int i = 0; i < 25; ++i) run({"SET", "user:" + std::to_string(100 + i), "x"});
  run({"SET", "other", "y"});
  std::string keys = run({"KEYS", "user:10?"});
  EXPECT_EQ(keys.substr(0, 5), "*10\r\n");
  EXPECT_EQ(run({"KEYS", "oth*"}), "*1\r\n$5\r\nother\r\n");
  // SCAN walks every key once, COUNT at a time, with MATCH applied to each page.
  std::string cursor = "0";
  size_t seen = 0, pages = 0;
  do {
    std::string r = run({"SCAN", cursor, "MATCH", "user:*", "COUNT", "7"});
    ASSERT_EQ(r.substr(0, 4), "*2\r\n");
    size_t nl = r.find("\r\n", 5);
    size_t nl2 = r.find("\r\n", nl + 2);
    cursor = r.substr(nl + 2, nl2 - nl - 2);
    size_t star = r.find('*', nl2);
    seen += std::stoul(r.substr(star + 1));
    ++pages;
  } while (cursor != "0" && pages < 100);
  EXPECT_EQ(seen, 25u);
  EXPECT_EQ(pages, 4u);
  EXPECT_EQ(run({"SCAN", "12345"}).substr(0, 19), "-ERR invalid cursor");
  EXPECT_EQ(run({"SCAN", "x"}), "-ERR invalid cursor\r\n");
  EXPECT_EQ(run({"SCAN", "0", "COUNT"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run({"SCAN", "0", "COUNT", "0"}), "-ERR syntax error\r\n");
  EXPECT_EQ(run({"SCAN", "0", "BOGUS", "1"}), "-ERR syntax error\r\n");
  std::string typed = run({"SCAN", "0", "TYPE", "hash"});  // every key is a string
  EXPECT_EQ(typed.substr(typed.size() - 4), "*0\r\n");
}

TEST_F(Commands, KeysIsBounded) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (size_t i = 0; i <= Dispatcher::kKeysLimit; ++i) pairs.emplace_back("k" + std::to_string(i), "v");
  std::vector<std::pair<std::string_view, std::string_view>> views(pairs.begin(), pairs.end());
  backend.sm.apply(Index{++backend.index}, kv::encodePutMany({}, views));
  EXPECT_NE(run({"KEYS", "*"}).find("use SCAN"), std::string::npos);
}

TEST_F(Commands, InfoCommandConfigClient) {
  std::string info = run({"INFO"});
  EXPECT_NE(info.find("role:follower\r\n"), std::string::npos);
  EXPECT_NE(info.find("term:7\r\n"), std::string::npos);
  EXPECT_NE(info.find("commit:41\r\n"), std::string::npos);
  EXPECT_NE(info.find("leader:1\r\n"), std::string::npos);
  std::string count = run({"COMMAND", "COUNT"});
  EXPECT_EQ(count[0], ':');
  std::string all = run({"COMMAND"});
  EXPECT_EQ(all.substr(0, count.size() - 2), "*" + count.substr(1, count.size() - 3));
  EXPECT_NE(all.find("$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"), std::string::npos);
  EXPECT_EQ(run({"COMMAND", "INFO", "get", "nope"}).substr(0, 4), "*2\r\n");
  EXPECT_EQ(run({"COMMAND", "DOCS"}), "*0\r\n");
  EXPECT_NE(run({"COMMAND", "LIST"}).find("$4\r\nmset\r\n"), std::string::npos);
  EXPECT_EQ(run({"COMMAND", "BOGUS"}).substr(0, 4), "-ERR");
  EXPECT_EQ(run({"CONFIG", "GET", "save"}), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(run({"CONFIG", "GET", "appendonly"}), "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT_EQ(run({"CONFIG", "SET", "a", "b"}).substr(0, 4), "-ERR");
  EXPECT_EQ(run({"CLIENT", "SETNAME", "x"}), "+OK\r\n");
  EXPECT_EQ(run({"CLIENT", "LIST"}).substr(0, 4), "-ERR");
}

TEST_F(Commands, BackendFailuresAreErrors) {
  backend.failWith = "timeout";
  EXPECT_EQ(run({"SET", "k", "v"}), "-ERR keel: timeout\r\n");
  EXPECT_EQ(run({"GET", "k"}), "-ERR keel: timeout\r\n");
  backend.failWith = "";
  // A reply that does not decode.
  class Garbage final : public Backend {
   public:
    void write(std::string, Completion done) override { done({true, "\x07", ""}); }
    void read(std::string, Completion done) override { done({true, std::string(1, '\0'), ""}); }
    NodeInfo info() override { return {}; }
  } garbage;
  Dispatcher g(garbage);
  std::string out;
  g.dispatch({"SET", "k", "v"}, [&](std::string r) { out = r; });
  EXPECT_NE(out.find("could not be decoded"), std::string::npos);
  g.dispatch({"GET", "k"}, [&](std::string r) { out = r; });
  EXPECT_NE(out.find("could not be decoded"), std::string::npos);
}

TEST_F(Commands, RepliesMayComeLater) {
  backend.deferred = true;
  std::vector<std::string> replies;
  d.dispatch({"SET", "k", "1"}, [&](std::string r) { replies.push_back(r); });
  d.dispatch({"INCR", "k"}, [&](std::string r) { replies.push_back(r); });
  EXPECT_TRUE(replies.empty());
  backend.run();
  EXPECT_EQ(replies, (std::vector<std::string>{"+OK\r\n", ":2\r\n"}));
}

}  // namespace
}  // namespace keel::resp

// ---- The KV operations added for the RESP port (include/keel/kv.h) ----
namespace keel::kv {
namespace {

TEST(KvForResp, AtomicOperationsApplyAndDecode) {
  KvStateMachine sm;
  uint64_t i = 0;
  Reply r;
  auto apply = [&](const std::string& c, Op op) {
    EXPECT_TRUE(decodeReply(op, sm.apply(Index{++i}, c), r));
    return r.status;
  };
  EXPECT_EQ(apply(encodeIncr({}, "n", 5), Op::Incr), Status::Ok);
  EXPECT_EQ(r.value, "5");
  EXPECT_EQ(apply(encodeIncr({}, "n", -7), Op::Incr), Status::Ok);
  EXPECT_EQ(r.value, "-2");
  EXPECT_EQ(apply(encodeAppend({}, "n", "x"), Op::Append), Status::Ok);
  EXPECT_EQ(r.count, 3u);
  EXPECT_EQ(apply(encodeIncr({}, "n", 1), Op::Incr), Status::NotInteger);
  EXPECT_EQ(apply(encodeGetSet({}, "n", "9"), Op::GetSet), Status::Ok);
  EXPECT_TRUE(r.present);
  EXPECT_EQ(r.value, "-2x");
  EXPECT_EQ(apply(encodePutMany({}, {{"a", "1"}, {"b", "2"}, {"a", "3"}}), Op::PutMany), Status::Ok);
  EXPECT_EQ(sm.data().at("a"), "3");
  EXPECT_EQ(apply(encodePutIf({}, PutCondition::IfAbsent, "a", "x"), Op::PutIf), Status::CompareFailed);
  EXPECT_TRUE(r.present);
  EXPECT_EQ(r.value, "3");
  EXPECT_EQ(apply(encodePutIf({}, PutCondition::IfPresent, "zz", "x"), Op::PutIf), Status::CompareFailed);
  EXPECT_FALSE(r.present);
  EXPECT_EQ(apply(encodePutIf({}, PutCondition::IfPresent, "a", "4"), Op::PutIf), Status::Ok);
  EXPECT_EQ(apply(encodeDeleteMany({}, {"a", "zz", "b"}), Op::DeleteMany), Status::Ok);
  EXPECT_EQ(r.count, 2u);
  EXPECT_TRUE(decodeReply(Op::GetMany, sm.query(encodeGetMany({"n", "a"})), r));
  ASSERT_EQ(r.values.size(), 2u);
  EXPECT_EQ(r.values[0], std::optional<std::string>("9"));
  EXPECT_FALSE(r.values[1]);
  EXPECT_TRUE(decodeReply(Op::Size, sm.query(encodeSize()), r));
  EXPECT_EQ(r.count, 1u);
  EXPECT_STREQ(toString(Status::NotInteger), "not an integer");
}

TEST(KvForResp, MalformedCommandsChangeNothing) {
  KvStateMachine sm;
  std::string good = encodePutMany({}, {{"a", "1"}, {"b", "2"}});
  for (size_t cut = 10; cut < good.size(); ++cut) {
    EXPECT_EQ(sm.apply(Index{1}, good.substr(0, cut)), replyStatus(Status::BadRequest)) << cut;
  }
  for (const std::string& c : {encodeIncr({}, "a", 1), encodeAppend({}, "a", "x"), encodeGetSet({}, "a", "x"),
                               encodeDeleteMany({}, {"a"}), encodePutIf({}, PutCondition::IfAbsent, "a", "x")}) {
    EXPECT_EQ(sm.apply(Index{1}, c.substr(0, c.size() - 1)), replyStatus(Status::BadRequest));
  }
  std::string badCond = encodePutIf({}, PutCondition::IfAbsent, "a", "x");
  badCond[12] = 3;  // op, clock (8), client, seq, ack: the condition
  EXPECT_EQ(sm.apply(Index{1}, badCond), replyStatus(Status::BadRequest));
  EXPECT_EQ(sm.size(), 0u);
  EXPECT_EQ(sm.query(encodeGetMany({"a"}).substr(0, 2)), replyStatus(Status::BadRequest));
  EXPECT_EQ(sm.query(encodeSize() + "x"), replyStatus(Status::BadRequest));
  Reply r;
  EXPECT_FALSE(decodeReply(Op::GetMany, std::string("\0\x02\x05", 3), r));
  EXPECT_FALSE(decodeReply(Op::GetSet, std::string("\0\x02", 2), r));
  // Sessions cache the new operations' replies too: a retried INCR applies once.
  std::string reg = sm.apply(Index{2}, encodeRegisterSession());
  ASSERT_TRUE(decodeReply(Op::RegisterSession, reg, r));
  SessionRef s{r.client, 1, 1};
  std::string inc = encodeIncr(s, "c", 1);
  EXPECT_EQ(sm.apply(Index{3}, inc), sm.apply(Index{4}, inc));
  EXPECT_EQ(sm.data().at("c"), "1");
}

}  // namespace
}  // namespace keel::kv
