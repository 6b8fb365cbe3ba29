// The JSON Lines reader of operation histories. A small strict JSON parser for the only shapes
// the format uses: one object per line whose values are strings, integers, null, or arrays of
// strings and nulls.
#include <charconv>
#include <istream>
#include <map>
#include <sstream>
#include <unordered_map>

#include "keel/check.h"

namespace keel::checker {

ParseError::ParseError(size_t line, const std::string& message)
    : std::runtime_error("line " + std::to_string(line) + ": " + message),
      line_(line),
      message_(message) {}

namespace {

// A JSON value of the shapes the format allows.
struct Value {
  enum Kind { Null, String, Integer, Array } kind = Null;
  std::string string;
  int64_t integer = 0;
  std::vector<std::optional<std::string>> array;  // nullopt: null
};

const char* kindName(Value::Kind k) {
  switch (k) {
    case Value::Null: return "null";
    case Value::String: return "a string";
    case Value::Integer: return "a number";
    case Value::Array: return "an array";
  }
  return "?";
}

class LineParser {
 public:
  LineParser(std::string_view text, size_t line) : s_(text), line_(line) {}

  std::map<std::string, Value> object() {
    std::map<std::string, Value> fields;
    space();
    expect('{', "expected '{' at the start of the line");
    space();
    if (peek() == '}') {
      ++pos_;
    } else {
      for (;;) {
        space();
        if (peek() != '"') fail("expected a field name");
        std::string field = string();
        space();
        expect(':', "expected ':' after field name \"" + field + "\"");
        space();
        Value v = value();
        if (!fields.emplace(field, std::move(v)).second) {
          fail("duplicate field \"" + field + "\"");
        }
        space();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}', "expected ',' or '}'");
        break;
      }
    }
    space();
    if (pos_ != s_.size()) fail("unexpected text after the object");
    return fields;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw ParseError(line_, what + " (column " + std::to_string(pos_ + 1) + ")");
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c, const std::string& what) {
    if (peek() != c || pos_ >= s_.size()) fail(what);
    ++pos_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }

  Value value() {
    Value v;
    char c = peek();
    if (c == '"') {
      v.kind = Value::String;
      v.string = string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Value::Integer;
      v.integer = integer();
    } else if (literal("null")) {
      v.kind = Value::Null;
    } else if (c == '[') {
      v.kind = Value::Array;
      ++pos_;
      space();
      if (peek() == ']') {
        ++pos_;
        return v;
      }
      for (;;) {
        space();
        if (peek() == '"') {
          v.array.emplace_back(string());
        } else if (literal("null")) {
          v.array.emplace_back(std::nullopt);
        } else {
          fail("arrays may hold only strings and nulls");
        }
        space();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect(']', "expected ',' or ']' in array");
        break;
      }
    } else if (c == '{') {
      fail("nested objects are not part of the format");
    } else if (literal("true") || literal("false")) {
      fail("booleans are not part of the format");
    } else if (pos_ >= s_.size()) {
      fail("unexpected end of line, expected a value");
    } else {
      fail(std::string("unexpected character '") + c + "', expected a value");
    }
    return v;
  }

  int64_t integer() {
    size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (!(peek() >= '0' && peek() <= '9')) fail("malformed number");
    if (peek() == '0' && pos_ + 1 < s_.size() && s_[pos_ + 1] >= '0' && s_[pos_ + 1] <= '9') {
      fail("malformed number (leading zero)");
    }
    while (peek() >= '0' && peek() <= '9') ++pos_;
    if (peek() == '.' || peek() == 'e' || peek() == 'E') fail("numbers must be integers");
    int64_t out = 0;
    auto [ptr, ec] = std::from_chars(s_.data() + start, s_.data() + pos_, out);
    if (ec != std::errc() || ptr != s_.data() + pos_) {
      pos_ = start;
      fail("number out of range");
    }
    return out;
  }

  unsigned hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = peek();
      unsigned d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else fail("malformed \\u escape");
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::string string() {
    expect('"', "expected '\"'");
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) {
        --pos_;
        fail("control character in string");
      }
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated string");
      char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (!literal("\\u")) fail("unpaired surrogate in \\u escape");
            unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("unpaired surrogate in \\u escape");
          }
          utf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail(std::string("unknown escape '\\") + e + "'");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  size_t line_;
};

const Value& field(const std::map<std::string, Value>& fields, const char* name, size_t line) {
  auto it = fields.find(name);
  if (it == fields.end()) throw ParseError(line, std::string("missing field \"") + name + "\"");
  return it->second;
}

const Value& typed(const std::map<std::string, Value>& fields, const char* name,
                   Value::Kind kind, size_t line) {
  const Value& v = field(fields, name, line);
  if (v.kind != kind) {
    throw ParseError(line, std::string("field \"") + name + "\" must be " + kindName(kind) +
                               ", not " + kindName(v.kind));
  }
  return v;
}

std::optional<std::string> optionalString(const Value& v) {
  if (v.kind == Value::String) return v.string;
  return std::nullopt;
}

