#include "testing/whole_plane_emulation.h"

#include <ATen/Dispatch.h>

#include <algorithm>

#include "conv/kernel_spectrum.h"
#include "cuda/whole_plane.h"

namespace fftconv {
namespace {

template <typename T>
void run(const at::Tensor& src, const at::Tensor& spec, const T* bias, at::Tensor& dst, const ConvGeometry2d& p,
         bool adjoint, int64_t batch_block, int64_t group_block) {
  const DirectionSides sides = direction_sides(p, adjoint);
  const PlaneSource& s = sides.src;
  const int64_t spg = sides.spg, dpg = sides.dpg, dst_c = sides.dst_c;
  const int64_t out_h = sides.out_h, out_w = sides.out_w, step_h = sides.step_h, step_w = sides.step_w;
  const int64_t n_h = p.h.n_fft, n_w = p.w.n_fft, nfw = p.n_freq_w;
  const auto* spec_ptr = reinterpret_cast<const Complex<T>*>(spec.data_ptr());
  const T* src_ptr = src.data_ptr<T>();
  T* dst_ptr = dst.data_ptr<T>();
  for (int64_t b0 = 0; b0 < p.batch; b0 += batch_block) {
    const int64_t nb = std::min(batch_block, p.batch - b0);
    for (int64_t g0 = 0; g0 < p.groups; g0 += group_block) {
      const int64_t ng = std::min(group_block, p.groups - g0);
      const int64_t src_planes = nb * ng * spg, dst_planes = nb * ng * dpg;
      at::Tensor real = at::empty({src_planes, n_h, n_w}, src.options());
      T* rp = real.data_ptr<T>();
      for (int64_t L = 0; L < src_planes * n_h; ++L)
        for (int64_t m = 0; m < n_w; ++m)
          rp[L * n_w + m] = whole_plane::pad_value<T, int64_t>(src_ptr, s, b0, g0 * s.planes_per_group,
                                                               ng * s.planes_per_group, n_h, L, m);
      const at::Tensor x = at::fft_rfft2(real).contiguous();  // cuFFT's R2C: unnormalised
      at::Tensor y = at::empty({dst_planes, n_h, nfw}, x.options());
      const auto* xp = reinterpret_cast<const Complex<T>*>(x.data_ptr());
      auto* yp = reinterpret_cast<Complex<T>*>(y.data_ptr());
      for (int64_t L = 0; L < dst_planes * n_h; ++L)
        for (int64_t f = 0; f < nfw; ++f)
          yp[L * nfw + f] = whole_plane::product<T, int64_t>(xp, spec_ptr, ng, g0, p.cpg, p.opg, n_h, nfw, adjoint,
                                                             L, f);
      // cuFFT's C2R: unnormalised (the kernel spectrum carries 1/(n_h*n_w))
      const at::Tensor r = at::fft_irfft2(y, std::vector<int64_t>{n_h, n_w}, {-2, -1}, "forward").contiguous();
      const T* buf = r.data_ptr<T>();
      // crop + bias as crop_store_kernel with the plane-major steps (n_h * n_w, n_w)
      for (int64_t q = 0; q < dst_planes; ++q) {
        const int64_t per_batch = ng * dpg, qb = q / per_batch;
        const int64_t b = b0 + qb, c = g0 * dpg + (q - qb * per_batch);
        const T bias_c = bias ? bias[c] : T(0);
        for (int64_t i = 0; i < out_h; ++i)
          for (int64_t j = 0; j < out_w; ++j)
            dst_ptr[((b * dst_c + c) * out_h + i) * out_w + j] =
                crop_store_value(buf + q * n_h * n_w, n_w, step_h, step_w, i, j, bias_c);
      }
    }
  }
}

}  // namespace

at::Tensor emulate_whole_plane(const at::Tensor& src, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                               const ConvGeometry2d& p, bool adjoint, int64_t batch_block, int64_t group_block) {
  TORCH_CHECK(src.device().is_cpu() && weight.device().is_cpu(), "emulate_whole_plane: CPU tensors");
  TORCH_CHECK(batch_block > 0 && group_block > 0, "emulate_whole_plane: blocks must be positive");
  TORCH_CHECK(!p.h.circular, "emulate_whole_plane: zero padding only");
  const at::Tensor x = src.contiguous();
  // the CUDA layout: row-major planes (C_out, C_in/groups, n_h, n_w/2+1)
  const at::Tensor spec = kernel_spectrum(weight.contiguous(), p).transpose(2, 3).contiguous();
  const DirectionSides sides = direction_sides(p, adjoint);
  at::Tensor dst = at::empty({p.batch, sides.dst_c, sides.out_h, sides.out_w}, x.options());
  at::Tensor b;
  if (bias && bias->defined()) b = bias->contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulate_whole_plane", [&] {
    run<scalar_t>(x, spec, b.defined() ? b.data_ptr<scalar_t>() : nullptr, dst, p, adjoint, batch_block,
                  group_block);
  });
  return dst;
}

}  // namespace fftconv
