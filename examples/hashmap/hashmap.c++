// keel-hashmap: the command-line client of keel-hashmap-server, over the client library's
// generic propose(bytes) and query(bytes).
//
//   keel-hashmap [--cluster ADDR,...] [--timeout-ms N] COMMAND
//     get KEY                  print KEY's value (exit 3 when absent)
//     put KEY VALUE            set KEY to VALUE
//     del KEY                  delete KEY (exit 3 when absent)
//     cas KEY EXPECTED VALUE   set KEY to VALUE if it holds EXPECTED (exit 4 when it holds
//                              something else, printed on stderr; exit 3 when absent)
// Exit status: ../common/client-args.h.
#include "../common/client-args.h"
#include "../common/fields.h"

using namespace keel::examples;

int main(int argc, char** argv) {
  keel::Client::Options options;
  std::vector<std::string> w;
  if (!parseClientArgs(argc, argv, options, w) ||
      !((w[0] == "get" && w.size() == 2) || (w[0] == "put" && w.size() == 3) || (w[0] == "del" && w.size() == 2) ||
        (w[0] == "cas" && w.size() == 4))) {
    std::fprintf(stderr,
                 "usage: keel-hashmap [--cluster ADDR,...] [--timeout-ms N] get KEY | put KEY VALUE | del KEY |\n"
                 "                    cas KEY EXPECTED VALUE\n");
    return kUsage;
  }
  keel::Client client(options);

  // Reads go through query() (linearizable: ReadIndex on whichever node answers), writes
  // through propose() (any node; followers forward to the leader).
  keel::Outcome<std::string> out = w[0] == "get"   ? client.query(encodeFields({"get", w[1]}))
                                   : w[0] == "put" ? client.propose(encodeFields({"put", w[1], w[2]}))
                                   : w[0] == "del" ? client.propose(encodeFields({"del", w[1]}))
                                                   : client.propose(encodeFields({"cas", w[1], w[2], w[3]}));
  if (!out.ok()) return failed(out);

  // The reply: [status] or [status, value] (hashmap-machine.h).
  std::vector<std::string_view> reply;
  if (!decodeFields(out.value, reply) || reply.empty()) {
    std::fprintf(stderr, "error: an undecodable reply (is this a hashmap server?)\n");
    return kFailed;
  }
  std::string_view status = reply[0], value = reply.size() > 1 ? reply[1] : "";
  if (status == "ok") {
    if (w[0] == "get") std::printf("%.*s\n", int(value.size()), value.data());
    return kOk;
  }
  if (status == "not-found") {
    std::fprintf(stderr, "not found: %s\n", w[1].c_str());
    return kNotFound;
  }
  if (status == "compare-failed") {
    std::fprintf(stderr, "compare failed: %s holds \"%.*s\"\n", w[1].c_str(), int(value.size()), value.data());
    return kCompareFailed;
  }
  std::fprintf(stderr, "error: the server answered %.*s\n", int(status.size()), status.data());
  return kFailed;
}
