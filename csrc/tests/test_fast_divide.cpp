// FastDivider against plain integer division: every divisor up to 4096 with
// the numerators that stress its rounding (multiples and their neighbours),
// then random divisors and numerators over the whole valid range.
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>

#include "core/fast_divide.h"

int main() {
  int64_t checked = 0, failed = 0;
  auto check = [&](int64_t d, int64_t n) {
    const fftconv::FastDivider f(d);
    int q, r;
    f.divmod(static_cast<int>(n), q, r);
    ++checked;
    if (q != n / d || r != n % d) {
      if (++failed < 10) std::printf("FAIL d=%lld n=%lld: got %d r %d\n", (long long)d, (long long)n, q, r);
    }
  };
  const int64_t top = (int64_t(1) << 31) - 1;
  for (int64_t d = 1; d <= 4096; ++d) {
    for (int64_t n = 0; n < 3 * d + 2; ++n) check(d, n);
    for (int64_t k : {int64_t(1000), int64_t(1) << 20, top / d - 1}) {
      for (int64_t e = -1; e <= 1; ++e) {
        const int64_t n = k * d + e;
        if (n >= 0 && n <= top) check(d, n);
      }
    }
    check(d, top);
  }
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> any_d(1, top), any_n(0, top);
  for (int i = 0; i < 2000000; ++i) check(any_d(rng), any_n(rng));
  for (int64_t d : {int64_t(1) << 30, top}) {
    check(d, 0);
    check(d, d - 1);
    check(d, top);
  }
  // a divisor outside [1, 2^31) is refused (zero used to divide by zero in the constructor)
  for (int64_t d : {int64_t(0), int64_t(-3), int64_t(1) << 31}) {
    bool threw = false;
    try {
      const fftconv::FastDivider f(d);
      (void)f;
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    ++checked;
    if (!threw) {
      ++failed;
      std::printf("FAIL d=%lld was accepted\n", (long long)d);
    }
  }
  std::printf("%lld divisions checked, %lld failed\n", (long long)checked, (long long)failed);
  return failed == 0 ? 0 : 1;
}
