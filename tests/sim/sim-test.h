// keel-sim tests: shared helpers.
#pragma once

#include "simulator.h"

#include <keel/config.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace keel::sim::testing {

// Sanitizer builds run the same code several times slower: they sweep fewer seeds.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

// Runs a seed and fails the test with the simulator's report if the run failed.
inline Result expectPasses(Options o) {
  Result r = run(o);
  EXPECT_TRUE(r.ok) << r.report;
  return r;
}

inline uint64_t coreFault(keel::Fault f) { return uint64_t{1} << static_cast<unsigned>(f); }

}  // namespace keel::sim::testing
