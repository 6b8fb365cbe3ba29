// keel: the Redis commands of the RESP port (see commands.h).
#include "commands.h"

#include "resp.h"

#include <keel/kv.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>
#include <utility>

namespace keel::resp {

namespace {

using Args = std::vector<std::string>;
using Reply = std::function<void(std::string)>;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool parseInt(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string err(std::string_view s) {
  std::string out;
  writeError(out, s);
  return out;
}
std::string ok() { return "+OK\r\n"; }
std::string integer(int64_t v) {
  std::string out;
  writeInteger(out, v);
  return out;
}
std::string bulk(std::string_view s) {
  std::string out;
  writeBulk(out, s);
  return out;
}
std::string nil() { return "$-1\r\n"; }

const char* const kNotInteger = "ERR value is not an integer or out of range";

// Decodes a backend result for `op`; on failure replies with the error and returns false.
bool decode(const BackendResult& r, kv::Op op, kv::Reply& out, const Reply& reply) {
  if (!r.ok) {
    reply(err("ERR keel: " + r.error));
    return false;
  }
  if (!kv::decodeReply(op, r.reply, out)) {
    reply(err("ERR keel: the state machine's reply could not be decoded"));
    return false;
  }
  if (out.status == kv::Status::NotInteger) {
    reply(err(kNotInteger));
    return false;
  }
  if (out.status == kv::Status::BadRequest || out.status == kv::Status::SessionExpired ||
      out.status == kv::Status::Duplicate) {
    reply(err(std::string("ERR keel: ") + kv::toString(out.status)));
    return false;
  }
  return true;
}

struct Command;
using Handler = void (*)(Dispatcher& d, Backend& b, Args& a, Reply reply);

}  // namespace

// The command table and the handlers (a friend of Dispatcher, for the SCAN cursors).
struct Commands {
  struct Entry {
    const char* name;
    int arity;  // Redis's convention: n: exactly n words (the name included); -n: at least n
    Kind kind;
    Handler handler;
    const char* flags;  // for COMMAND: space-separated
    int firstKey, lastKey, step;
  };
  static const std::vector<Entry>& table();
  static const Entry* find(const std::string& name) {
    for (const Entry& e : table())
      if (name == e.name) return &e;
    return nullptr;
  }

  static void ping(Dispatcher&, Backend&, Args& a, Reply reply) {
    reply(a.size() == 1 ? std::string("+PONG\r\n") : bulk(a[1]));
  }
  static void echo(Dispatcher&, Backend&, Args& a, Reply reply) { reply(bulk(a[1])); }
  static void quit(Dispatcher&, Backend&, Args&, Reply reply) { reply(ok()); }
  static void select(Dispatcher&, Backend&, Args& a, Reply reply) {
    int64_t db;
    if (!parseInt(a[1], db)) return reply(err(kNotInteger));
    reply(db == 0 ? ok() : err("ERR DB index is out of range (keel has one database)"));
  }

