// The schemas of the torch.ops.fftconv namespace, one place for every
// operator this extension defines. Each backend registers its kernels where
// they live (TORCH_LIBRARY_IMPL in cpu/conv_cpu.cpp, cuda/conv_cuda.cu,
// fourier_mix/, conv/long_conv1d.cpp); fake kernels and autograd are
// registered in Python (fftconv_ext/_ops.py).
#include <torch/library.h>

namespace fftconv {

TORCH_LIBRARY(fftconv, m) {
  // padding is (top, bottom, left, right); circular selects circular padding.
  m.def("conv2d_forward(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, "
        "int[] dilation, int groups, bool circular) -> Tensor");
  m.def("conv2d_grad_input(Tensor grad_output, Tensor weight, int[] input_size, int[] stride, "
        "int[] padding, int[] dilation, int groups, bool circular) -> Tensor");
  m.def("conv2d_grad_weight(Tensor grad_output, Tensor input, int[] weight_size, int[] stride, "
        "int[] padding, int[] dilation, int groups, bool circular) -> Tensor");
  // (grad_input, grad_weight) together: one transform of grad_output serves both.
  m.def("conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, int[] stride, int[] padding, "
        "int[] dilation, int groups, bool circular) -> (Tensor, Tensor)");
  m.def("long_conv1d(Tensor u, Tensor k, Tensor? D, bool causal) -> Tensor");
  // Re(FFT2(x)) over the last two dimensions; norm as in torch.fft.
  m.def("fourier_mix(Tensor x, str norm=\"backward\") -> Tensor");
}

}  // namespace fftconv
