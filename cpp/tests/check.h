// A minimal test harness for the C++ core tests: CHECK records failures, main returns nonzero.
#pragma once

#include <cmath>
#include <cstdio>

namespace pyrnn::testing {

inline int& failures() {
  static int count = 0;
  return count;
}

}  // namespace pyrnn::testing

#define PYRNN_CHECK(condition)                                                           \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      ++pyrnn::testing::failures();                                                      \
    }                                                                                    \
  } while (0)

// |a - b| <= atol + rtol * |b|, b being the reference.
#define PYRNN_CHECK_CLOSE(a, b, atol, rtol)                                                \
  do {                                                                                     \
    const double pyrnn_a = (a), pyrnn_b = (b);                                             \
    if (!(std::fabs(pyrnn_a - pyrnn_b) <= (atol) + (rtol) * std::fabs(pyrnn_b))) {         \
      std::fprintf(stderr, "%s:%d: %s = %.9g vs %s = %.9g (atol %g, rtol %g)\n", __FILE__, \
                   __LINE__, #a, pyrnn_a, #b, pyrnn_b, static_cast<double>(atol),          \
                   static_cast<double>(rtol));                                             \
      ++pyrnn::testing::failures();                                                        \
    }                                                                                      \
  } while (0)