class Reader {
 public:
  void line(std::string_view text, size_t line) {
    bool blank = true;
    for (char c : text) {
      if (c != ' ' && c != '\t' && c != '\r') blank = false;
    }
    if (blank) return;
    auto fields = LineParser(text, line).object();

    const Value& process = typed(fields, "process", Value::Integer, line);
    if (process.integer < 0) throw ParseError(line, "field \"process\" must not be negative");
    std::string type = typed(fields, "type", Value::String, line).string;
    std::string f = typed(fields, "f", Value::String, line).string;
    std::string key = typed(fields, "key", Value::String, line).string;
    const Value& value = field(fields, "value", line);
    Time time = typed(fields, "time", Value::Integer, line).integer;

    Function fn;
    if (f == "read") fn = Function::Read;
    else if (f == "write") fn = Function::Write;
    else if (f == "cas") fn = Function::Cas;
    else if (f == "delete") fn = Function::Delete;
    else throw ParseError(line, "unknown f \"" + f + "\" (read, write, cas or delete)");

    // The shape of `value` for each function. A read's invocation and a read that did not
    // end ok carry no value (null); a read's ok carries a string or null.
    switch (fn) {
      case Function::Write:
        if (value.kind != Value::String) {
          throw ParseError(line, std::string("a write's value must be a string, not ") +
                                     kindName(value.kind));
        }
        break;
      case Function::Cas:
        if (value.kind != Value::Array || value.array.size() != 2) {
          throw ParseError(line, "a cas's value must be an array [expected, new]");
        }
        break;
      case Function::Delete:
        if (value.kind != Value::Null) throw ParseError(line, "a delete's value must be null");
        break;
      case Function::Read:
        if (value.kind != Value::Null && value.kind != Value::String) {
          throw ParseError(line, std::string("a read's value must be a string or null, not ") +
                                     kindName(value.kind));
        }
        break;
    }

    uint64_t p = static_cast<uint64_t>(process.integer);
    if (type == "invoke") {
      auto [it, fresh] = outstanding_.emplace(p, 0);
      if (!fresh) {
        throw ParseError(line, "process " + std::to_string(p) +
                                   " invokes while its operation from line " +
                                   std::to_string(history_.operations()[it->second].invokeLine) +
                                   " is outstanding");
      }
      Operation op;
      op.process = p;
      op.f = fn;
      op.key = std::move(key);
      op.invokeTime = time;
      op.invokeLine = line;
      if (fn == Function::Write) op.value = value.string;
      if (fn == Function::Cas) {
        op.expected = value.array[0];
        op.newValue = value.array[1];
      }
      it->second = history_.add(std::move(op));
      return;
    }

    Outcome outcome;
    if (type == "ok") outcome = Outcome::Ok;
    else if (type == "fail") outcome = Outcome::Fail;
    else if (type == "info") outcome = Outcome::Info;
    else throw ParseError(line, "unknown type \"" + type + "\" (invoke, ok, fail or info)");

    auto it = outstanding_.find(p);
    if (it == outstanding_.end()) {
      throw ParseError(line, "a completion (" + type + ") of process " + std::to_string(p) +
                                 " with no outstanding invocation");
    }
    size_t h = it->second;
    const Operation& op = history_.operations()[h];
    std::string where = " than its invocation on line " + std::to_string(op.invokeLine);
    if (op.f != fn) {
      throw ParseError(line, "the completion has another f (" + f + ")" + where);
    }
    if (op.key != key) throw ParseError(line, "the completion has another key" + where);
    if (fn == Function::Write && op.value != value.string) {
      throw ParseError(line, "the completion has another value" + where);
    }
    if (fn == Function::Cas && (op.expected != value.array[0] || op.newValue != value.array[1])) {
      throw ParseError(line, "the completion has another value" + where);
    }
    if (time < op.invokeTime) {
      throw ParseError(line, "the completion's time " + std::to_string(time) +
                                 " is before its invocation's (" +
                                 std::to_string(op.invokeTime) + " on line " +
                                 std::to_string(op.invokeLine) + ")");
    }
    outstanding_.erase(it);
    history_.complete(h, outcome, time,
                      fn == Function::Read ? optionalString(value) : std::nullopt);
    completeLines_.emplace_back(h, line);
  }

  History finish() {
    // History has no setter for completeLine: rebuild with the lines filled in.
    History out;
    std::vector<Operation> ops = history_.operations();
    for (auto [h, line] : completeLines_) ops[h].completeLine = line;
    for (auto& op : ops) out.add(std::move(op));
    return out;
  }

 private:
  History history_;
  std::unordered_map<uint64_t, size_t> outstanding_;
  std::vector<std::pair<size_t, size_t>> completeLines_;
};

}  // namespace

History parseHistory(std::istream& in) {
  Reader reader;
  std::string text;
  size_t line = 0;
  while (std::getline(in, text)) reader.line(text, ++line);
  if (in.bad()) throw ParseError(line, "read error");
  return reader.finish();
}

History parseHistory(std::string_view text) {
  Reader reader;
  size_t line = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    reader.line(text.substr(start, end - start), ++line);
    start = end + 1;
  }
  return reader.finish();
}

}  // namespace keel::checker
