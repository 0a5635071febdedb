// The fused small-plane kernels with n_h = 32 (small_plane_kernel.cuh).
#include "small_plane_kernel.cuh"

FFTCONV_SMALL_PLANE_INSTANTIATE(32)
