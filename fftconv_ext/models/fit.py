"""FiT: an image transformer whose token mixer is FNet's parameter-free Fourier
transform, Re(FFT2) over (tokens, hidden), computed by fftconv_ext.fourier_mix.

Blocks are post-norm as in FNet: ``h = LN(x + M(x))``, ``out = LN(h + MLP(h))``.
The CLS token is read out through ``Linear(D, D) + tanh`` (a pooler) and a
linear classifier.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.fourier_mix import FourierMix
from .layers import Mlp
from .patch_front import PatchFrontEnd, init_linear_layers


class FourierBlock(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.mix = FourierMix("backward")
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x + self.mix(x))
        return self.norm2(h + self.mlp(h))


class FiT(nn.Module):
    """Fourier image transformer; ``forward(images) -> logits``."""

    def __init__(self, img_size=224, patch_size=16, num_classes=1000, embed_dim=768, depth=12, mlp_dim=2048,
                 in_chans=3, dropout=0.0):
        super().__init__()
        self.front = PatchFrontEnd(img_size, patch_size, embed_dim, in_chans, dropout)
        self.blocks = nn.Sequential(*[FourierBlock(embed_dim, mlp_dim, dropout) for _ in range(depth)])
        self.pooler = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh())
        self.head = nn.Linear(embed_dim, num_classes)
        init_linear_layers(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.front(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooler(self.forward_features(x)[:, 0]))


@dataclass(frozen=True)
class FiTConfig:
    embed_dim: int
    depth: int
    mlp_dim: int


FIT_CONFIGS = {
    "fit_tiny": FiTConfig(embed_dim=192, depth=12, mlp_dim=768),
    "fit_small": FiTConfig(embed_dim=384, depth=12, mlp_dim=1536),
    "fit_base": FiTConfig(embed_dim=768, depth=12, mlp_dim=2048),  # the report's model
}


def _build(name, **kwargs) -> FiT:
    cfg = FIT_CONFIGS[name]
    args = dict(embed_dim=cfg.embed_dim, depth=cfg.depth, mlp_dim=cfg.mlp_dim)
    args.update(kwargs)
    return FiT(**args)


def fit_tiny(**kwargs) -> FiT:
    return _build("fit_tiny", **kwargs)


def fit_small(**kwargs) -> FiT:
    return _build("fit_small", **kwargs)


def fit_base(**kwargs) -> FiT:
    """D 768, MLP 2048, depth 12 (the report's FiT)."""
    return _build("fit_base", **kwargs)
