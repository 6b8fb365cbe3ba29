// keel internal: RESP2, the Redis serialization protocol (https://redis.io/docs/reference/protocol-spec/),
// as far as a server needs it: an incremental parser of client commands and a writer of replies.
//
// COMMANDS a client sends are either
//   - a multibulk: `*<n>\r\n` then n bulk strings `$<len>\r\n<len bytes>\r\n` (what redis-cli,
//     redis-benchmark and every client library send), or
//   - an inline command: one line of words separated by spaces or tabs, ended by `\n` (with or
//     without `\r`), as typed into telnet.
// A client may send many commands before reading any reply (pipelining): the parser hands
// them out one at a time, in order, whatever the chunks the bytes arrived in.
//
// ERRORS: bytes that are not RESP (a bulk without `$`, a length that is not a number or is
// over the limits, a bulk not followed by `\r\n`, an over-long inline line) put the parser in
// a final error state: the server answers `-ERR Protocol error: ...` and closes that
// connection (as Redis does). Limits bound the memory one connection can make the server hold.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace keel::resp {

class Parser final {
 public:
  struct Limits {
    size_t maxArgs = 1024 * 1024;         // elements of one multibulk
    size_t maxBulkBytes = 64 << 20;       // one bulk string
    size_t maxInlineBytes = 64 * 1024;    // one inline command, or one `*`/`$` header line
  };
  enum class Result { Command, NeedMore, Error };

  Parser() : Parser(Limits{}) {}
  explicit Parser(Limits limits) : limits_(limits) {}

  // Appends received bytes.
  void feed(std::string_view bytes);
  // The next complete command into `args` (cleared first; never empty on Command). NeedMore:
  // feed more bytes. Error: the stream is malformed; error() says how; every later call says
  // Error again.
  Result next(std::vector<std::string>& args);
  const std::string& error() const noexcept { return error_; }
  // Bytes received and not yet handed out as commands.
  size_t buffered() const noexcept { return buf_.size() - pos_; }

 private:
  Result fail(std::string why);
  // A header line starting at pos_ (without its \r\n); false when it is not complete yet.
  bool line(std::string_view& out, size_t& consumed);
  void compact();

  Limits limits_;
  std::string buf_;
  size_t pos_ = 0;
  // Inside a multibulk: how many bulks are still to come, and the length of the bulk whose
  // header has been read (-1: none).
  bool inMultibulk_ = false;
  size_t remaining_ = 0;
  int64_t bulkLen_ = -1;
  std::vector<std::string> partial_;
  std::string error_;
};

// ---- Writing replies (appending to `out`) ----
void writeSimple(std::string& out, std::string_view s);  // +OK
void writeError(std::string& out, std::string_view s);   // -ERR ... (s includes the prefix)
void writeInteger(std::string& out, int64_t v);          // :42
void writeBulk(std::string& out, std::string_view s);    // $3 foo
void writeNull(std::string& out);                        // $-1 (nil)
void writeArrayHeader(std::string& out, size_t n);       // *n
void writeNullArray(std::string& out);                   // *-1

// Redis's glob-style pattern matching (KEYS, SCAN MATCH): * ? [abc] [^a-z] and \ escapes.
bool globMatch(std::string_view pattern, std::string_view s) noexcept;

}  // namespace keel::resp
