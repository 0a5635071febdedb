"""ViT baseline for FiT: the same front end, pre-norm self-attention blocks through
F.scaled_dot_product_attention, final LayerNorm and a linear head on the CLS token."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Mlp
from .patch_front import PatchFrontEnd, init_linear_layers


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed_dim {dim} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class AttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision transformer; ``forward(images) -> logits``."""

    def __init__(self, img_size=224, patch_size=16, num_classes=1000, embed_dim=768, depth=12, heads=12,
                 mlp_dim=3072, in_chans=3, dropout=0.0):
        super().__init__()
        self.front = PatchFrontEnd(img_size, patch_size, embed_dim, in_chans, dropout)
        self.blocks = nn.Sequential(*[AttentionBlock(embed_dim, heads, mlp_dim, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        init_linear_layers(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.front(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    heads: int
    mlp_dim: int


VIT_CONFIGS = {
    "vit_tiny": ViTConfig(embed_dim=192, depth=12, heads=3, mlp_dim=768),
    "vit_small": ViTConfig(embed_dim=384, depth=12, heads=6, mlp_dim=1536),
    "vit_base": ViTConfig(embed_dim=768, depth=12, heads=12, mlp_dim=3072),
}


def _build(name, **kwargs) -> ViT:
    cfg = VIT_CONFIGS[name]
    args = dict(embed_dim=cfg.embed_dim, depth=cfg.depth, heads=cfg.heads, mlp_dim=cfg.mlp_dim)
    args.update(kwargs)
    return ViT(**args)


def vit_tiny(**kwargs) -> ViT:
    return _build("vit_tiny", **kwargs)


def vit_small(**kwargs) -> ViT:
    return _build("vit_small", **kwargs)


def vit_base(**kwargs) -> ViT:
    """D 768, 12 heads, MLP 3072, depth 12."""
    return _build("vit_base", **kwargs)
