// keel internal: deliberate defects for tests that prove the checkers catch them.
//
// Compiled in only when KEEL_FAULTS is defined (test builds); switched on per node through
// Config::faults. A release build has no trace of them.
#pragma once

#include <keel/config.h>

#ifdef KEEL_FAULTS
#define KEEL_FAULT_IF(fault, ...)                                            \
  do {                                                                       \
    if (cfg_.faults & (uint64_t{1} << static_cast<unsigned>(fault))) __VA_ARGS__ \
  } while (0)
#else
#define KEEL_FAULT_IF(fault, ...) \
  do {                            \
  } while (0)
#endif
