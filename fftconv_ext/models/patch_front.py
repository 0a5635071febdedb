"""The front end FiT and ViT share: convolutional patch embedding, a CLS token,
and a learned position embedding resized when the input resolution differs
from the one the model was built for."""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class PatchFrontEnd(nn.Module):
    """Image ``(B, C, H, W)`` -> tokens ``(B, 1 + H/p * W/p, D)``, CLS first."""

    def __init__(self, img_size, patch_size, embed_dim: int, in_chans: int = 3, dropout: float = 0.0):
        super().__init__()
        self.img_size, self.patch_size = _pair(img_size), _pair(patch_size)
        for name, v in (("img_size", self.img_size), ("patch_size", self.patch_size)):
            if min(v) < 1:
                raise ValueError(f"{name} must be positive, got {v}")
        self.grid = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        if min(self.grid) < 1:
            raise ValueError(f"img_size {self.img_size} is smaller than patch_size {self.patch_size}")
        self.proj = nn.Conv2d(in_chans, embed_dim, self.patch_size, stride=self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], embed_dim))
        self.drop = nn.Dropout(dropout)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def num_tokens(self, h: int, w: int) -> int:
        return 1 + (h // self.patch_size[0]) * (w // self.patch_size[1])

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """The learned embedding for a (grid_h, grid_w) patch grid: bicubic
        interpolation of the grid part when it differs from the built one."""
        if (grid_h, grid_w) == self.grid:
            return self.pos_embed
        cls_pos, grid_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        d = grid_pos.shape[-1]
        grid_pos = grid_pos.reshape(1, self.grid[0], self.grid[1], d).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, grid_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, d)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[-2] < self.patch_size[0] or x.shape[-1] < self.patch_size[1]:
            raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than patch_size {self.patch_size}")
        x = self.proj(x)  # (B, D, gh, gw)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.position_embedding(gh, gw)
        return self.drop(x)


def init_linear_layers(module: nn.Module) -> None:
    """Truncated-normal weights and zero biases for Linear layers, unit/zero LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["PatchFrontEnd", "init_linear_layers", "count_parameters"]
