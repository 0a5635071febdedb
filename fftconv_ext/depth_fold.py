"""A 3-D correlation as a 2-D one of the fused operator: depth folded into height.

Each depth slice of the input, followed by a gap of zero rows, is laid end to end
along the height axis, and the kernel is laid out the same way with the slice
pitch between its depth taps (docs/design.md §19). The 2-D correlation of the two
has, at row ``d * P + h``, output ``(d, h)`` of the 3-D correlation: a tap never
reaches across a slice boundary into data, because the gap is at least the
height padding on either side. The 2-D operator never materialises the kernel's
zero rows in the time domain beyond one transform (its spectrum is cached), and
its FFT along the folded axis has about ``depth x pitch`` points, close to the
product of the alias-free lengths of a 3-D transform; every other property of the
operator (tap cropping along the folded axis and width, the chunked pipeline,
the spectrum cache, CUDA pipelines, autograd formulas) carries over as it is.

The fold is linear and made of pads, reshapes and slices, so autograd derives the
gradients of conv3d, and conv_transpose3d (the adjoint) runs the operator's
input-gradient op on the folded problem.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from ._shapes import output_length


class DepthFold:
    """The folded 2-D problem of a 3-D correlation.

    Args:
        spatial: input (D, H, W).
        kernel: (kD, kH, kW).
        pads: ((front, back), (top, bottom), (left, right)) zero padding.
        stride, dilation: per axis (D, H, W).
    """

    def __init__(self, spatial: Sequence[int], kernel: Sequence[int], pads, stride: Sequence[int],
                 dilation: Sequence[int]):
        (depth, height, width), (k_d, k_h, k_w) = spatial, kernel
        (p_front, p_back), (p_top, p_bottom), (p_left, p_right) = pads
        s_d, s_h, s_w = stride
        d_d, d_h, d_w = dilation
        self.spatial, self.kernel = tuple(spatial), tuple(kernel)
        self.out_spatial = tuple(output_length(n, k, pl, pr, s, d) for n, k, (pl, pr), s, d in
                                 zip(spatial, kernel, pads, stride, dilation))
        out_h = self.out_spatial[1]
        # slice pitch: room for the height padding on either side, for every output row of a
        # slice, and a multiple of the height stride and dilation so that depth steps are
        # whole steps of the folded axis
        step = s_h * d_h // math.gcd(s_h, d_h)
        pitch = max(height + max(p_top, p_bottom), out_h * s_h, 1)
        self.pitch = -(-pitch // step) * step
        self.tap_pitch = d_d * self.pitch // d_h   # folded kernel rows between depth taps
        self.out_pitch = s_d * self.pitch // s_h   # folded output rows between output slices
        self.folded_kernel = ((k_d - 1) * self.tap_pitch + k_h, k_w)
        self.folded_spatial = (depth * self.pitch, width)
        self.stride2 = [s_h, s_w]
        self.dilation2 = [d_h, d_w]
        self.padding4 = [p_front * self.pitch + p_top, p_back * self.pitch, p_left, p_right]
        self.folded_out = (output_length(self.folded_spatial[0], self.folded_kernel[0], self.padding4[0],
                                         self.padding4[1], s_h, d_h),
                           self.out_spatial[2])

    # ---- the correlation: input and weight folded, output unfolded
    def fold_input(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, D, H, W) -> (N, C, D * pitch, W): each slice followed by its zero gap."""
        n, c, depth, height, width = x.shape
        x = F.pad(x, (0, 0, 0, self.pitch - height))
        return x.reshape(n, c, depth * self.pitch, width)

    def fold_weight(self, w: torch.Tensor) -> torch.Tensor:
        """(O, I, kD, kH, kW) -> (O, I, (kD - 1) * tap_pitch + kH, kW), zeros between depth taps.

        A kernel taller than the pitch (kernels over twice the map) folds taps of adjacent depths
        onto one row; they are summed. Such a row is only ever read where one of the two taps
        reads padding in 3-D, which is a zero of the folded input too (a gap row), so the sum
        is exact."""
        o, i, k_d, k_h, k_w = w.shape
        if self.tap_pitch >= k_h:
            w = F.pad(w, (0, 0, 0, self.tap_pitch - k_h))
            return w.reshape(o, i, k_d * self.tap_pitch, k_w)[:, :, :self.folded_kernel[0]]
        rows = (torch.arange(k_d, device=w.device)[:, None] * self.tap_pitch +
                torch.arange(k_h, device=w.device)[None, :]).reshape(-1)
        folded = w.new_zeros((o, i, self.folded_kernel[0], k_w))
        return folded.index_add(2, rows, w.reshape(o, i, k_d * k_h, k_w))

    def unfold_weight(self, w: torch.Tensor) -> torch.Tensor:
        """Adjoint of fold_weight (a weight gradient's way back): (O, I, folded rows, kW) ->
        (O, I, kD, kH, kW), each tap's row read (rows shared by two taps go to both)."""
        k_d, k_h, _ = self.kernel
        o, i, _, k_w = w.shape
        if self.tap_pitch >= k_h:
            w = F.pad(w, (0, 0, 0, k_d * self.tap_pitch - w.shape[2]))
            return w.reshape(o, i, k_d, self.tap_pitch, k_w)[:, :, :, :k_h]
        rows = (torch.arange(k_d, device=w.device)[:, None] * self.tap_pitch +
                torch.arange(k_h, device=w.device)[None, :]).reshape(-1)
        return w.index_select(2, rows).reshape(o, i, k_d, k_h, k_w)

    def unfold_output(self, y: torch.Tensor) -> torch.Tensor:
        """The folded correlation's output (N, O, rows, W') -> (N, O, D', H', W')."""
        d_out, h_out, _ = self.out_spatial
        y = self._rows(y, d_out * self.out_pitch)
        n, o = y.shape[:2]
        return y.reshape(n, o, d_out, self.out_pitch, y.shape[-1])[:, :, :, :h_out]

    # ---- the adjoints, for the transposed convolution
    def fold_output(self, g: torch.Tensor) -> torch.Tensor:
        """Adjoint of unfold_output: (N, O, D', H', W') -> (N, O, folded rows, W'), zeros between."""
        n, o, d_out, h_out, w_out = g.shape
        g = F.pad(g, (0, 0, 0, self.out_pitch - h_out)).reshape(n, o, d_out * self.out_pitch, w_out)
        return self._rows(g, self.folded_out[0])

    def unfold_input(self, y: torch.Tensor) -> torch.Tensor:
        """Adjoint of fold_input: (N, C, D * pitch, W) -> (N, C, D, H, W), the gaps dropped."""
        depth, height, width = self.spatial
        n, c = y.shape[:2]
        return y.reshape(n, c, depth, self.pitch, width)[:, :, :, :height]

    def folded_input_size(self, n: int, c: int) -> Tuple[int, int, int, int]:
        return (n, c) + self.folded_spatial

    @staticmethod
    def _rows(t: torch.Tensor, rows: int) -> torch.Tensor:
        """t with exactly `rows` rows along dim 2: the extra ones (never read) dropped, or zeros added."""
        have = t.shape[2]
        if have > rows:
            return t[:, :, :rows]
        if have < rows:
            return F.pad(t, (0, 0, 0, rows - have))
        return t
