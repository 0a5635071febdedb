// Pointwise stages: the same functions the CPU loops and the CUDA kernels call.
#include <complex>
#include <cstdint>
#include <vector>

#include "core/pointwise.h"
#include "tests/check.h"

using namespace fftconv;

static void test_complex_products() {
  const Complex<double> a{1.5, -2.0}, b{0.25, 3.0};
  const std::complex<double> ca(1.5, -2.0), cb(0.25, 3.0);
  const auto p = cmul(a, b), q = cmul_conj(a, b);
  EXPECT(p.re == (ca * cb).real() && p.im == (ca * cb).imag());
  EXPECT(q.re == (ca * std::conj(cb)).real() && q.im == (ca * std::conj(cb)).imag());
  static_assert(sizeof(Complex<float>) == sizeof(std::complex<float>), "interleaved layout");
}

static void test_pad_load() {
  const double src[4] = {1, 2, 3, 4};
  double row[9];
  pad_load_row(row, src, 4, 1, 9);  // plain pad
  const double want1[9] = {1, 2, 3, 4, 0, 0, 0, 0, 0};
  for (int i = 0; i < 9; ++i) EXPECT(row[i] == want1[i]);
  pad_load_row(row, src, 4, 2, 9);  // zero-stuffed by stride 2
  const double want2[9] = {1, 0, 2, 0, 3, 0, 4, 0, 0};
  for (int i = 0; i < 9; ++i) EXPECT(row[i] == want2[i]);
  const double plane[6] = {1, 2, 3, 4, 5, 6};  // 2 x 3
  EXPECT(pad_load_value_2d(plane, 2, 3, 2, 1, 2, 1) == 5.0);
  EXPECT(pad_load_value_2d(plane, 2, 3, 2, 1, 1, 1) == 0.0);
  EXPECT(pad_load_value_2d(plane, 2, 3, 2, 1, 4, 0) == 0.0);
  EXPECT(pad_load_value_2d(plane, 2, 3, 1, 1, 0, 3) == 0.0);
}

static void test_transposes() {
  // 3 rows x 2 frequencies, row-major, into a column-major plane of n_h = 5.
  std::vector<Complex<float>> rows;
  for (int i = 0; i < 6; ++i) rows.push_back({float(i), float(-i)});
  std::vector<Complex<float>> cols(2 * 5);
  for (int f = 0; f < 2; ++f)
    for (int r = 0; r < 5; ++r) cols[f * 5 + r] = transpose_pad_value(rows.data(), 3, 2, f, r);
  EXPECT(cols[0 * 5 + 2].re == 4.0f && cols[1 * 5 + 1].re == 3.0f && cols[1 * 5 + 4].re == 0.0f);
  // select rows 0 and 2 (step 2) back
  EXPECT(transpose_select_value(cols.data(), 5, 2, 1, 1).re == 5.0f);
  EXPECT(transpose_select_value(cols.data(), 5, 2, 0, 0).im == -0.0f);
}

static void test_spectral_dot_and_planes() {
  // forward: y = s0*x0 + s1*x1; adjoint uses conj(s)
  const Complex<double> x[2] = {{1, 1}, {2, -1}}, s[2] = {{0.5, 2}, {-1, 3}};
  const auto y = spectral_dot(x, 1, s, 1, 2, false);
  const auto z = spectral_dot(x, 1, s, 1, 2, true);
  const std::complex<double> cy = std::complex<double>(1, 1) * std::complex<double>(0.5, 2) +
                                  std::complex<double>(2, -1) * std::complex<double>(-1, 3);
  const std::complex<double> cz = std::complex<double>(1, 1) * std::conj(std::complex<double>(0.5, 2)) +
                                  std::complex<double>(2, -1) * std::conj(std::complex<double>(-1, 3));
  EXPECT(y.re == cy.real() && y.im == cy.imag() && z.re == cz.real() && z.im == cz.imag());
  // S is [C_out][cpg]; forward output q of group g sums over c, adjoint over o.
  const int64_t cpg = 3, opg = 2;
  EXPECT(spectrum_plane(1, 1, 2, cpg, opg, false) == (1 * opg + 1) * cpg + 2);
  EXPECT(spectrum_plane(1, 2, 1, cpg, opg, true) == (1 * opg + 1) * cpg + 2);
  EXPECT(spectrum_plane_step(cpg, false) == 1 && spectrum_plane_step(cpg, true) == cpg);
}

static void test_crop_and_gather() {
  double buf[8 * 8];
  for (int i = 0; i < 64; ++i) buf[i] = i;
  EXPECT(crop_store_value(buf, 5, 2, 2, 1, 1, 0.5) == buf[2 * 5 + 2] + 0.5);
  AxisGeometry ph = make_axis_geometry(4, 3, 1, 1, 1, 1, false, false);
  AxisGeometry pw = make_axis_geometry(5, 3, 1, 1, 1, 1, false, false);
  // tap 0 sits at slot -1 mod N: the last row/column.
  EXPECT(gather_tap_value(buf, pw.n_fft, ph, pw, 0, 0) == buf[(ph.n_fft - 1) * pw.n_fft + pw.n_fft - 1]);
}

int main() {
  test_complex_products();
  test_pad_load();
  test_transposes();
  test_spectral_dot_and_planes();
  test_crop_and_gather();
  TEST_MAIN_END();
}
