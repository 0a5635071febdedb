// The register FFTs (register_fft.h) against a naive DFT, on the host.
#include <cmath>
#include <complex>
#include <cstdint>
#include <random>
#include <vector>

#include "core/register_fft.h"
#include "tests/check.h"

using namespace fftconv;

static std::mt19937 rng(7);

template <typename T>
static std::vector<Complex<T>> table(int n) {
  std::vector<Complex<T>> tw(n);
  for (int k = 0; k < n; ++k) tw[k] = regfft::unit_root<T>(k, n);
  return tw;
}

// sum_t x[t] exp(sign 2 pi i t u / n), in long double
static std::vector<std::complex<long double>> naive_dft(const std::vector<std::complex<long double>>& x, int sign) {
  const int n = static_cast<int>(x.size());
  std::vector<std::complex<long double>> y(n);
  for (int u = 0; u < n; ++u)
    for (int t = 0; t < n; ++t) {
      const long double a = sign * 2.0L * M_PI * static_cast<long double>((int64_t(t) * u) % n) / n;
      y[u] += x[t] * std::complex<long double>(std::cos(a), std::sin(a));
    }
  return y;
}

template <typename T, int N, int TS, bool INV>
static void check_complex(double tol) {
  std::normal_distribution<double> d;
  Complex<T> x[N];
  std::vector<std::complex<long double>> ref(N);
  for (int i = 0; i < N; ++i) {
    x[i] = {T(d(rng)), T(d(rng))};
    ref[i] = {x[i].re, x[i].im};
  }
  const auto tw = table<T>(N * TS);
  regfft::fft<T, N, TS, INV>(x, tw.data());
  const auto want = naive_dft(ref, INV ? 1 : -1);
  double err = 0, scale = 0;
  for (int i = 0; i < N; ++i) {
    err = std::fmax(err, std::abs(std::complex<double>(x[i].re, x[i].im) - std::complex<double>(want[i])));
    scale = std::fmax(scale, std::abs(std::complex<double>(want[i])));
  }
  if (!(err <= tol * scale)) std::fprintf(stderr, "fft N=%d TS=%d inv=%d: err %g scale %g\n", N, TS, INV, err, scale);
  EXPECT(err <= tol * scale);
}

template <typename T, int N>
static void check_real(double tol) {
  std::normal_distribution<double> d;
  T x[N];
  std::vector<std::complex<long double>> ref(N);
  for (int i = 0; i < N; ++i) {
    x[i] = T(d(rng));
    ref[i] = x[i];
  }
  const auto tw = table<T>(N);
  Complex<T> X[N / 2 + 1];
  regfft::real_forward<T, N>(x, X, tw.data());
  const auto want = naive_dft(ref, -1);
  double err = 0;
  for (int k = 0; k <= N / 2; ++k)
    err = std::fmax(err, std::abs(std::complex<double>(X[k].re, X[k].im) - std::complex<double>(want[k])));
  EXPECT(err <= tol * N);
  // c2r: N x, and the imaginary parts of X[0], X[N/2] are ignored.
  X[0].im = T(5);
  X[N / 2].im = T(-3);
  T back[N];
  regfft::real_inverse<T, N>(X, back, tw.data());
  double err2 = 0;
  for (int i = 0; i < N; ++i) err2 = std::fmax(err2, std::fabs(double(back[i]) / N - double(x[i])));
  if (!(err <= tol * N && err2 <= tol * 8)) std::fprintf(stderr, "real N=%d: err %g, inverse %g\n", N, err, err2);
  EXPECT(err2 <= tol * 8);
}

template <typename T, int N>
static void check_all(double tol) {
  check_complex<T, N, 1, false>(tol);
  check_complex<T, N, 1, true>(tol);
  check_complex<T, N, 2, false>(tol);
  check_complex<T, N, 3, true>(tol);
}

int main() {
  check_all<double, 1>(1e-14);
  check_all<double, 2>(1e-14);
  check_all<double, 3>(1e-14);
  check_all<double, 4>(1e-14);
  check_all<double, 6>(1e-14);
  check_all<double, 8>(1e-14);
  check_all<double, 9>(1e-14);
  check_all<double, 12>(1e-14);
  check_all<double, 16>(1e-14);
  check_all<double, 24>(1e-14);
  check_all<double, 32>(1e-14);
  check_all<double, 48>(1e-14);
  check_all<double, 64>(1e-14);
  check_all<float, 24>(1e-6);
  check_all<float, 64>(1e-6);
  static_assert(regfft::IsSupportedLength<48>::value && regfft::IsSupportedLength<1>::value, "2^a 3^b");
  static_assert(!regfft::IsSupportedLength<10>::value && !regfft::IsSupportedLength<0>::value, "no 5");
  check_real<double, 2>(1e-14);
  check_real<double, 6>(1e-14);
  check_real<double, 16>(1e-14);
  check_real<double, 32>(1e-14);
  check_real<double, 48>(1e-14);
  check_real<double, 64>(1e-14);
  check_real<float, 48>(1e-6);
  TEST_MAIN_END();
}
