// A minimal test harness for the C++ unit tests (no dependency beyond the STL).
#pragma once
#include <cstdio>
#include <cstdlib>

static int g_failures = 0;

#define EXPECT(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: EXPECT failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                         \
    }                                                                       \
  } while (0)

#define TEST_MAIN_END()                                             \
  do {                                                              \
    if (g_failures) std::fprintf(stderr, "%d failure(s)\n", g_failures); \
    else std::printf("all checks passed\n");                        \
    return g_failures ? 1 : 0;                                      \
  } while (0)
