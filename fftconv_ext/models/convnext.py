"""ConvNeXt (Liu et al., "A ConvNet for the 2020s", CVPR 2022), written from the
paper's description: a 4x4 patchify stem, stages of blocks (7x7 depthwise
convolution, LayerNorm, 4x MLP, layer scale, residual) and LayerNorm + 2x2
stride-2 downsampling between stages.

``token_mixer`` replaces the 7x7 depthwise convolution: a callable
``(channels) -> nn.Module`` keeping the (N, C, H, W) shape, e.g. a long-kernel
layer. Nothing is downloaded: pass ``checkpoint=`` a path to load a state_dict.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropPath, LayerNorm2d


def depthwise7(channels: int) -> nn.Module:
    return nn.Conv2d(channels, channels, 7, padding=3, groups=channels)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, drop_path: float, layer_scale: float, token_mixer: Callable[[int], nn.Module]):
        super().__init__()
        self.dwconv = token_mixer(dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim)) if layer_scale > 0 else None
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class ConvNeXt(nn.Module):
    def __init__(self, depths: Sequence[int] = (3, 3, 9, 3), dims: Sequence[int] = (96, 192, 384, 768),
                 num_classes: int = 1000, in_chans: int = 3, drop_path: float = 0.0, layer_scale: float = 1e-6,
                 token_mixer: Callable[[int], nn.Module] = depthwise7):
        super().__init__()
        self.downsample = nn.ModuleList([nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, stride=4),
                                                       LayerNorm2d(dims[0], eps=1e-6))])
        for i in range(len(dims) - 1):
            self.downsample.append(nn.Sequential(LayerNorm2d(dims[i], eps=1e-6),
                                                 nn.Conv2d(dims[i], dims[i + 1], 2, stride=2)))
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        k = 0
        for d, dim in zip(depths, dims):
            self.stages.append(nn.Sequential(*[ConvNeXtBlock(dim, rates[k + j], layer_scale, token_mixer)
                                               for j in range(d)]))
            k += d
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        for down, stage in zip(self.downsample, self.stages):
            x = stage(down(x))
        return self.norm(x.mean((2, 3)))

    def forward(self, x):
        return self.head(self.forward_features(x))


def _load(model: nn.Module, checkpoint: Optional[str]) -> nn.Module:
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    return model


def convnext_tiny(num_classes: int = 1000, checkpoint: Optional[str] = None, **kw) -> ConvNeXt:
    """ConvNeXt-T: depths 3/3/9/3, dims 96/192/384/768."""
    return _load(ConvNeXt((3, 3, 9, 3), (96, 192, 384, 768), num_classes, **kw), checkpoint)


def convnext_small(num_classes: int = 1000, checkpoint: Optional[str] = None, **kw) -> ConvNeXt:
    """ConvNeXt-S: depths 3/3/27/3, dims 96/192/384/768."""
    return _load(ConvNeXt((3, 3, 27, 3), (96, 192, 384, 768), num_classes, **kw), checkpoint)
