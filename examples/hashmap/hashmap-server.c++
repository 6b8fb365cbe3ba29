// keel-hashmap-server: one member of a cluster replicating a hash map (hashmap-machine.h),
// served by the keel server library. Same flags as keel-server; see README.md.
#include "hashmap-machine.h"

#include "../common/serve.h"

class Main : public keel::examples::ServeMain {
 public:
  explicit Main(kj::ProcessContext& c)
      : ServeMain(c, "keel-hashmap-server", std::make_unique<keel::examples::HashMapMachine>()) {}
};

KJ_MAIN(Main)
