"""Model definitions used by the benchmarks and the conversion tests."""
from .convnext import ConvNeXt, convnext_small, convnext_tiny
from .replknet import RepLKNet, RepLKNetConfig, replknet_31b, replknet_31l

__all__ = ["ConvNeXt", "convnext_tiny", "convnext_small", "RepLKNet", "RepLKNetConfig", "replknet_31b",
           "replknet_31l"]
