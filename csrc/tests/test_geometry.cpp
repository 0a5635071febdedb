// Geometry: fast sizes, the alias-free length, dropped taps and
// shifted tap slots (docs/design.md §1-§3), checked against brute-force direct correlation;
// 64-bit arithmetic past 2^31.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/geometry.h"
#include "tests/check.h"

using namespace fftconv;

static bool brute_fast(int64_t n) {
  for (int64_t p : {2, 3, 5, 7})
    while (n % p == 0) n /= p;
  return n == 1;
}

static void test_fast_sizes() {
  for (int64_t n = 1; n < 5000; ++n) {
    EXPECT(is_fast_size(n) == brute_fast(n));
    int64_t m = n;
    while (!brute_fast(m)) ++m;
    EXPECT(next_fast_size(n) == m);
  }
  for (int64_t n = 2; n < 5000; ++n) {
    int64_t m = n;
    while (!brute_fast(m) || m % 2) ++m;
    EXPECT(next_fast_even_size(n) == m);
  }
  EXPECT(next_fast_even_size(1) == 1);
  // fft_length: the even fast size, or a 7-free one at most 3% longer
  for (int64_t n = 2; n < 5000; ++n) {
    const int64_t m = next_fast_even_size(n);
    int64_t alt = m + 1;
    while (!brute_fast(alt) || alt % 2 || alt % 7 == 0) ++alt;
    const int64_t want = (m % 7 == 0 && 100 * alt <= 103 * m) ? alt : m;
    EXPECT(fft_length(n) == want);
    EXPECT(fft_length(n) >= n);
  }
  EXPECT(fft_length(70) == 72);
  EXPECT(fft_length(42) == 42);
  EXPECT(fft_length(98) == 100);
  EXPECT(next_fast_size(71) == 72);
  EXPECT(next_fast_size(86) == 90);
}

// Direct strided, dilated correlation with zero padding (or circular), one axis.
static std::vector<double> direct(const std::vector<double>& x, const std::vector<double>& w, int64_t pl,
                                  int64_t pr, int64_t s, int64_t d, bool circular) {
  const int64_t H = x.size(), k = w.size();
  const int64_t out = conv_output_length(H, k, pl, pr, s, d);
  std::vector<double> y(out, 0.0);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < k; ++j) {
      int64_t idx = i * s + j * d - pl;
      if (circular) idx = wrap_index(idx, H);
      if (idx >= 0 && idx < H) y[i] += x[idx] * w[j];
    }
  return y;
}

// The same through the geometry: x at [0, H) of a zero buffer of n_fft, kept taps
// at their slots, circular correlation, outputs read at i*stride.
static std::vector<double> via_plan(const std::vector<double>& x, const std::vector<double>& w,
                                    const AxisGeometry& p) {
  const int64_t N = p.n_fft;
  std::vector<double> buf(N, 0.0), ker(N, 0.0), y(p.out_len, 0.0);
  for (int64_t m = 0; m < p.in_len; ++m) buf[m] = x[m];
  for (int64_t t = 0; t < p.tap_count; ++t) ker[tap_slot(p, t)] += w[p.tap_begin + t];
  for (int64_t i = 0; i < p.out_len; ++i)
    for (int64_t q = 0; q < N; ++q) y[i] += buf[(i * p.stride + q) % N] * ker[q];
  return y;
}

static void test_alias_free_random(int cases) {
  std::mt19937_64 rng(12345);
  std::normal_distribution<double> normal;
  int checked = 0;
  for (int c = 0; c < cases; ++c) {
    const int64_t H = 1 + rng() % 40, k = 1 + rng() % 40;
    const int64_t pl = rng() % 25, pr = rng() % 25, s = 1 + rng() % 3, d = 1 + rng() % 3;
    const bool circular = (rng() % 4 == 0);
    if (conv_output_length(H, k, pl, pr, s, d) == 0) continue;
    AxisGeometry p = make_axis_geometry(H, k, pl, pr, s, d, circular, /*fast=*/false);
    if (circular && p.dense_len > H) continue;  // handled by an explicit pad upstream
    std::vector<double> x(H), w(k);
    for (auto& v : x) v = normal(rng);
    for (auto& v : w) v = normal(rng);
    const auto ref = direct(x, w, pl, pr, s, d, circular);
    const auto got = via_plan(x, w, p);
    double err = 0, nrm = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      err += (ref[i] - got[i]) * (ref[i] - got[i]);
      nrm += ref[i] * ref[i];
    }
    EXPECT(err <= 1e-20 * (nrm + 1e-300) || (nrm == 0 && err == 0));
    // never larger than the textbook H + k_eff - 1 when padding stays inside the kernel reach
    if (!circular && pl <= d * (k - 1) && pr <= d * (k - 1)) EXPECT(p.n_fft <= H + d * (k - 1));
    // the fast size is alias-free too (any N above the bound is)
    AxisGeometry pf = make_axis_geometry(H, k, pl, pr, s, d, circular, /*fast=*/true);
    EXPECT((is_fast_size(pf.n_fft) && (pf.n_fft % 2 == 0 || pf.n_fft == 1)) || circular);
    const auto gotf = via_plan(x, w, pf);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT(std::fabs(ref[i] - gotf[i]) <= 1e-9 * (1 + std::fabs(ref[i])));
    ++checked;
  }
  EXPECT(checked > cases / 2);
  std::printf("alias-free length: %d random geometries checked\n", checked);
}

static void test_rules_at_known_shapes() {
  // 'same' on 56 with k = 31: 56 + 15 = 71 -> 72; textbook 86 -> 90.
  AxisGeometry p = make_axis_geometry(56, 31, 15, 15, 1, 1, false);
  EXPECT(p.n_fft == 72 && p.tap_count == 31 && p.out_len == 56);
  // 31 taps on a 14-wide map with 'same': only 27 taps can reach the input.
  AxisGeometry q = make_axis_geometry(14, 31, 15, 15, 1, 1, false);
  EXPECT(q.tap_count == 27 && q.tap_begin == 2 && q.n_fft == 28);  // 27 rounded to even
  // circular: the period is the input.
  AxisGeometry c = make_axis_geometry(10, 3, 1, 1, 1, 1, true);
  EXPECT(c.n_fft == 10 && c.shift == 1);
}

static void test_64bit() {
  const int64_t big = (int64_t(1) << 33) + 5;  // past 2^31 and 2^32
  EXPECT(conv_output_length(big, 31, 15, 15, 1, 1) == big);
  EXPECT(conv_output_length(big, 3, 0, 0, 2, 1) == (big - 3) / 2 + 1);
  AxisGeometry p = make_axis_geometry(big, 31, 15, 15, 1, 1, false, /*fast=*/false);
  EXPECT(p.n_fft == big + 15 && p.dense_len == big);
  EXPECT(tap_slot(p, 0) == big + 15 - 15);  // -15 mod N
  EXPECT(wrap_index(-(int64_t(1) << 40), 7) == ((-(int64_t(1) << 40)) % 7 + 7) % 7);
  EXPECT(next_fast_size((int64_t(1) << 31) + 1) == (int64_t(1) << 31) + 1 + 0 ||
        is_fast_size(next_fast_size((int64_t(1) << 31) + 1)));
  EXPECT(next_fast_size((int64_t(1) << 31) + 1) > (int64_t(1) << 31));
}

int main() {
  test_fast_sizes();
  test_alias_free_random(4000);
  test_rules_at_known_shapes();
  test_64bit();
  TEST_MAIN_END();
}
