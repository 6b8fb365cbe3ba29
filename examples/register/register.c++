// keel-register: the command-line client of keel-register-server, over the client library's
// generic propose(bytes) and query(bytes).
//
//   keel-register [--cluster ADDR,...] [--timeout-ms N] get | put VALUE | cas EXPECTED VALUE
//
// get prints the value; cas prints the current value on stderr and exits 4 when it differs.
// Exit status: ../common/client-args.h.
#include "../common/client-args.h"
#include "../common/fields.h"

using namespace keel::examples;

int main(int argc, char** argv) {
  keel::Client::Options options;
  std::vector<std::string> w;
  if (!parseClientArgs(argc, argv, options, w) ||
      !((w[0] == "get" && w.size() == 1) || (w[0] == "put" && w.size() == 2) || (w[0] == "cas" && w.size() == 3))) {
    std::fprintf(stderr, "usage: keel-register [--cluster ADDR,...] [--timeout-ms N] get | put VALUE | cas EXPECTED VALUE\n");
    return kUsage;
  }
  keel::Client client(options);

  // Reads go through query() (linearizable: ReadIndex on whichever node answers), writes
  // through propose() (any node; followers forward to the leader).
  keel::Outcome<std::string> out = w[0] == "get"   ? client.query(encodeFields({"get"}))
                                   : w[0] == "put" ? client.propose(encodeFields({"put", w[1]}))
                                                   : client.propose(encodeFields({"cas", w[1], w[2]}));
  if (!out.ok()) return failed(out);

  // The reply: [status] or [status, value] (register-machine.h).
  std::vector<std::string_view> reply;
  if (!decodeFields(out.value, reply) || reply.empty()) {
    std::fprintf(stderr, "error: an undecodable reply (is this a register server?)\n");
    return kFailed;
  }
  std::string_view status = reply[0], value = reply.size() > 1 ? reply[1] : "";
  if (status == "ok") {
    if (w[0] == "get") std::printf("%.*s\n", int(value.size()), value.data());
    return kOk;
  }
  if (status == "compare-failed") {
    std::fprintf(stderr, "compare failed: the register holds \"%.*s\"\n", int(value.size()), value.data());
    return kCompareFailed;
  }
  std::fprintf(stderr, "error: the server answered %.*s\n", int(status.size()), status.data());
  return kFailed;
}
