"""Model definitions used by the benchmarks, the conversion tests and training."""
from .convnext import ConvNeXt, convnext_small, convnext_tiny
from .fit import FIT_CONFIGS, FiT, fit_base, fit_small, fit_tiny
from .replknet import RepLKNet, RepLKNetConfig, replknet_31b, replknet_31l
from .vit import VIT_CONFIGS, ViT, vit_base, vit_small, vit_tiny

MODELS = {
    "fit_tiny": fit_tiny, "fit_small": fit_small, "fit_base": fit_base,
    "vit_tiny": vit_tiny, "vit_small": vit_small, "vit_base": vit_base,
}

__all__ = ["ConvNeXt", "convnext_tiny", "convnext_small", "RepLKNet", "RepLKNetConfig", "replknet_31b",
           "replknet_31l", "FiT", "fit_tiny", "fit_small", "fit_base", "FIT_CONFIGS", "ViT", "vit_tiny",
           "vit_small", "vit_base", "VIT_CONFIGS", "MODELS"]