  static void get(Dispatcher&, Backend& b, Args& a, Reply reply) {
    b.read(kv::encodeGet(a[1]), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::Get, kr, reply)) return;
      reply(kr.status == kv::Status::NotFound ? nil() : bulk(kr.value));
    });
  }
  static void strlen(Dispatcher&, Backend& b, Args& a, Reply reply) {
    b.read(kv::encodeGet(a[1]), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::Get, kr, reply)) return;
      reply(integer(kr.status == kv::Status::NotFound ? 0 : int64_t(kr.value.size())));
    });
  }
  static void mget(Dispatcher&, Backend& b, Args& a, Reply reply) {
    std::vector<std::string_view> keys(a.begin() + 1, a.end());
    b.read(kv::encodeGetMany(keys), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::GetMany, kr, reply)) return;
      std::string out;
      writeArrayHeader(out, kr.values.size());
      for (auto& v : kr.values) {
        if (v) writeBulk(out, *v);
        else writeNull(out);
      }
      reply(std::move(out));
    });
  }
  static void exists(Dispatcher&, Backend& b, Args& a, Reply reply) {
    std::vector<std::string_view> keys(a.begin() + 1, a.end());
    b.read(kv::encodeGetMany(keys), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::GetMany, kr, reply)) return;
      int64_t n = 0;
      for (auto& v : kr.values) n += v ? 1 : 0;
      reply(integer(n));
    });
  }
  static void dbsize(Dispatcher&, Backend& b, Args&, Reply reply) {
    b.read(kv::encodeSize(), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::Size, kr, reply)) return;
      reply(integer(int64_t(kr.count)));
    });
  }

  // SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]
  static void set(Dispatcher&, Backend& b, Args& a, Reply reply) {
    bool nx = false, xx = false, get = false;
    for (size_t i = 3; i < a.size(); ++i) {
      std::string o = lower(a[i]);
      if (o == "nx" && !xx) nx = true;
      else if (o == "xx" && !nx) xx = true;
      else if (o == "get") get = true;
      else if (o == "keepttl") {}  // keys never expire: nothing to keep
      else if ((o == "ex" || o == "px" || o == "exat" || o == "pxat") && i + 1 < a.size()) {
        return reply(err("ERR keel does not expire keys: SET with EX, PX, EXAT or PXAT is not supported"));
      } else {
        return reply(err("ERR syntax error"));
      }
    }
    if (get && (nx || xx)) return reply(err("ERR keel does not support SET with GET together with NX or XX"));
    if (get) return getset(a, b, std::move(reply));
    if (nx || xx) {
      auto cond = nx ? kv::PutCondition::IfAbsent : kv::PutCondition::IfPresent;
      return b.write(kv::encodePutIf({}, cond, a[1], a[2]), [reply](BackendResult r) {
        kv::Reply kr;
        if (!decode(r, kv::Op::PutIf, kr, reply)) return;
        reply(kr.status == kv::Status::Ok ? ok() : nil());
      });
    }
    b.write(kv::encodePut({}, a[1], a[2]), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::Put, kr, reply)) return;
      reply(ok());
    });
  }
  static void setnx(Dispatcher&, Backend& b, Args& a, Reply reply) {
    b.write(kv::encodePutIf({}, kv::PutCondition::IfAbsent, a[1], a[2]), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::PutIf, kr, reply)) return;
      reply(integer(kr.status == kv::Status::Ok ? 1 : 0));
    });
  }
  static void getset(Args& a, Backend& b, Reply reply) {
    b.write(kv::encodeGetSet({}, a[1], a[2]), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::GetSet, kr, reply)) return;
      reply(kr.present ? bulk(kr.value) : nil());
    });
  }
  static void getsetCmd(Dispatcher&, Backend& b, Args& a, Reply reply) { getset(a, b, std::move(reply)); }
  static void mset(Dispatcher&, Backend& b, Args& a, Reply reply) {
    if (a.size() % 2 == 0) return reply(err("ERR wrong number of arguments for 'mset' command"));
    std::vector<std::pair<std::string_view, std::string_view>> pairs;
    for (size_t i = 1; i + 1 < a.size(); i += 2) pairs.emplace_back(a[i], a[i + 1]);
    b.write(kv::encodePutMany({}, pairs), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::PutMany, kr, reply)) return;
      reply(ok());
    });
  }
  static void del(Dispatcher&, Backend& b, Args& a, Reply reply) {
    std::vector<std::string_view> keys(a.begin() + 1, a.end());
    b.write(kv::encodeDeleteMany({}, keys), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::DeleteMany, kr, reply)) return;
      reply(integer(int64_t(kr.count)));
    });
  }
  static void incrBy(Backend& b, const std::string& key, int64_t delta, Reply reply) {
    b.write(kv::encodeIncr({}, key, delta), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::Incr, kr, reply)) return;
      int64_t v = 0;
      parseInt(kr.value, v);
      reply(integer(v));
    });
  }
  static void incr(Dispatcher&, Backend& b, Args& a, Reply reply) { incrBy(b, a[1], 1, std::move(reply)); }
  static void decr(Dispatcher&, Backend& b, Args& a, Reply reply) { incrBy(b, a[1], -1, std::move(reply)); }
  static void incrby(Dispatcher&, Backend& b, Args& a, Reply reply) {
    int64_t d;
    if (!parseInt(a[2], d)) return reply(err(kNotInteger));
    incrBy(b, a[1], d, std::move(reply));
  }
  static void decrby(Dispatcher&, Backend& b, Args& a, Reply reply) {
    int64_t d;
    if (!parseInt(a[2], d)) return reply(err(kNotInteger));
    if (d == INT64_MIN) return reply(err("ERR decrement would overflow"));
    incrBy(b, a[1], -d, std::move(reply));
  }
  static void append(Dispatcher&, Backend& b, Args& a, Reply reply) {
    b.write(kv::encodeAppend({}, a[1], a[2]), [reply](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::Append, kr, reply)) return;
      reply(integer(int64_t(kr.count)));
    });
  }

  // KEYS pattern: bounded to kKeysLimit keys in the store.
  static void keys(Dispatcher&, Backend& b, Args& a, Reply reply) {
    std::string pattern = a[1];
    b.read(kv::encodeScan("", "", uint32_t(Dispatcher::kKeysLimit)), [reply, pattern](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::Scan, kr, reply)) return;
      if (kr.more) {
        return reply(err("ERR keel answers KEYS only while the store holds at most " +
                         std::to_string(Dispatcher::kKeysLimit) + " keys; use SCAN"));
      }
      std::vector<const std::string*> match;
      for (auto& [k, v] : kr.pairs)
        if (globMatch(pattern, k)) match.push_back(&k);
      std::string out;
      writeArrayHeader(out, match.size());
      for (auto* k : match) writeBulk(out, *k);
      reply(std::move(out));
    });
  }

  // SCAN cursor [MATCH pattern] [COUNT n] [TYPE string]. Cursors are numbers that this
  // connection handed out (0 starts); the last kMaxCursors stay valid.
  static void scan(Dispatcher& d, Backend& b, Args& a, Reply reply) {
    int64_t cursor;
    if (!parseInt(a[1], cursor) || cursor < 0) return reply(err("ERR invalid cursor"));
    std::string start;
    if (cursor != 0) {
      auto it = d.cursors_.find(uint64_t(cursor));
      if (it == d.cursors_.end()) return reply(err("ERR invalid cursor (keel keeps a connection's recent cursors only)"));
      start = it->second;
    }
    std::string pattern = "*";
    int64_t count = 10;
    for (size_t i = 2; i < a.size(); ++i) {
      std::string o = lower(a[i]);
      if (i + 1 >= a.size()) return reply(err("ERR syntax error"));
      if (o == "match") pattern = a[++i];
      else if (o == "count") {
        if (!parseInt(a[++i], count)) return reply(err(kNotInteger));
        if (count < 1) return reply(err("ERR syntax error"));
      } else if (o == "type") {
        if (lower(a[++i]) != "string") pattern = "";  // every key is a string: none matches
      } else {
        return reply(err("ERR syntax error"));
      }
    }
    count = std::min<int64_t>(count, int64_t(Dispatcher::kScanMaxCount));
    // Fetch one more than asked for, to know where to resume.
    b.read(kv::encodeScan(start, "", uint32_t(count + 1)), [&d, reply, pattern, count](BackendResult r) {
      kv::Reply kr;
      if (!decode(r, kv::Op::Scan, kr, reply)) return;
      uint64_t next = 0;
      if (kr.pairs.size() > size_t(count)) {
        next = d.nextCursor_++;
        d.cursors_[next] = kr.pairs[size_t(count)].first;
        while (d.cursors_.size() > Dispatcher::kMaxCursors) d.cursors_.erase(d.cursors_.begin());
        kr.pairs.resize(size_t(count));
      }
      std::vector<const std::string*> match;
      for (auto& [k, v] : kr.pairs)
        if (!pattern.empty() && globMatch(pattern, k)) match.push_back(&k);
      std::string out;
      writeArrayHeader(out, 2);
      writeBulk(out, std::to_string(next));
      writeArrayHeader(out, match.size());
      for (auto* k : match) writeBulk(out, *k);
      reply(std::move(out));
    });
  }

  static void info(Dispatcher&, Backend& b, Args& a, Reply reply) {
    NodeInfo n = b.info();
    std::string s = "# Server\r\nredis_version:7.0.0\r\nkeel_version:0.1\r\n"
                    "\r\n# Replication\r\nrole:" + n.role + "\r\n" +
                    "node_id:" + std::to_string(n.id) + "\r\n" + "address:" + n.address + "\r\n" +
                    "term:" + std::to_string(n.term) + "\r\n" + "commit:" + std::to_string(n.commit) + "\r\n" +
                    "applied:" + std::to_string(n.applied) + "\r\n" +
                    "last_index:" + std::to_string(n.lastIndex) + "\r\n" +
                    "leader:" + std::to_string(n.leader) + "\r\n" + "leader_address:" + n.leaderAddress + "\r\n";
    reply(bulk(s));
  }

  static void writeCommandInfo(std::string& out, const Entry& e) {
    writeArrayHeader(out, 6);
    writeBulk(out, e.name);
    writeInteger(out, e.arity);
    std::vector<std::string_view> flags;
    std::string_view f = e.flags;
    while (!f.empty()) {
      size_t sp = f.find(' ');
      flags.push_back(f.substr(0, sp));
      f = sp == std::string_view::npos ? "" : f.substr(sp + 1);
    }
    writeArrayHeader(out, flags.size());
    for (auto fl : flags) {
      out.push_back('+');
      out.append(fl);
      out.append("\r\n");
    }
    writeInteger(out, e.firstKey);
    writeInteger(out, e.lastKey);
    writeInteger(out, e.step);
  }

  // COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS [name...], COMMAND LIST.
  static void command(Dispatcher&, Backend&, Args& a, Reply reply) {
    std::string sub = a.size() > 1 ? lower(a[1]) : "";
    std::string out;
    if (sub.empty()) {
      writeArrayHeader(out, table().size());
      for (const Entry& e : table()) writeCommandInfo(out, e);
    } else if (sub == "count" && a.size() == 2) {
      writeInteger(out, int64_t(table().size()));
    } else if (sub == "list" && a.size() == 2) {
      writeArrayHeader(out, table().size());
      for (const Entry& e : table()) writeBulk(out, e.name);
    } else if (sub == "info") {
      writeArrayHeader(out, a.size() - 2);
      for (size_t i = 2; i < a.size(); ++i) {
        const Entry* e = find(lower(a[i]));
        if (e) writeCommandInfo(out, *e);
        else writeNullArray(out);
      }
    } else if (sub == "docs") {
      writeArrayHeader(out, 0);  // no documentation: redis-cli then shows no hints
    } else {
      out = err("ERR unknown subcommand '" + a[1] + "'. Try COMMAND HELP.");
    }
    reply(std::move(out));
  }

  // CONFIG GET pattern: what redis-benchmark asks for at start.
  static void config(Dispatcher&, Backend&, Args& a, Reply reply) {
    if (lower(a[1]) != "get" || a.size() != 3) {
      return reply(err("ERR keel supports CONFIG GET only"));
    }
    static const std::pair<const char*, const char*> kParams[] = {{"save", ""}, {"appendonly", "no"}, {"databases", "1"}};
    std::vector<std::pair<const char*, const char*>> match;
    for (auto& p : kParams)
      if (globMatch(lower(a[2]), p.first)) match.push_back(p);
    std::string out;
    writeArrayHeader(out, match.size() * 2);
    for (auto& [k, v] : match) {
      writeBulk(out, k);
      writeBulk(out, v);
    }
    reply(std::move(out));
  }

  // CLIENT SETNAME / SETINFO: accepted and ignored (client libraries send them on connect).
  static void client(Dispatcher&, Backend&, Args& a, Reply reply) {
    std::string sub = lower(a[1]);
    if (sub == "setname" || sub == "setinfo") return reply(ok());
    reply(err("ERR keel supports CLIENT SETNAME and CLIENT SETINFO only"));
  }
};

