"""RepLKNet (Ding et al., "Scaling Up Your Kernels to 31x31", CVPR 2022), written
from the paper's description: a stem, four stages of (RepLK block, ConvFFN)
pairs with depthwise kernels 31/29/27/13 and a parallel 5x5 branch, and
transitions that halve the resolution.

``model.structural_reparam()`` merges, in every large-kernel unit, the batch
norms and the small-kernel branch into one large kernel with a bias: the
inference form whose large convolutions ``fftconv_ext.convert`` sends to the FFT.
Nothing is downloaded: pass ``checkpoint=`` a path to load a state_dict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropPath


@dataclass(frozen=True)
class RepLKNetConfig:
    channels: Tuple[int, ...] = (128, 256, 512, 1024)
    layers: Tuple[int, ...] = (2, 2, 18, 2)
    large_kernels: Tuple[int, ...] = (31, 29, 27, 13)
    small_kernel: int = 5
    dw_ratio: float = 1.0
    ffn_ratio: int = 4
    drop_path: float = 0.0


CONFIGS = {
    "31B": RepLKNetConfig(channels=(128, 256, 512, 1024)),
    "31L": RepLKNetConfig(channels=(192, 384, 768, 1536)),
}


def conv_bn(cin, cout, k, stride=1, groups=1, relu=False) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one convolution equal to conv followed by bn (eval statistics)."""
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale.view(-1, 1, 1, 1), bias


class ReparamLargeKernelConv(nn.Module):
    """Depthwise large kernel + BN in parallel with a small kernel + BN; after
    ``reparam()`` one large depthwise convolution with bias."""

    def __init__(self, channels: int, kernel: int, small_kernel: int):
        super().__init__()
        self.kernel, self.small_kernel = kernel, small_kernel
        self.large = conv_bn(channels, channels, kernel, groups=channels)
        self.small = conv_bn(channels, channels, small_kernel, groups=channels) if small_kernel else None
        self.fused: Optional[nn.Conv2d] = None

    def forward(self, x):
        if self.fused is not None:
            return self.fused(x)
        out = self.large(x)
        return out + self.small(x) if self.small is not None else out

    @torch.no_grad()
    def reparam(self) -> None:
        w, b = fuse_conv_bn(self.large[0], self.large[1])
        if self.small is not None:
            ws, bs = fuse_conv_bn(self.small[0], self.small[1])
            pad = (self.kernel - self.small_kernel) // 2
            w = w + F.pad(ws, [pad] * 4)  # centred: both branches use 'same' padding
            b = b + bs
        conv = nn.Conv2d(w.shape[0], w.shape[0], self.kernel, padding=self.kernel // 2, groups=w.shape[0],
                         bias=True, device=w.device, dtype=w.dtype)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        self.fused = conv
        self.large, self.small = None, None


class RepLKBlock(nn.Module):
    def __init__(self, channels: int, dw_channels: int, kernel: int, small_kernel: int, drop_path: float):
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(channels)
        self.pw1 = conv_bn(channels, dw_channels, 1, relu=True)
        self.large_kernel = ReparamLargeKernelConv(dw_channels, kernel, small_kernel)
        self.act = nn.ReLU()
        self.pw2 = conv_bn(dw_channels, channels, 1)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        return x + self.drop_path(self.pw2(self.act(self.large_kernel(self.pw1(self.pre_bn(x))))))


class ConvFFN(nn.Module):
    def __init__(self, channels: int, hidden: int, drop_path: float):
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(channels)
        self.pw1 = conv_bn(channels, hidden, 1)
        self.act = nn.GELU()
        self.pw2 = conv_bn(hidden, channels, 1)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        return x + self.drop_path(self.pw2(self.act(self.pw1(self.pre_bn(x)))))


class RepLKNet(nn.Module):
    def __init__(self, config: RepLKNetConfig = CONFIGS["31B"], num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        c = config.channels
        self.stem = nn.Sequential(
            conv_bn(in_chans, c[0], 3, stride=2, relu=True),
            conv_bn(c[0], c[0], 3, groups=c[0], relu=True),
            conv_bn(c[0], c[0], 1, relu=True),
            conv_bn(c[0], c[0], 3, stride=2, groups=c[0], relu=True),
        )
        total = sum(config.layers)
        rates = [config.drop_path * i / max(total - 1, 1) for i in range(total)]
        self.stages, self.transitions = nn.ModuleList(), nn.ModuleList()
        depth = 0
        for i, (ch, n, k) in enumerate(zip(c, config.layers, config.large_kernels)):
            blocks = []
            for _ in range(n):
                blocks.append(RepLKBlock(ch, int(ch * config.dw_ratio), k, config.small_kernel, rates[depth]))
                blocks.append(ConvFFN(ch, ch * config.ffn_ratio, rates[depth]))
                depth += 1
            self.stages.append(nn.Sequential(*blocks))
            if i + 1 < len(c):
                self.transitions.append(nn.Sequential(conv_bn(ch, c[i + 1], 1, relu=True),
                                                      conv_bn(c[i + 1], c[i + 1], 3, stride=2, groups=c[i + 1],
                                                              relu=True)))
        self.norm = nn.BatchNorm2d(c[-1])
        self.head = nn.Linear(c[-1], num_classes)

    def forward_features(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        return x

    def forward(self, x):
        x = self.norm(self.forward_features(x))
        return self.head(x.mean((2, 3)))

    def structural_reparam(self) -> "RepLKNet":
        """Merge BN and the small-kernel branch into each large kernel (inference form)."""
        for m in self.modules():
            if isinstance(m, ReparamLargeKernelConv):
                m.reparam()
        return self


def _build(name: str, num_classes: int, checkpoint: Optional[str], **overrides) -> RepLKNet:
    cfg = CONFIGS[name]
    if overrides:
        cfg = RepLKNetConfig(**{**cfg.__dict__, **overrides})
    model = RepLKNet(cfg, num_classes=num_classes)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    return model


def replknet_31b(num_classes: int = 1000, checkpoint: Optional[str] = None, **overrides) -> RepLKNet:
    """RepLKNet-31B: channels 128/256/512/1024, layers 2/2/18/2, kernels 31/29/27/13, small kernel 5."""
    return _build("31B", num_classes, checkpoint, **overrides)


def replknet_31l(num_classes: int = 1000, checkpoint: Optional[str] = None, **overrides) -> RepLKNet:
    """RepLKNet-31L: channels 192/384/768/1536, otherwise as 31B."""
    return _build("31L", num_classes, checkpoint, **overrides)
