// keel-register-server: one member of a cluster replicating a register (register-machine.h),
// served by the keel server library. Same flags as keel-server; see README.md.
#include "register-machine.h"

#include "../common/serve.h"

class Main : public keel::examples::ServeMain {
 public:
  explicit Main(kj::ProcessContext& c)
      : ServeMain(c, "keel-register-server", std::make_unique<keel::examples::RegisterMachine>()) {}
};

KJ_MAIN(Main)