const std::vector<Commands::Entry>& Commands::table() {
  using C = Commands;
  static const std::vector<Entry> t = {
      {"ping", -1, Kind::Local, C::ping, "fast", 0, 0, 0},
      {"echo", 2, Kind::Local, C::echo, "fast", 0, 0, 0},
      {"quit", -1, Kind::Quit, C::quit, "fast", 0, 0, 0},
      {"select", 2, Kind::Local, C::select, "loading fast", 0, 0, 0},
      {"get", 2, Kind::Read, C::get, "readonly fast", 1, 1, 1},
      {"strlen", 2, Kind::Read, C::strlen, "readonly fast", 1, 1, 1},
      {"mget", -2, Kind::Read, C::mget, "readonly fast", 1, -1, 1},
      {"exists", -2, Kind::Read, C::exists, "readonly fast", 1, -1, 1},
      {"dbsize", 1, Kind::Read, C::dbsize, "readonly fast", 0, 0, 0},
      {"keys", 2, Kind::Read, C::keys, "readonly", 0, 0, 0},
      {"scan", -2, Kind::Read, C::scan, "readonly", 0, 0, 0},
      {"set", -3, Kind::Write, C::set, "write denyoom", 1, 1, 1},
      {"setnx", 3, Kind::Write, C::setnx, "write denyoom fast", 1, 1, 1},
      {"getset", 3, Kind::Write, C::getsetCmd, "write denyoom fast", 1, 1, 1},
      {"mset", -3, Kind::Write, C::mset, "write denyoom", 1, -1, 2},
      {"del", -2, Kind::Write, C::del, "write", 1, -1, 1},
      {"incr", 2, Kind::Write, C::incr, "write denyoom fast", 1, 1, 1},
      {"decr", 2, Kind::Write, C::decr, "write denyoom fast", 1, 1, 1},
      {"incrby", 3, Kind::Write, C::incrby, "write denyoom fast", 1, 1, 1},
      {"decrby", 3, Kind::Write, C::decrby, "write denyoom fast", 1, 1, 1},
      {"append", 3, Kind::Write, C::append, "write denyoom fast", 1, 1, 1},
      {"info", -1, Kind::Local, C::info, "loading stale", 0, 0, 0},
      {"command", -1, Kind::Local, C::command, "loading stale", 0, 0, 0},
      {"config", -2, Kind::Local, C::config, "admin loading stale", 0, 0, 0},
      {"client", -2, Kind::Local, C::client, "loading stale", 0, 0, 0},
  };
  return t;
}

