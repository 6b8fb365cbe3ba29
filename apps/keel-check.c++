// keel-check: checks operation histories (JSON Lines, see docs/testing.md) for
// linearizability against a register-per-key model.
//
//   keel-check [--timeout SECONDS] [--shrink-timeout SECONDS] [--json] FILE...
//
// FILE `-` is standard input. Exit status: 0 every history is linearizable, 1 some history is
// not, 2 some input is unreadable (the message names the line), 3 some check gave up at the
// timeout (and none failed). With several files the worst status wins, in the order 2, 1, 3.
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "keel/check.h"

namespace {

namespace kc = keel::checker;

const char kUsage[] =
    "usage: keel-check [--timeout SECONDS] [--shrink-timeout SECONDS] [--json] FILE...\n"
    "Checks each history (JSON Lines; '-' reads standard input) for linearizability against a\n"
    "register per key.\n"
    "  --timeout SECONDS         give up after this long (exit 3); default: never\n"
    "  --shrink-timeout SECONDS  time to spend shrinking a violation; default 2\n"
    "  --json                    print one JSON object per file instead of text\n"
    "Exit status: 0 linearizable, 1 not linearizable, 2 unreadable input, 3 unknown (timeout).\n";

bool parseSeconds(const char* text, std::chrono::milliseconds* out) {
  char* end = nullptr;
  errno = 0;
  double s = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !(s >= 0) || s > 1e9) return false;
  *out = std::chrono::milliseconds(static_cast<int64_t>(s * 1000 + 0.5));
  if (s > 0 && out->count() == 0) *out = std::chrono::milliseconds(1);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  kc::CheckOptions options;
  bool json = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--timeout" || arg == "--shrink-timeout") {
      if (i + 1 >= argc) {
        std::cerr << "keel-check: " << arg << " needs a value\n" << kUsage;
        return 2;
      }
      auto* target = arg == "--timeout" ? &options.timeout : &options.shrinkTimeout;
      if (!parseSeconds(argv[++i], target)) {
        std::cerr << "keel-check: " << arg << ": not a number of seconds: " << argv[i] << "\n";
        return 2;
      }
    } else if (arg.size() > 1 && arg[0] == '-' && arg != "-") {
      std::cerr << "keel-check: unknown option " << arg << "\n" << kUsage;
      return 2;
    } else {
      files.push_back(arg);
    }
  }
  if (files.empty()) {
    std::cerr << kUsage;
    return 2;
  }

  bool unreadable = false, violated = false, unknown = false;
  for (auto& file : files) {
    std::string label = file == "-" ? "<stdin>" : file;
    kc::History history;
    try {
      if (file == "-") {
        history = kc::parseHistory(std::cin);
      } else {
        std::ifstream in(file);
        if (!in) {
          std::cerr << "keel-check: " << label << ": cannot open: " << std::strerror(errno)
                    << "\n";
          unreadable = true;
          continue;
        }
        history = kc::parseHistory(in);
      }
    } catch (const kc::ParseError& e) {
      std::cerr << "keel-check: " << label << ": " << e.what() << "\n";
      unreadable = true;
      continue;
    }
    kc::CheckResult result = kc::check(history, options);
    if (json) {
      std::string out = kc::renderJson(result);
      // Name the file in the object: insert it after the opening brace.
      std::string name;
      name += "{\"file\":\"";
      for (char c : label) {
        if (c == '"' || c == '\\') name.push_back('\\');
        name.push_back(c);
      }
      name += "\",";
      std::cout << name << out.substr(1) << "\n";
    } else {
      std::cout << label << ": " << kc::render(result);
    }
    violated = violated || result.verdict == kc::Verdict::NotLinearizable;
    unknown = unknown || result.verdict == kc::Verdict::Unknown;
  }
  std::cout.flush();
  if (unreadable) return 2;
  if (violated) return 1;
  if (unknown) return 3;
  return 0;
}
