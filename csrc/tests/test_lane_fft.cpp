// The lane FFTs (cpu/lane_fft.h) against a naive DFT, every lane its own
// sequence: each radix's butterfly (2, 3, 4, 5; 7 by its DFT matrix) and their
// mixes, both directions, float and double.
#include <cmath>
#include <complex>
#include <cstdint>
#include <random>
#include <vector>

#include "cpu/lane_fft.h"
#include "tests/check.h"

using namespace fftconv::cpu;

static std::mt19937 rng(11);

// sum_t x[t] exp(sign 2 pi i t u / n), in long double (the n roots tabulated once)
static std::vector<std::complex<long double>> naive_dft(const std::vector<std::complex<long double>>& x, int sign) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<std::complex<long double>> root(n), y(n);
  for (int64_t j = 0; j < n; ++j) {
    const long double a = sign * 2.0L * M_PI * static_cast<long double>(j) / n;
    root[j] = {std::cos(a), std::sin(a)};
  }
  for (int64_t u = 0; u < n; ++u)
    for (int64_t t = 0; t < n; ++t) y[u] += x[t] * root[(t * u) % n];
  return y;
}

template <typename T>
static void check(int64_t n, int sign, double tol) {
  using V = typename lanes::Lanes<T>::V;
  constexpr int64_t L = lanes::Lanes<T>::count;
  const lanes::Plan<T> plan(n, sign);
  std::vector<V> re(n), im(n), wr(n), wi(n);
  std::vector<std::vector<std::complex<long double>>> x(L, std::vector<std::complex<long double>>(n));
  std::normal_distribution<double> d;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t i = 0; i < n; ++i) {
      x[l][i] = {d(rng), d(rng)};
      re[i][l] = static_cast<T>(x[l][i].real());
      im[i][l] = static_cast<T>(x[l][i].imag());
    }
  lanes::fft(plan, re.data(), im.data(), wr.data(), wi.data());
  for (int64_t l = 0; l < L; l += (n > 256 ? L - 1 : 1)) {  // long transforms: the first and last lanes
    const auto y = naive_dft(x[l], sign);
    long double err = 0, mag = 0;
    for (int64_t u = 0; u < n; ++u) {
      err = std::max(err, std::abs(y[u] - std::complex<long double>(re[u][l], im[u][l])));
      mag = std::max(mag, std::abs(y[u]));
    }
    EXPECT(err <= tol * mag);
    if (!(err <= tol * mag)) std::fprintf(stderr, "  n=%lld sign=%d lane %lld: error %Lg of %Lg\n",
                                          static_cast<long long>(n), sign, static_cast<long long>(l), err, mag);
  }
}

int main() {
  for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 16, 20, 25, 27, 30, 45, 49, 60, 72, 75, 125, 210, 243,
                    360, 1800, 2048})
    for (int sign : {-1, +1}) {
      check<double>(n, sign, 1e-13);
      check<float>(n, sign, 2e-6);
    }
  EXPECT(lanes::supported_length(1800) && lanes::supported_length(2048) && !lanes::supported_length(2050) &&
         !lanes::supported_length(22));
  TEST_MAIN_END();
}
