"""Benchmarks of fftconv_ext (``python -m fftconv_ext.bench``)."""
