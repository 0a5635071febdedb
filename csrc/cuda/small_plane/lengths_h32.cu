// The small-plane kernels with n_h = 32 (small_plane/kernel.cuh).
#include "cuda/small_plane/kernel.cuh"

FFTCONV_SMALL_PLANE_INSTANTIATE(32)
