"""Model definitions: RepLKNet, ConvNeXt, FiT (Fourier image transformer) and ViT.

    >>> import fftconv_ext
    >>> fftconv_ext.models.list_models()
    ['convnext_small', 'convnext_tiny', 'fit_base', ...]
    >>> model = fftconv_ext.models.create_model("fit_tiny", num_classes=10, img_size=32, patch_size=4)

As in timm, a model is made by name with its constructor's keyword arguments.
Nothing is downloaded: the convolutional models take ``checkpoint=`` (a local path).
"""
from __future__ import annotations

import fnmatch
from typing import Callable, Dict, List

from torch import nn

from .convnext import ConvNeXt, convnext_small, convnext_tiny
from .fit import FIT_CONFIGS, FiT, fit_base, fit_small, fit_tiny
from .layers import DropPath, LayerNorm2d, Mlp
from .replknet import RepLKNet, RepLKNetConfig, replknet_31b, replknet_31l
from .vit import VIT_CONFIGS, ViT, vit_base, vit_small, vit_tiny

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {
    fn.__name__: fn for fn in (convnext_tiny, convnext_small, replknet_31b, replknet_31l,
                               fit_tiny, fit_small, fit_base, vit_tiny, vit_small, vit_base)}

# the transformers: image size, patch size and width are constructor arguments
TRANSFORMERS = tuple(name for name in _REGISTRY if name.startswith(("fit_", "vit_")))


def list_models(pattern: str = "*") -> List[str]:
    """Names of the models ``create_model`` makes, sorted, filtered by a shell-style pattern."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **kwargs) -> nn.Module:
    """The model ``name`` (one of ``list_models()``) built with ``kwargs``."""
    if name not in _REGISTRY:
        raise ValueError(f"create_model: unknown model {name!r}; expected one of {list_models()}")
    return _REGISTRY[name](**kwargs)


__all__ = ["list_models", "create_model", "TRANSFORMERS", "ConvNeXt", "convnext_tiny", "convnext_small", "RepLKNet",
           "RepLKNetConfig", "replknet_31b", "replknet_31l", "FiT", "fit_tiny", "fit_small", "fit_base",
           "FIT_CONFIGS", "ViT", "vit_tiny", "vit_small", "vit_base", "VIT_CONFIGS", "DropPath", "Mlp",
           "LayerNorm2d"]
