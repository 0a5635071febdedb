"""A correlation as the 2-D operator sees it: the one mapping of a 1-, 2- or 3-D problem
onto the arguments of ``torch.ops.fftconv.conv2d_*``.

conv1d is a height-1 conv2d; conv3d is the 2-D correlation of its depth-folded operands
(docs/design.md §19); reflect and replicate padding (and circular padding too wide to wrap
once) pad the input with ``F.pad`` first, leaving a 'valid' correlation, while circular
padding that fits is the operator's own circular correlation (§8). A transposed convolution
is the input gradient of the correlation whose input has the transposed output's size (§18),
so it is described by that correlation too.

``ConvProblem`` is built once per call from checked arguments and owns everything that
depends on this mapping: the operator's arguments (``op_args``), the adapters of input,
weight and output to and from the 2-D shapes, ``run(direction, algorithm, ...)`` (the problem
computed by the FFT operator or by torch's own convolution), the cost model's estimate and
choice per direction, what a choice is keyed by, and where a CUDA pipeline choice is recorded.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from . import _C
from . import _ops  # noqa: F401  (fake kernels and autograd of the ops)
from . import cost_model
from ._shapes import autocast_dtype, output_length, restore, upcast
from .arguments import all_finite, memory_format_of
from .cuda_pipelines import PipelineTarget
from .depth_fold import DepthFold

Pads = Tuple[Tuple[int, int], ...]

_ops_ns = torch.ops.fftconv
DIRECT_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}  # torch.nn.functional per spatial rank
# oneDNN's 1-D and 2-D CPU convolutions (v3) leave their vectorised kernels for a loop 10-20x
# slower per multiply-add when the zero padding of the last axis is wider than a few columns
# (measured: 5 or more on AVX2, 8 or more on AVX-512; a depthwise 11x11 forward at 32x32 takes
# 12.7 ms instead of 0.87): the direct path on the CPU pads wider columns itself first.
DIRECT_CPU_MAX_WIDTH_PAD = 4
RUN_DIRECTIONS = ("forward", "grad_input", "grad_weight", "backward")


@dataclasses.dataclass(frozen=True)
class ConvProblem:
    """A batched correlation: input ``x_shape`` (N, C_in, *spatial), weight ``w_shape``
    (C_out, C_in / groups, *kernel), per-axis ``(left, right)`` padding ``pads``. A transposed
    convolution is described by the correlation it is the adjoint of, with ``transposed`` set
    (its output is this correlation's input); ``bias`` says whether the call has one."""
    dim: int
    x_shape: Tuple[int, ...]
    w_shape: Tuple[int, ...]
    stride: Tuple[int, ...]
    pads: Pads
    dilation: Tuple[int, ...]
    groups: int
    padding_mode: str = "zeros"
    transposed: bool = False
    bias: bool = False

    # derived once, in __post_init__ (no functools.cached_property: its lock stops torch.compile)
    circular: bool = dataclasses.field(init=False, repr=False, compare=False)
    pad_first: bool = dataclasses.field(init=False, repr=False, compare=False)
    fold: Optional[DepthFold] = dataclasses.field(init=False, repr=False, compare=False)
    direct_width_pad: int = dataclasses.field(init=False, repr=False, compare=False)
    _op_args: tuple = dataclasses.field(init=False, repr=False, compare=False)
    _work: Optional[tuple] = dataclasses.field(init=False, repr=False, compare=False)  # work(), once asked

    def __post_init__(self):
        padded = any(p for lr in self.pads for p in lr)
        # the operator's own circular correlation: circular padding of at most the dilated
        # kernel's extent per axis, in 1-D and 2-D (the fold has zero padding only)
        circular = (self.dim < 3 and self.padding_mode == "circular" and padded and
                    all(pl + pr <= d * (k - 1) for (pl, pr), k, d in zip(self.pads, self.kernel, self.dilation)))
        # else any padding but zeros is F.pad first, then a 'valid' correlation
        pad_first = self.padding_mode != "zeros" and padded and not circular
        spatial, pads = self.spatial, tuple(self.pads)
        if pad_first:
            spatial, pads = tuple(n + pl + pr for n, (pl, pr) in zip(spatial, pads)), ((0, 0),) * self.dim
        fold = DepthFold(spatial, self.kernel, pads, self.stride, self.dilation) if self.dim == 3 else None
        n, c = self.x_shape[:2]
        if fold is not None:
            op_args = ((n, c) + fold.folded_spatial, tuple(self.w_shape[:2]) + fold.folded_kernel, fold.stride2,
                       fold.padding4, fold.dilation2, False)
        elif self.dim == 1:
            op_args = ((n, c, 1, spatial[0]), (self.w_shape[0], self.w_shape[1], 1, self.w_shape[2]),
                       [1, self.stride[0]], [0, 0, pads[0][0], pads[0][1]], [1, self.dilation[0]], circular)
        else:
            op_args = ((n, c) + tuple(spatial), tuple(self.w_shape), list(self.stride),
                       [pads[0][0], pads[0][1], pads[1][0], pads[1][1]], list(self.dilation), circular)
        # the direct path's own padding of the last axis on the CPU (DIRECT_CPU_MAX_WIDTH_PAD)
        left, right = pads[-1]
        wide = (self.dim < 3 and self.padding_mode == "zeros" and left == right and left > DIRECT_CPU_MAX_WIDTH_PAD
                and all(pl == pr for pl, pr in pads))
        for name, value in (("circular", circular), ("pad_first", pad_first), ("fold", fold),
                            ("direct_width_pad", left if wide else 0), ("_op_args", op_args), ("_work", None)):
            object.__setattr__(self, name, value)

    @property
    def spatial(self) -> Tuple[int, ...]:
        return tuple(self.x_shape[2:])

    @property
    def kernel(self) -> Tuple[int, ...]:
        return tuple(self.w_shape[2:])

    @property
    def kind(self) -> str:
        """The cost model's kind of this problem's weight ('depthwise 2-D', ...; cost_model.kind)."""
        return cost_model.kind(self.w_shape, self.groups)

    def output_spatial(self) -> Tuple[int, ...]:
        """The correlation's output size per spatial axis."""
        return tuple(output_length(n, k, pl, pr, s, d) for n, (pl, pr), k, d, s in
                     zip(self.spatial, self.pads, self.kernel, self.dilation, self.stride))

    def op_args(self):
        """(input shape, weight shape, stride, padding (top, bottom, left, right), dilation,
        circular) of the 2-D operator; the lists are fresh copies."""
        x4, w4, s2, p4, d2, circular = self._op_args
        return x4, w4, list(s2), list(p4), list(d2), circular

    # ---- operands to and from the operator's 2-D shapes

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """x with the padding that comes before the operator (``pad_first``), else x."""
        if not self.pad_first:
            return x
        return F.pad(x, [p for lr in reversed(self.pads) for p in lr], mode=self.padding_mode)

    def input_2d(self, x: torch.Tensor) -> torch.Tensor:
        """The (padded-first) input as the operator takes it."""
        return self.fold.fold_input(x) if self.fold is not None else self._as_2d(x)

    def weight_2d(self, w: torch.Tensor) -> torch.Tensor:
        return self.fold.fold_weight(w) if self.fold is not None else self._as_2d(w)

    def output_2d(self, g: torch.Tensor) -> torch.Tensor:
        """An output-shaped tensor (an output gradient, a transposed convolution's input)."""
        return self.fold.fold_output(g) if self.fold is not None else self._as_2d(g)

    def output_from_2d(self, y: torch.Tensor) -> torch.Tensor:
        return self.fold.unfold_output(y) if self.fold is not None else self._from_2d(y)

    def input_from_2d(self, t: torch.Tensor) -> torch.Tensor:
        return self.fold.unfold_input(t).contiguous() if self.fold is not None else self._from_2d(t)

    def weight_from_2d(self, t: torch.Tensor) -> torch.Tensor:
        return self.fold.unfold_weight(t).contiguous() if self.fold is not None else self._from_2d(t)

    def _as_2d(self, t: torch.Tensor) -> torch.Tensor:
        return t.unsqueeze(2) if self.dim == 1 else t

    def _from_2d(self, t: torch.Tensor) -> torch.Tensor:
        return t.squeeze(2) if self.dim == 1 else t

    # ---- running the problem

    def run(self, direction: str, algorithm: str, x: Optional[torch.Tensor] = None,
            weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
            grad: Optional[torch.Tensor] = None):
        """The problem in one direction by one algorithm: ``'fft'`` (the operator) or
        ``'direct'`` (``F.conv*`` / ``aten.convolution_backward``).

        ``'forward'``: the output of (x, weight, bias), in the memory format F.conv* gives.
        ``'grad_input'``, ``'grad_weight'``: that gradient for the output gradient ``grad``;
        ``'backward'``: both, ``(grad_input, grad_weight)``, in one joint pass. The gradient
        directions are the correlation's with zero padding (the per-direction training path);
        the FFT path needs only the operand it multiplies (weight for the input gradient, x for
        the weight gradient)."""
        if direction not in RUN_DIRECTIONS:
            raise ValueError(f"direction must be one of {RUN_DIRECTIONS}, got {direction!r}")
        if algorithm not in ("fft", "direct"):
            raise ValueError(f"algorithm must be 'fft' or 'direct', got {algorithm!r}")
        if direction == "forward":
            return self._forward_fft(x, weight, bias) if algorithm == "fft" else self._forward_direct(x, weight, bias)
        if algorithm == "direct":
            mask = [direction != "grad_weight", direction != "grad_input", False]
            gx, gw, _ = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(self.stride), [pl for pl, _ in self.pads], list(self.dilation), False,
                [0] * self.dim, self.groups, mask)
            return {"grad_input": gx, "grad_weight": gw}.get(direction, (gx, gw))
        x4, w4, s2, p4, d2, circular = self.op_args()
        g = self.output_2d(grad)
        if direction == "grad_input":
            return self.input_from_2d(_ops_ns.conv2d_grad_input(g, self.weight_2d(weight), list(x4), s2, p4, d2,
                                                                self.groups, circular))
        if direction == "grad_weight":
            return self.weight_from_2d(_ops_ns.conv2d_grad_weight(g, self.input_2d(x), list(w4), s2, p4, d2,
                                                                  self.groups, circular))
        gx, gw = _ops_ns.conv2d_backward(g, self.input_2d(x), self.weight_2d(weight), s2, p4, d2, self.groups, circular)
        return self.input_from_2d(gx), self.weight_from_2d(gw)

    def _forward_fft(self, x, weight, bias):
        layout = memory_format_of(x)
        x = self.pad_input(x)
        if self.fold is not None and not all_finite(x, weight, bias):
            # the folded problem's own NaN/Inf fallback would spread a NaN over the zero taps between
            # depth taps: F.conv3d puts them where PyTorch does
            if not self.pad_first:
                x = F.pad(x, [p for lr in reversed(self.pads) for p in lr])
            return dataclasses.replace(self, x_shape=tuple(x.shape), pads=((0, 0),) * 3,
                                       padding_mode="zeros")._forward_direct(x, weight, bias)
        _, _, s2, p4, d2, circular = self.op_args()
        # float16/bfloat16 are computed in float32 by the op itself, and returned in their dtype
        y = _ops_ns.conv2d_forward(self.input_2d(x), self.weight_2d(weight), bias, s2, p4, d2, self.groups, circular)
        return self.output_from_2d(y).contiguous(memory_format=layout)

    def _forward_direct(self, x, weight, bias):
        """torch's own convolution (cuDNN / oneDNN), with nn.ConvNd's padding modes."""
        out_dtype = x.dtype
        # as the FFT path, float16/bfloat16 are computed in float32 on the CPU; inside torch.autocast
        # F.conv casts the operands and picks the result's dtype itself
        keep = x.device.type != "cpu" or autocast_dtype(x.device) is not None
        if not keep:
            x, weight, bias = upcast(x, weight, bias)
        padding = [pl for pl, _ in self.pads]
        if any(pl != pr for pl, pr in self.pads) or (self.padding_mode != "zeros" and any(padding)):
            # other modes, and zero padding that differs left and right ('same' with an even
            # kernel: what F.conv does for it too), are padded first
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, [p for lr in reversed(self.pads) for p in lr], mode=mode)
            padding = 0
        elif self.direct_width_pad and x.device.type == "cpu" and not (
                torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):  # (ONNX keeps one Conv)
            x = F.pad(x, [self.direct_width_pad, self.direct_width_pad])
            padding[-1] = 0
        y = DIRECT_CONV[self.dim](x, weight, bias, self.stride, padding, self.dilation, self.groups)
        return y if keep else restore(y, out_dtype)

    # ---- the cost model (cost_model.py, docs/design.md §15) and what a choice is keyed by

    def work(self) -> tuple:
        """(direct multiply-adds, the FFT path's estimated work), with the FFT shape the operator
        uses for this problem (the same in every direction: a gradient runs the same transforms).
        Computed once per problem: a training step's backward asks again each step."""
        if self._work is None:
            x4, w4, s2, p4, d2, _ = self.op_args()
            fft_shape = _C.fft_shape([1, 1, *x4[2:]], [1, 1, *w4[2:]], s2, p4, d2, 1, False)
            object.__setattr__(self, "_work", cost_model.work(self.x_shape, self.w_shape, self.output_spatial(),
                                                              fft_shape))
        return self._work

    def arithmetic_ratio(self) -> float:
        """Direct multiply-adds over the FFT path's estimated work."""
        if math.prod(self.kernel) == 1:
            # one tap: the spectral product alone does at least the direct convolution's
            # multiply-adds, before any transform
            return 0.0
        direct, fft = self.work()
        return direct / max(fft, 1.0)

    def model_ratio(self, device_type: str, direction: str = "forward") -> float:
        """The ratio the cost model compares with its threshold: arithmetic_ratio with the FFT
        path's fixed cost per call added to its work and narrow kernels' direct rate
        (cost_model.model_ratio)."""
        if math.prod(self.kernel) == 1:
            return 0.0
        return cost_model.model_ratio(*self.work(), device_type, direction, self.kind,
                                      self.kernel)

    def _dilated_fft(self, device_type: str, direction: str) -> bool:
        # a transposed convolution's forward runs the direct input-gradient kernel
        kernel_direction = "grad_input" if self.transposed and direction == "forward" else direction
        return (any(d > 1 for d in self.dilation) and math.prod(self.kernel) > 1
                and cost_model.dilated_takes_fft(device_type, kernel_direction))

    def model_choice(self, device_type: str, direction: str = "forward") -> str:
        """'fft' or 'direct': the cost model's choice for this problem on that device type."""
        if self._dilated_fft(device_type, direction):
            return "fft"
        return cost_model.choice(self.model_ratio(device_type, direction), device_type, direction,
                                 self.kind)

    def clear_choice(self, device_type: str, direction: str = "forward") -> Optional[str]:
        """The model's choice where it is clear (cost_model.CLEAR_FACTOR), else None: a
        problem that benchmark mode measures."""
        if self._dilated_fft(device_type, direction):
            return "fft"
        return cost_model.clear_choice(self.model_ratio(device_type, direction), device_type, direction,
                                       self.kind)

    def direct_cost(self, device_type: str, direction: str) -> float:
        """The model's direct time in a direction in units of that direction's FFT time: its
        model ratio over its threshold (1 at the threshold; an FFT-only dilated direction: inf)."""
        if self._dilated_fft(device_type, direction):
            return math.inf
        return self.model_ratio(device_type, direction) / cost_model.threshold(device_type, direction, self.kind)

    def joins_backward(self, device_type: str, direct_direction: str) -> bool:
        """Whether the gradient chosen direct beside an FFT one rides along in the joint FFT pass
        (cost_model.joint_backward)."""
        return cost_model.joint_backward(device_type, self.kind, direct_direction,
                                         self.direct_cost(device_type, direct_direction))

    def description(self) -> tuple:
        """Everything a measured choice of this problem depends on besides the device and the
        software (choice_cache.problem_key adds those): plain ints, strings and tuples."""
        return ("transpose" if self.transposed else "correlation", self.dim, tuple(self.x_shape),
                tuple(self.w_shape), tuple(self.stride), tuple(self.pads), tuple(self.dilation), self.groups,
                self.padding_mode, self.bias)

    def with_sizes(self, x_shape: tuple, w_shape: tuple) -> "ConvProblem":
        """The same problem with other operand sizes (a traced problem's example sizes)."""
        return dataclasses.replace(self, x_shape=tuple(x_shape), w_shape=tuple(w_shape))

    # ---- the CUDA pipeline choice (docs/design.md §17)

    def pipeline_target(self, device: torch.device, dtype: torch.dtype, direction: int) -> PipelineTarget:
        """Where algo records a CUDA pipeline choice for this problem in the operator
        (direction: cuda_pipelines.FORWARD, GRAD_INPUT, GRAD_WEIGHT or BACKWARD)."""
        double = dtype == torch.float64

        def args():
            x4, w4, s2, p4, d2, circular = self.op_args()
            return list(x4), list(w4), s2, p4, d2, self.groups, circular

        def record(name: str) -> None:
            index = device.index if device.index is not None else (
                torch.cuda.current_device() if device.type == "cuda" else 0)
            _C.set_pipeline_choice(*args(), index, double, direction, name)

        def applies(name: str) -> bool:
            return bool(_C.pipeline_applies(name, *args(), double, direction))
        return PipelineTarget(record, applies, direction)
