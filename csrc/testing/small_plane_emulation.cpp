// The small-plane CUDA kernel (small_plane/forward.h) run on the host,
// block by block, each phase's items one after the other: the same functions
// the kernel's threads call, so the CPU tests check the kernel's indexing and
// transforms without a GPU. Test hooks only; the CPU's own pipelines are
// conv_cpu.cpp and lane_pipeline.cpp.
#include "testing/small_plane_emulation.h"

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <vector>

#include "conv/kernel_spectrum.h"
#include "cuda/small_plane/backward.h"
#include "cuda/small_plane/forward.h"

namespace fftconv {
namespace small_plane {
namespace {

// Items 0..n-1, in reverse when `reverse`: the results must not depend on the
// order (threads of a phase run in any order), which a race would break.
template <typename F>
void for_items(int n, bool reverse, F&& f) {
  for (int k = 0; k < n; ++k) f(reverse ? n - 1 - k : k);
}

template <typename T, int NH, int NW>
void emulate(const Geometry& g, const T* src, const Complex<T>* spec, const T* bias, T* dst, bool reverse,
             int32_t* nonfinite) {
  using K = Kernel<T, NH, NW>;
  // Shared memory starts as NaN, so that a read of a slot no phase wrote shows in the output.
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<Complex<T>> shared(static_cast<size_t>(K::shared_elements(g)));
  for (int64_t blk = 0; blk < g.blocks(); ++blk) {
    std::fill(shared.begin(), shared.end(), Complex<T>{nan, nan});
    int64_t c, b0;
    int count;
    K::block_planes(g, blk, c, b0, count);
    Complex<T>* s = shared.data();
    for_items(K::kTwiddles, reverse, [&](int i) { K::fill_twiddle(i, s); });
    bool bad = false;
    for_items(K::load_items(g, count), reverse, [&](int i) { bad |= !is_finite(K::load(g, src, c, b0, i, s)); });
    if (bad && nonfinite != nullptr) *nonfinite = 1;
    for_items(K::row_items(g, count), reverse, [&](int i) { K::rows_forward(g, i, s); });
    for_items(K::column_items(count), reverse, [&](int i) { K::columns(g, spec, c, i, s); });
    for_items(K::out_row_items(g, count), reverse, [&](int i) { K::rows_inverse(g, i, s); });
    for_items(K::store_items(g, count), reverse, [&](int i) { K::store(g, bias, dst, c, b0, i, s); });
  }
}

template <typename T, int NH, int NW>
void emulate_backward(const BackwardGeometry& g, const T* x, const T* grad_out, const Complex<T>* spec, T* gin,
                      T* gw, bool reverse) {
  using K = BackwardKernel<T, NH, NW>;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<Complex<T>> shared(static_cast<size_t>(K::shared_elements(g)));
  std::vector<Complex<T>> partial(static_cast<size_t>(g.blocks() * K::kAcc), Complex<T>{nan, nan});
  for (int64_t blk = 0; blk < g.blocks(); ++blk) {  // launch 1
    std::fill(shared.begin(), shared.end(), Complex<T>{nan, nan});
    Complex<T>* s = shared.data();
    int64_t c, b_begin, b_end;
    K::block_batch(g, blk, c, b_begin, b_end);
    for_items(K::kTwiddles, reverse, [&](int i) { K::fill_twiddle(i, s); });
    for_items(K::kAcc, reverse, [&](int i) { K::zero_acc(i, s); });
    for (int64_t b0 = b_begin; b0 < b_end; b0 += g.planes_per_round) {
      const int count = static_cast<int>(std::min<int64_t>(g.planes_per_round, b_end - b0));
      for_items(K::load_items(g, count), reverse, [&](int i) { K::load(g, x, grad_out, c, b0, count, i, s); });
      for_items(K::row_items(g, count), reverse, [&](int i) { K::rows_forward(g, count, i, s); });
      for_items(K::column_items(count), reverse, [&](int i) { K::columns(g, spec, c, i, s); });
      for_items(K::kAcc, reverse, [&](int i) { K::accumulate(g, count, i, s); });
      for_items(K::gin_row_items(g, count), reverse, [&](int i) { K::gin_rows(g, i, s); });
      for_items(K::store_items(g, count), reverse, [&](int i) { K::store_gin(g, gin, c, b0, i, s); });
    }
    for_items(K::kAcc, reverse, [&](int i) { K::write_partial(blk, i, partial.data(), s); });
  }
  std::vector<Complex<T>> taps_shared(static_cast<size_t>(K::taps_shared_elements()));
  for (int64_t c = 0; c < g.channels; ++c) {  // launch 2
    std::fill(taps_shared.begin(), taps_shared.end(), Complex<T>{nan, nan});
    Complex<T>* s = taps_shared.data();
    for_items(K::kTwiddles, reverse, [&](int i) { K::fill_twiddle(i, s); });
    for_items(K::kAcc, reverse, [&](int i) { K::sum_partials(g, partial.data(), c, i, s); });
    for_items(K::kFreqW, reverse, [&](int i) { K::correlation_columns(i, s); });
    for_items(static_cast<int>(g.ph.tap_count), reverse, [&](int i) { K::taps(g, gw, c, i, s); });
  }
}

}  // namespace

std::vector<int64_t> small_plane_lengths(const ConvGeometry2d& p) {
  const ConvGeometry2d q = pad_to_compiled_lengths(p);
  if (!applies(q)) return {};
  return {q.h.n_fft, q.w.n_fft};
}

namespace {

// What both emulations check: CPU tensors of one dtype, float32 or float64, and
// a problem the kernels take. Returns the geom they run (lengths raised).
ConvGeometry2d emulation_geometry(std::initializer_list<at::Tensor> operands, const ConvGeometry2d& geom) {
  const at::ScalarType dtype = operands.begin()->scalar_type();
  for (const at::Tensor& t : operands) {
    TORCH_CHECK(t.device().is_cpu(), "fftconv: the emulation runs on CPU tensors, got one on ", t.device());
    TORCH_CHECK(t.scalar_type() == dtype && (dtype == at::kFloat || dtype == at::kDouble),
                "fftconv: the emulation takes float32 or float64 operands of one dtype");
  }
  const ConvGeometry2d p = pad_to_compiled_lengths(geom);
  TORCH_CHECK(applies(p), "fftconv: the small-plane kernel does not take this problem");
  return p;
}

void check_planes(const at::Tensor& t, const char* name, int64_t batch, int64_t channels, int64_t h, int64_t w) {
  TORCH_CHECK(t.dim() == 4 && t.size(0) == batch && t.size(1) == channels && t.size(2) == h && t.size(3) == w,
              "fftconv: the emulation's ", name, " must have shape (", batch, ", ", channels, ", ", h, ", ", w,
              "), got ", t.sizes());
}

// The kernel spectrum in the CUDA layout: row-major planes (channels, 1, n_h, n_w/2+1).
at::Tensor cuda_layout_spectrum(const at::Tensor& weight, const ConvGeometry2d& p) {
  return kernel_spectrum(weight.contiguous(), p).transpose(2, 3).contiguous();
}

}  // namespace

at::Tensor emulate_small_plane(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         const ConvGeometry2d& geom, bool adjoint, bool reverse, int64_t shared_bytes,
                         const std::optional<at::Tensor>& nonfinite) {
  const ConvGeometry2d p = emulation_geometry({src, weight}, geom);
  int32_t* flag = nullptr;
  if (nonfinite.has_value() && nonfinite->defined()) {
    TORCH_CHECK(nonfinite->device().is_cpu() && nonfinite->scalar_type() == at::kInt && nonfinite->numel() == 1 &&
                    nonfinite->is_contiguous(),
                "fftconv: the emulation's nonfinite flag must be a CPU int32 tensor of one element, got ",
                nonfinite->scalar_type(), " of ", nonfinite->sizes(), " on ", nonfinite->device());
    flag = nonfinite->data_ptr<int32_t>();
  }
  const int64_t channels = adjoint ? p.c_in : p.c_out;
  check_planes(src, "source", p.batch, channels, adjoint ? p.h.out_len : p.h.in_len,
               adjoint ? p.w.out_len : p.w.in_len);
  const at::Tensor spec = cuda_layout_spectrum(weight, p);
  const at::Tensor x = src.contiguous();
  at::Tensor b;
  if (bias.has_value() && bias->defined()) b = bias->contiguous();
  at::Tensor dst = at::empty({p.batch, channels, adjoint ? p.h.in_len : p.h.out_len,
                              adjoint ? p.w.in_len : p.w.out_len},
                             src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "fftconv_small_plane_emulate", [&] {
    with_lengths(p.h.n_fft, p.w.n_fft, [&](auto L) {
      constexpr int NH = decltype(L)::h, NW = decltype(L)::w;
      const Geometry g = Kernel<scalar_t, NH, NW>::geometry(p, adjoint, shared_bytes > 0 ? shared_bytes : kSharedBytes);
      emulate<scalar_t, NH, NW>(g, x.data_ptr<scalar_t>(), reinterpret_cast<const Complex<scalar_t>*>(spec.data_ptr()),
                                b.defined() ? b.data_ptr<scalar_t>() : nullptr, dst.data_ptr<scalar_t>(), reverse,
                                flag);
    });
  });
  return dst;
}

std::tuple<at::Tensor, at::Tensor> emulate_small_plane_backward(const at::Tensor& grad_out, const at::Tensor& input,
                                                          const at::Tensor& weight, const ConvGeometry2d& geom,
                                                          bool input_grad, bool reverse, int64_t shared_bytes,
                                                          int64_t target_blocks) {
  const ConvGeometry2d p = emulation_geometry({grad_out, input, weight}, geom);
  check_planes(input, "input", p.batch, p.c_in, p.h.in_len, p.w.in_len);
  check_planes(grad_out, "grad_output", p.batch, p.c_out, p.h.out_len, p.w.out_len);
  const at::Tensor spec = cuda_layout_spectrum(weight, p);
  const at::Tensor x = input.contiguous(), go = grad_out.contiguous();
  at::Tensor gin = input_grad ? at::empty_like(x) : at::Tensor();
  at::Tensor gw = at::zeros_like(weight);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fftconv_small_plane_emulate_backward", [&] {
    with_lengths(p.h.n_fft, p.w.n_fft, [&](auto L) {
      constexpr int NH = decltype(L)::h, NW = decltype(L)::w;
      const BackwardGeometry g = BackwardKernel<scalar_t, NH, NW>::geometry(
          p, input_grad, shared_bytes > 0 ? shared_bytes : kBackwardSharedBytes, target_blocks);
      emulate_backward<scalar_t, NH, NW>(g, x.data_ptr<scalar_t>(), go.data_ptr<scalar_t>(),
                                         reinterpret_cast<const Complex<scalar_t>*>(spec.data_ptr()),
                                         input_grad ? gin.data_ptr<scalar_t>() : nullptr, gw.data_ptr<scalar_t>(),
                                         reverse);
    });
  });
  return {gin, gw};
}

}  // namespace small_plane
}  // namespace fftconv
