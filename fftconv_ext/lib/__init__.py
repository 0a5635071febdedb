"""The operator library (libfftconv_ops*.so): the kernels and their torch.ops.fftconv registrations, without Python; see fftconv_ext.library_path()."""