namespace {

// The table entry for `args`, or null when the name is unknown or the arity wrong.
const Commands::Entry* lookup(const Args& args, std::string& error) {
  std::string name = lower(args[0]);
  const Commands::Entry* e = Commands::find(name);
  if (!e) {
    error = "ERR unknown command '" + args[0].substr(0, 128) + "', with args beginning with: ";
    for (size_t i = 1; i < args.size() && i <= 4; ++i) error += "'" + args[i].substr(0, 64) + "' ";
    return nullptr;
  }
  size_t n = args.size();
  if ((e->arity > 0 && n != size_t(e->arity)) || (e->arity < 0 && n < size_t(-e->arity))) {
    error = std::string("ERR wrong number of arguments for '") + e->name + "' command";
    return nullptr;
  }
  return e;
}

}  // namespace

Kind kindOf(const Args& args) {
  std::string error;
  const Commands::Entry* e = lookup(args, error);
  return e ? e->kind : Kind::Local;
}

void Dispatcher::dispatch(Args args, std::function<void(std::string)> reply) {
  std::string error;
  const Commands::Entry* e = args.empty() ? nullptr : lookup(args, error);
  if (!e) {
    reply(err(args.empty() ? "ERR empty command" : error));
    return;
  }
  e->handler(*this, backend_, args, std::move(reply));
}

}  // namespace keel::resp
