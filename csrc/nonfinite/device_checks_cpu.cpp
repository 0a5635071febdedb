// The device checks' stages on the CPU (device_check_ops.h). The CPU's own
// forward checks on the host (a sum read back costs nothing there); these run
// when FFTCONV_DEVICE_CHECKS=1, which is how the tests exercise the path the
// CUDA forward takes by default.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <atomic>

#include "nonfinite/device_check_ops.h"

namespace fftconv {

void flag_cpu(const at::Tensor& a, const at::Tensor* b, at::Tensor& flag) {
  std::atomic<bool> any{false};
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "fftconv_flag", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b != nullptr ? b->data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, a.numel(), int64_t(1) << 16, [&](int64_t begin, int64_t end) {
      bool found = false;
      for (int64_t i = begin; i < end && !found; ++i) found = flags_element(pa, pb, i);
      if (found) any.store(true, std::memory_order_relaxed);
    });
  });
  if (any.load()) flag.fill_(1);
}

void direct_where_flagged_cpu(const at::Tensor& flags, const DirectProblem& d, const at::Tensor& x,
                              const at::Tensor& w, const at::Tensor& bias, at::Tensor& out) {
  const int32_t* f = flags.data_ptr<int32_t>();
  if (f[0] == 0 && f[1] == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fftconv_direct_where_flagged", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pw = w.data_ptr<scalar_t>();
    const scalar_t* pbias = bias.defined() ? bias.data_ptr<scalar_t>() : nullptr;
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, d.outputs(), 256, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = direct_output(d, px, pw, pbias, i);
    });
  });
}

}  // namespace fftconv
