// The JSON Lines reader: what it accepts and how it names what is wrong.
#include <gtest/gtest.h>

#include <sstream>

#include "keel/check.h"

namespace keel::checker {
namespace {

// Expects `text` to be rejected on `line` with a message containing `what`.
void expectError(const std::string& text, size_t line, const std::string& what) {
  try {
    parseHistory(text);
    ADD_FAILURE() << "accepted:\n" << text;
  } catch (const ParseError& e) {
    EXPECT_EQ(e.line(), line) << e.what();
    EXPECT_NE(e.message().find(what), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("line " + std::to_string(line) + ": ", 0), 0u)
        << e.what();
  }
}

const std::string kWrite =
    R"({"process":1,"type":"invoke","f":"write","key":"x","value":"a","time":10})";
const std::string kWriteOk =
    R"({"process":1,"type":"ok","f":"write","key":"x","value":"a","time":20})";

TEST(Parse, ReadsTheFormat) {
  std::string text = kWrite + "\n" + kWriteOk + "\n" +
                     R"({"process":2,"type":"invoke","f":"read","key":"x","value":null,"time":30})"
                     "\n\n"
                     R"(  { "time" : 40 , "value":"a","key":"x","f":"read","type":"ok","process":2 , "extra":[null]} )"
                     "\n"
                     R"({"process":3,"type":"invoke","f":"cas","key":"x","value":["a",null],"time":50})"
                     "\n"
                     R"({"process":3,"type":"fail","f":"cas","key":"x","value":["a",null],"time":60})"
                     "\n"
                     R"({"process":4,"type":"invoke","f":"delete","key":"x","value":null,"time":-5})"
                     "\n";
  History h = parseHistory(text);
  ASSERT_EQ(h.size(), 4u);
  const auto& ops = h.operations();
  EXPECT_EQ(ops[0].f, Function::Write);
  EXPECT_EQ(ops[0].value, "a");
  EXPECT_EQ(ops[0].invokeLine, 1u);
  EXPECT_EQ(ops[0].completeLine, 2u);
  EXPECT_EQ(ops[1].f, Function::Read);
  EXPECT_EQ(ops[1].value, "a");
  EXPECT_EQ(ops[1].completeLine, 5u);
  EXPECT_EQ(ops[2].f, Function::Cas);
  EXPECT_EQ(ops[2].expected, "a");
  EXPECT_EQ(ops[2].newValue, std::nullopt);
  EXPECT_EQ(ops[2].outcome, Outcome::Fail);
  EXPECT_EQ(ops[3].f, Function::Delete);
  EXPECT_EQ(ops[3].invokeTime, -5);
  EXPECT_EQ(ops[3].outcome, Outcome::Info);  // never completed
  EXPECT_FALSE(h.completed(3));

  std::istringstream in(text);
  EXPECT_EQ(parseHistory(in).size(), 4u);
}

TEST(Parse, DecodesStringEscapes) {
  History h = parseHistory(
      R"({"process":1,"type":"invoke","f":"write","key":"k\"\\\/","value":"a\nb\tc\u00e9\ud83d\ude00\u0041","time":1})");
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h.operations()[0].key, "k\"\\/");
  EXPECT_EQ(h.operations()[0].value, "a\nb\tc\xc3\xa9\xf0\x9f\x98\x80" "A");
}

TEST(Parse, MalformedJsonNamesTheLine) {
  std::string two = kWrite + "\n" + kWriteOk + "\n";
  expectError(two + "{\"process\":2", 3, "expected");
  expectError(two + "[1,2]", 3, "expected '{'");
  expectError(two + R"({"process":2,"process":3})", 3, "duplicate field");
  expectError(two + R"({"process":2.5})", 3, "integers");
  expectError(two + R"({"process":012})", 3, "leading zero");
  expectError(two + R"({"process":99999999999999999999})", 3, "out of range");
  expectError(two + R"({"process":true})", 3, "booleans");
  expectError(two + R"({"process":{}})", 3, "nested objects");
  expectError(two + R"({"key":"abc)", 3, "unterminated string");
  expectError(two + R"({"key":"\q"})", 3, "unknown escape");
  expectError(two + R"({"key":"\u12"})", 3, "\\u escape");
  expectError(two + R"({"key":"\ud800"})", 3, "surrogate");
  expectError(two + "{\"key\":\"a\x01\"}", 3, "control character");
  expectError(two + R"({"value":[1]})", 3, "only strings and nulls");
  expectError(two + R"({} x)", 3, "after the object");
  expectError(two + R"({"process":)", 3, "end of line");
}

TEST(Parse, MissingOrMistypedFields) {
  expectError(R"({"type":"invoke","f":"read","key":"x","value":null,"time":1})", 1,
              "missing field \"process\"");
  expectError(R"({"process":1,"type":"invoke","f":"read","key":"x","value":null})", 1,
              "missing field \"time\"");
  expectError(R"({"process":"1","type":"invoke","f":"read","key":"x","value":null,"time":1})", 1,
              "\"process\" must be a number");
  expectError(R"({"process":-1,"type":"invoke","f":"read","key":"x","value":null,"time":1})", 1,
              "negative");
  expectError(R"({"process":1,"type":"invoke","f":"append","key":"x","value":null,"time":1})", 1,
              "unknown f");
  expectError(R"({"process":1,"type":"begin","f":"read","key":"x","value":null,"time":1})", 1,
              "unknown type");
  expectError(R"({"process":1,"type":"invoke","f":"write","key":"x","value":null,"time":1})", 1,
              "a write's value must be a string");
  expectError(R"({"process":1,"type":"invoke","f":"cas","key":"x","value":"a","time":1})", 1,
              "[expected, new]");
  expectError(R"({"process":1,"type":"invoke","f":"cas","key":"x","value":["a"],"time":1})", 1,
              "[expected, new]");
  expectError(R"({"process":1,"type":"invoke","f":"delete","key":"x","value":"a","time":1})", 1,
              "a delete's value must be null");
  expectError(R"({"process":1,"type":"invoke","f":"read","key":"x","value":["a","b"],"time":1})",
              1, "a read's value");
}

TEST(Parse, CompletionsMustMatchAnInvocation) {
  expectError(kWriteOk, 1, "no outstanding invocation");
  expectError(kWrite + "\n" + kWrite, 2, "line 1 is outstanding");
  expectError(kWrite + "\n" +
                  R"({"process":1,"type":"ok","f":"read","key":"x","value":"a","time":20})",
              2, "another f");
  expectError(kWrite + "\n" +
                  R"({"process":1,"type":"ok","f":"write","key":"y","value":"a","time":20})",
              2, "another key");
  expectError(kWrite + "\n" +
                  R"({"process":1,"type":"ok","f":"write","key":"x","value":"b","time":20})",
              2, "another value");
  expectError(R"({"process":1,"type":"invoke","f":"cas","key":"x","value":["a","b"],"time":1})"
              "\n"
              R"({"process":1,"type":"ok","f":"cas","key":"x","value":["a","c"],"time":2})",
              2, "another value");
  expectError(kWrite + "\n" +
                  R"({"process":1,"type":"ok","f":"write","key":"x","value":"a","time":5})",
              2, "before its invocation");
  // A process may invoke again once its operation completed.
  EXPECT_EQ(parseHistory(kWrite + "\n" + kWriteOk + "\n" + kWrite + "\n").size(), 2u);
}

}  // namespace
}  // namespace keel::checker
