// keel: the RESP2 parser and writer (see resp.h).
#include "resp.h"

#include <charconv>

namespace keel::resp {

namespace {

// A decimal integer that fills `s` exactly (an optional '-' then digits).
bool parseLength(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

void Parser::feed(std::string_view bytes) {
  if (!error_.empty()) return;
  compact();
  buf_.append(bytes);
}

void Parser::compact() {
  if (pos_ == 0) return;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ >= 64 * 1024 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
}

Parser::Result Parser::fail(std::string why) {
  error_ = "Protocol error: " + std::move(why);
  buf_.clear();
  pos_ = 0;
  partial_.clear();
  return Result::Error;
}

bool Parser::line(std::string_view& out, size_t& consumed) {
  size_t nl = buf_.find('\n', pos_);
  if (nl == std::string::npos) return false;
  size_t end = nl;
  if (end > pos_ && buf_[end - 1] == '\r') --end;
  out = std::string_view(buf_).substr(pos_, end - pos_);
  consumed = nl + 1 - pos_;
  return true;
}

Parser::Result Parser::next(std::vector<std::string>& args) {
  args.clear();
  if (!error_.empty()) return Result::Error;
  for (;;) {
    if (!inMultibulk_) {
      if (pos_ == buf_.size()) return Result::NeedMore;
      std::string_view l;
      size_t consumed;
      bool complete = line(l, consumed);
      if (!complete) {
        if (buffered() > limits_.maxInlineBytes) {
          return fail(buf_[pos_] == '*' ? "too big mbulk count string" : "too big inline request");
        }
        return Result::NeedMore;
      }
      if (l.size() > limits_.maxInlineBytes) return fail("too big inline request");
      if (buf_[pos_] == '*') {
        int64_t n;
        if (!parseLength(l.substr(1), n) || n > int64_t(limits_.maxArgs)) return fail("invalid multibulk length");
        pos_ += consumed;
        if (n <= 0) continue;  // `*0` and `*-1` are no commands at all
        inMultibulk_ = true;
        remaining_ = size_t(n);
        bulkLen_ = -1;
        partial_.clear();
        partial_.reserve(std::min<size_t>(remaining_, 1024));
        continue;
      }
      // Inline: words separated by spaces or tabs.
      pos_ += consumed;
      size_t i = 0;
      while (i < l.size()) {
        while (i < l.size() && (l[i] == ' ' || l[i] == '\t')) ++i;
        size_t j = i;
        while (j < l.size() && l[j] != ' ' && l[j] != '\t') ++j;
        if (j > i) args.emplace_back(l.substr(i, j - i));
        i = j;
      }
      if (args.empty()) continue;  // an empty line
      return Result::Command;
    }
    // Inside a multibulk.
    if (bulkLen_ < 0) {
      if (pos_ == buf_.size()) return Result::NeedMore;
      if (buf_[pos_] != '$') return fail(std::string("expected '$', got '") + buf_[pos_] + "'");
      std::string_view l;
      size_t consumed;
      if (!line(l, consumed)) {
        if (buffered() > limits_.maxInlineBytes) return fail("too big bulk count string");
        return Result::NeedMore;
      }
      int64_t n;
      if (!parseLength(l.substr(1), n) || n < 0 || uint64_t(n) > limits_.maxBulkBytes) {
        return fail("invalid bulk length");
      }
      pos_ += consumed;
      bulkLen_ = n;
    }
    size_t need = size_t(bulkLen_) + 2;
    if (buffered() < need) return Result::NeedMore;
    if (buf_[pos_ + size_t(bulkLen_)] != '\r' || buf_[pos_ + size_t(bulkLen_) + 1] != '\n') {
      return fail("bulk string not followed by CRLF");
    }
    partial_.emplace_back(buf_, pos_, size_t(bulkLen_));
    pos_ += need;
    bulkLen_ = -1;
    if (--remaining_ == 0) {
      inMultibulk_ = false;
      args.swap(partial_);
      partial_.clear();
      return Result::Command;
    }
  }
}

void writeSimple(std::string& out, std::string_view s) {
  out.push_back('+');
  out.append(s);
  out.append("\r\n");
}

void writeError(std::string& out, std::string_view s) {
  out.push_back('-');
  // A simple string holds no line breaks.
  for (char c : s) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
  out.append("\r\n");
}

void writeInteger(std::string& out, int64_t v) {
  out.push_back(':');
  out.append(std::to_string(v));
  out.append("\r\n");
}

void writeBulk(std::string& out, std::string_view s) {
  out.push_back('$');
  out.append(std::to_string(s.size()));
  out.append("\r\n");
  out.append(s);
  out.append("\r\n");
}

void writeNull(std::string& out) { out.append("$-1\r\n"); }

void writeArrayHeader(std::string& out, size_t n) {
  out.push_back('*');
  out.append(std::to_string(n));
  out.append("\r\n");
}

void writeNullArray(std::string& out) { out.append("*-1\r\n"); }

bool globMatch(std::string_view p, std::string_view s) noexcept {
  size_t pi = 0, si = 0;
  // Backtracking point of the last '*': where in the pattern, and where in the string.
  size_t starP = std::string_view::npos, starS = 0;
  while (si < s.size()) {
    if (pi < p.size()) {
      char c = p[pi];
      if (c == '*') {
        while (pi < p.size() && p[pi] == '*') ++pi;
        if (pi == p.size()) return true;
        starP = pi;
        starS = si;
        continue;
      }
      if (c == '?') {
        ++pi;
        ++si;
        continue;
      }
      if (c == '[') {
        size_t q = pi + 1;
        bool negate = q < p.size() && p[q] == '^';
        if (negate) ++q;
        bool match = false;
        while (q < p.size() && p[q] != ']') {
          if (p[q] == '\\' && q + 1 < p.size()) {
            if (p[q + 1] == s[si]) match = true;
            q += 2;
          } else if (q + 2 < p.size() && p[q + 1] == '-' && p[q + 2] != ']') {
            char lo = p[q], hi = p[q + 2];
            if (lo > hi) std::swap(lo, hi);
            if (s[si] >= lo && s[si] <= hi) match = true;
            q += 3;
          } else {
            if (p[q] == s[si]) match = true;
            ++q;
          }
        }
        if (match != negate) {
          pi = q < p.size() ? q + 1 : q;
          ++si;
          continue;
        }
      } else {
        if (c == '\\' && pi + 1 < p.size()) {
          if (p[pi + 1] == s[si]) {
            pi += 2;
            ++si;
            continue;
          }
        } else if (c == s[si]) {
          ++pi;
          ++si;
          continue;
        }
      }
    }
    if (starP == std::string_view::npos) return false;
    pi = starP;
    si = ++starS;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

}  // namespace keel::resp
