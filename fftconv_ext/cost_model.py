"""The cost model behind algo="auto"'s default choice: direct convolution or the FFT operator,
decided from the problem's arithmetic alone (docs/design.md §15).

``arithmetic_ratio`` is direct convolution's multiply-adds over an estimate of the FFT path's
work (> 1: the FFT path does less). The model's ratio adds to that work a fixed cost per call
(``fixed_work``, in the same units: what a call of the FFT path costs besides its transforms and
product, which a small problem feels and a large one does not). For each cost profile (the
device type; on the CPU also its vector ISA), kind and direction (forward, input gradient,
weight gradient) the FFT path is chosen where the model's ratio reaches a threshold; both constants are fitted from measurements by
``python -m fftconv_ext.bench --calibrate`` (``fit_model`` below; the data and the fit are
committed under bench/results/). The choice is a pure function of shapes and
arguments: the same in every process, in eager mode and under torch.compile and export.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence, Tuple


DIRECTIONS = ("forward", "grad_input", "grad_weight")
# One weight input channel per group (depthwise), several in each of several groups (grouped),
# or one group (dense), and 1, 2 or 3 spatial axes: each runs on its own direct kernel (a
# depthwise loop, a GEMM per group or one GEMM; oneDNN's 1-D, 2-D and 3-D implementations, some
# with no fast backward) whose speed per multiply-add differs by up to an order of magnitude
# (on AVX2 a grouped 7x7 forward with 8 channels per group ran at half the rate of a dense one),
# so each kind has its thresholds.
FAMILIES = ("depthwise", "grouped", "dense")
KINDS = tuple(f"{family} {dim}-D" for family in FAMILIES for dim in (1, 2, 3))

# FFT where the model ratio >= the threshold, fitted by `python -m fftconv_ext.bench --calibrate`
# (rounded), per cost profile (profile(): the device type, and on the CPU its vector ISA, since
# oneDNN's kernels and their speed per multiply-add differ between AVX2 and AVX-512).
# cpu-avx2: 2 threads of an x86 VM with AVX2 and no AVX-512
# (bench/results/amd-epyc-x86_64-avx2-2t-calibrate.{json,md}).
# cpu-avx512: 93 layers on 2 threads of an AVX-512 x86 VM, every direction
# (bench/results/amd-epyc-x86_64-avx512-2t-calibrate.{json,md}); its dense 2-D and grouped 2-D
# constants are fitted to those points together with a later run of that kind alone
# (--calibrate-kind; ...-calibrate-dense-2-d.*, ...-calibrate-grouped-2-d.*) that adds smaller
# problems: small maps (12x12 to 20x20) at several batch x channel sizes, and grouped layers of
# the same per-group geometry with fewer images or channels. There the FFT path does less per
# unit of work than on the large layers (its cost per call weighs more), and oneDNN's direct
# dense kernels more with 9x9 kernels than with 7x7 or 11x11, so the break-even ratios are higher:
# near 20 for dense (a threshold of 11.4 lost up to 1.47x on small maps), near 7.5 for the grouped
# forward (3.9 lost up to 1.63x). The two runs met the machine in different states (the grouped
# FFT forward 1.4-2x slower in the later one): the fit over both weighs the two alike. Direct depthwise weight
# gradients are slow there beyond 3x3 taps, so the FFT takes them early; the 3-D direct backward
# is slow at every size. CUDA: only the 2-D depthwise forward has been measured (7 layers of an
# H200, bench/results/nvidia-h200-calibrate-forward.*); its gradients take the forward's value
# and dense layers the CPU's, until a GPU run of --calibrate fits them. A kind with no entry
# takes those of fitted_kind (its family's 2-D ones; grouped kinds then the dense ones).
THRESHOLDS = {
    "cpu-avx2": {"depthwise 1-D": {"forward": 1.39, "grad_input": 1.39, "grad_weight": 0.10},
                 "depthwise 2-D": {"forward": 1.45, "grad_input": 1.06, "grad_weight": 0.163},
                 "depthwise 3-D": {"forward": 0.65, "grad_input": 0.20, "grad_weight": 0.20},
                 "grouped 2-D": {"forward": 1.45, "grad_input": 1.45, "grad_weight": 1.10},
                 "dense 1-D": {"forward": 3.58, "grad_input": 3.58, "grad_weight": 0.277},
                 "dense 2-D": {"forward": 10.0, "grad_input": 9.3, "grad_weight": 32.0}},
    "cpu-avx512": {"depthwise 1-D": {"forward": 1.39, "grad_input": 1.39, "grad_weight": 0.10},
                   "depthwise 2-D": {"forward": 1.26, "grad_input": 1.26, "grad_weight": 0.12},
                   "depthwise 3-D": {"forward": 0.53, "grad_input": 0.20, "grad_weight": 0.20},
                   "grouped 2-D": {"forward": 7.5, "grad_input": 8.1, "grad_weight": 1.10},
                   "dense 1-D": {"forward": 6.6, "grad_input": 3.58, "grad_weight": 3.58},
                   "dense 2-D": {"forward": 20.0, "grad_input": 20.0, "grad_weight": 28.0}},
    "cuda": {"depthwise 2-D": {"forward": 5.8, "grad_input": 5.8, "grad_weight": 5.8},
             "dense 2-D": {"forward": 9.3, "grad_input": 9.3, "grad_weight": 32.0}},
}
# The FFT path's fixed cost per call, in units of the FFT work estimate, where the calibration
# pins one (fit_model); elsewhere 0. CPU 3-D depthwise forward: at one geometry and ratio
# (20^3, 7x7x7) direct is 1.15x faster with 32 planes and the FFT 1.13-1.15x faster with 128
# or 256 (AVX-512), because the FFT path's time has a part that does not grow with the planes
# (the depth fold and the operator's per-call steps; about 0.3 ms for one plane).
FIXED_WORK = {
    "cpu-avx2": {"grouped 2-D": {"grad_weight": 3.16e8}, "dense 1-D": {"grad_weight": 3.16e8}},
    "cpu-avx512": {"depthwise 3-D": {"forward": 1.78e8}, "grouped 2-D": {"grad_weight": 3.16e8}},
}
# Directions whose direct kernels have no fast dilated loop, per cost profile: a dilated problem
# takes the FFT there (AVX2: a depthwise 7x7 input gradient with dilation 2 on 2x128x32x32 took
# 9.1 ms direct against 0.82 through the FFT, 0.64 ms undilated; padding first does not help).
# AVX-512: 5.9 ms direct against 0.76 for that input gradient, 5.6 against 0.62 for its weight gradient.
SLOW_DILATED_DIRECT = {"cpu-avx2": ("grad_input", "grad_weight"), "cpu-avx512": ("grad_input", "grad_weight")}
# Direct kernels with a fast loop for narrow kernels: where the kernel's last axis has at most
# NARROW_TAPS taps, the model counts the direct multiply-adds at 1/speedup, per cost profile, kind
# and direction. The CPU's direct depthwise 2-D weight gradient takes 85-150 ps per multiply-add
# with 1 or 3 columns (3x3, 21x1, 21x3, 7x3) and 430-850 with 5 or more (1x21, 3x7, 7x7, ...), on
# AVX2 and AVX-512 alike, whatever the rows; calibrate's narrow-kernel table measures it
# (narrow_speedups), and each committed value is at most what it measured.
NARROW_TAPS = 3
NARROW_DIRECT_SPEEDUP = {
    "cpu-avx2": {"depthwise 2-D": {"grad_weight": 3.5}},
    "cpu-avx512": {"depthwise 2-D": {"grad_weight": 3.5}},
}
# The joint FFT backward (both gradients in one pass, the output gradient transformed once): what
# taking a gradient along into the other gradient's FFT pass costs, in units of its own FFT time
# ((joint - the other FFT gradient alone) / its FFT gradient alone; calibrate's joint table, the
# median over layers), per cost profile, kind and the gradient taken along. Where one gradient
# takes the FFT and the model's direct time for the other (direct_cost) is more than this, the
# other rides along (joint_backward); no entry: they run apart. cpu-avx2 (single layers, before
# calibrate timed the joint pass): the joint pass cost 0.7-1.1x the FFT weight gradient alone (a
# 65-tap 1-D layer: 2.0 ms joint against 2.7 for the weight gradient and 4.3 for a direct input
# gradient), so the input gradient always rides along.
JOINT_EXTRA_COST = {
    "cpu-avx2": {"depthwise 1-D": {"grad_input": 0.0}, "depthwise 2-D": {"grad_input": 0.0}},
    "cpu-avx512": {"depthwise 1-D": {"grad_input": -0.02, "grad_weight": 0.32},
                   "depthwise 2-D": {"grad_input": 0.21, "grad_weight": 0.32},
                   "depthwise 3-D": {"grad_input": 0.33, "grad_weight": 0.63},
                   "grouped 2-D": {"grad_input": -0.21, "grad_weight": 0.44},
                   "dense 1-D": {"grad_input": 0.59, "grad_weight": 0.79},
                   "dense 2-D": {"grad_input": 0.86, "grad_weight": 0.94}},
}
# Other device types: the arithmetic break-even.
DEFAULT_THRESHOLD = 1.0


_cpu_profile: Optional[str] = None


def profile(device_type: str) -> str:
    """The cost profile whose constants a device type uses: on the CPU 'cpu-avx512' where torch
    runs AVX-512 kernels, else 'cpu-avx2' (other CPUs, unmeasured, take AVX2's constants); the
    device type itself elsewhere. A profile name ('cpu-avx2', ...) is returned as it is."""
    global _cpu_profile
    if device_type != "cpu":
        return device_type
    if _cpu_profile is None:
        import torch
        _cpu_profile = "cpu-avx512" if torch.backends.cpu.get_cpu_capability() == "AVX512" else "cpu-avx2"
    return _cpu_profile


def kind(w_shape: Sequence[int], groups: int = 1) -> str:
    """'depthwise 2-D' (one input channel per group), 'grouped 2-D' (several, in several
    groups), 'dense 3-D' (one group), ...: the weight's family and its number of spatial axes."""
    family = "depthwise" if w_shape[1] == 1 else ("grouped" if groups > 1 else "dense")
    return f"{family} {len(w_shape) - 2}-D"


def fitted_kind(device_type: str, kind: str) -> Optional[str]:
    """The kind whose constants a kind takes on a device type (or cost profile): its own where
    fitted, else its family's 2-D kind, else for a grouped kind the dense one of its rank or
    dense 2-D; None where none is fitted."""
    family, rank = kind.split()
    table = THRESHOLDS.get(profile(device_type), {})
    for k in (kind, f"{family} 2-D") + ((f"dense {rank}", "dense 2-D") if family == "grouped" else ()):
        if k in table:
            return k
    return None


# With backends.benchmark, problems whose ratio is this far from the threshold (either way)
# are decided by the model without measuring: no measurement has reversed such a gap, and a
# direct backward with a large kernel costs seconds per call on a CPU.
CLEAR_FACTOR = 4.0


def work(x_shape: Sequence[int], w_shape: Sequence[int], out_spatial: Sequence[int],
         fft_shape: Sequence[int]) -> Tuple[float, float]:
    """(direct multiply-adds, the FFT path's estimated work): two real transforms per input and
    output plane (2.5 N log2 N flops each) and the spectral product."""
    n, c_in = x_shape[0], x_shape[1]
    c_out, cpg = w_shape[0], w_shape[1]
    taps = math.prod(w_shape[2:])
    direct = n * c_out * cpg * taps * math.prod(out_spatial)
    points = math.prod(fft_shape)
    fft = n * (c_in + c_out) * 2.5 * points * math.log2(max(points, 2)) + n * c_out * cpg * points * 2
    return float(direct), float(fft)


def arithmetic_ratio(x_shape: Sequence[int], w_shape: Sequence[int], out_spatial: Sequence[int],
                     fft_shape: Sequence[int]) -> float:
    """Direct multiply-adds over an estimate of the FFT path's work (> 1: FFT cheaper)."""
    direct, fft = work(x_shape, w_shape, out_spatial, fft_shape)
    return direct / max(fft, 1.0)


def fixed_work(device_type: str, direction: str = "forward", kind: str = "depthwise 2-D") -> float:
    """The FFT path's fixed cost per call in FFT-work units (FIXED_WORK; 0 where none is fitted)."""
    _check(direction, kind)
    own = fitted_kind(device_type, kind)  # fitted together with the threshold this kind takes
    return FIXED_WORK.get(profile(device_type), {}).get(own, {}).get(direction, 0.0)


def direct_speedup(device_type: str, direction: str = "forward", kind: str = "depthwise 2-D",
                   kernel: Sequence[int] = ()) -> float:
    """How much faster per multiply-add the direct kernel runs on a narrow kernel (at most
    NARROW_TAPS taps along its last axis) than the model's usual rate: NARROW_DIRECT_SPEEDUP, 1
    elsewhere."""
    _check(direction, kind)
    if not kernel or kernel[-1] > NARROW_TAPS:
        return 1.0
    return NARROW_DIRECT_SPEEDUP.get(profile(device_type), {}).get(kind, {}).get(direction, 1.0)


def model_ratio(direct: float, fft: float, device_type: str, direction: str = "forward",
                kind: str = "depthwise 2-D", kernel: Sequence[int] = ()) -> float:
    """What the threshold is compared with: direct multiply-adds (at the narrow-kernel rate,
    direct_speedup, where one applies) over the FFT work plus the fixed cost per call (0 for a
    one-tap problem's zero direct work)."""
    direct = direct / direct_speedup(device_type, direction, kind, kernel)
    return direct / max(fft + fixed_work(device_type, direction, kind), 1.0)


def joint_extra_cost(device_type: str, kind: str, direction: str) -> Optional[float]:
    """What taking this gradient along into the other's FFT pass costs, in its own FFT times
    (JOINT_EXTRA_COST): its kind's, else its family's 2-D one; None where neither is measured."""
    _check(direction, kind)
    table = JOINT_EXTRA_COST.get(profile(device_type), {})
    for k in (kind, f"{kind.split()[0]} 2-D"):
        if k in table:
            return table[k].get(direction)
    return None


def joint_backward(device_type: str, kind: str, direction: str, direct_cost: float) -> bool:
    """Whether a gradient the model would run direct beside an FFT one rides along in the joint
    FFT pass instead: when taking it along costs less than its direct time (direct_cost, in its
    own FFT times: the model's ratio over its threshold)."""
    extra = joint_extra_cost(device_type, kind, direction)
    return extra is not None and extra < direct_cost


def dilated_takes_fft(device_type: str, direction: str) -> bool:
    """Whether a dilated problem takes the FFT in this direction (SLOW_DILATED_DIRECT)."""
    return direction in SLOW_DILATED_DIRECT.get(profile(device_type), ())


def _check(direction: str, kind: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def threshold(device_type: str, direction: str = "forward", kind: str = "depthwise 2-D") -> float:
    """The ratio from which the FFT path is chosen: the threshold of fitted_kind, else
    DEFAULT_THRESHOLD."""
    _check(direction, kind)
    own = fitted_kind(device_type, kind)
    return THRESHOLDS[profile(device_type)][own].get(direction, DEFAULT_THRESHOLD) if own else DEFAULT_THRESHOLD


def choice(ratio: float, device_type: str, direction: str = "forward", kind: str = "depthwise 2-D") -> str:
    """'fft' or 'direct': the model's choice for a problem of this model ratio (model_ratio)."""
    if ratio <= 0.0:
        return "direct"
    return "fft" if ratio >= threshold(device_type, direction, kind) else "direct"


def clear_choice(ratio: float, device_type: str, direction: str = "forward",
                 kind: str = "depthwise 2-D") -> Optional[str]:
    """The model's choice where the model ratio is CLEAR_FACTOR or more from the threshold, else
    None (a problem backends.benchmark measures)."""
    t = threshold(device_type, direction, kind)
    if ratio <= t / CLEAR_FACTOR:
        return "direct"
    if ratio >= t * CLEAR_FACTOR:
        return "fft"
    return None


def fit_threshold(points: Iterable[Tuple[float, float, float]]) -> Tuple[float, float]:
    """The threshold that loses least against always taking the faster path, and that loss.

    points: (ratio, fft seconds, direct seconds) per measured problem. The loss of a threshold
    T is the geometric mean over problems of (time of the path T picks) / (faster path's time);
    among the thresholds of least loss (an interval between two measured ratios) the geometric
    middle of that interval is returned, or the edge ratio where it is unbounded."""
    pts = sorted((r, f, d) for r, f, d in points if r > 0 and f > 0 and d > 0)
    if not pts:
        raise ValueError("fit_threshold needs at least one measured problem")
    ratios = [r for r, _, _ in pts]
    # candidates: below every ratio, between each neighbouring pair, above every ratio
    candidates = [ratios[0] / 2] + [math.sqrt(a * b) for a, b in zip(ratios, ratios[1:])] + [ratios[-1] * 2]

    def loss(t: float) -> float:
        logs = [math.log((f if r >= t else d) / min(f, d)) for r, f, d in pts]
        return math.exp(sum(logs) / len(logs))

    losses = [loss(t) for t in candidates]
    best = min(losses)
    good = [i for i, v in enumerate(losses) if v <= best * (1 + 1e-12)]
    first = last = good[0]
    while last + 1 in good:  # the first run of least-loss candidates
        last += 1
    # candidate i stands for every T in (ratios[i-1], ratios[i]]: the run spans (low, high]
    low = ratios[first - 1] if first > 0 else ratios[0] / 2
    high = ratios[last] if last < len(ratios) else ratios[-1] * 2
    return math.sqrt(low * high), best


# fit_model's candidate fixed costs: 0, then quarter decades. A fixed cost is kept only where it
# lowers the loss by FIXED_WORK_MIN_GAIN or more: a parameter more must earn its place.
FIXED_WORK_GRID = (0.0,) + tuple(10 ** (e / 4) for e in range(16, 41))
FIXED_WORK_MIN_GAIN = 0.002


def fit_model(points: Iterable[Tuple[float, float, float, float]]) -> Tuple[float, float, float]:
    """(fixed work, threshold, loss) that lose least against always taking the faster path.

    points: (direct work, FFT work, fft seconds, direct seconds) per measured problem. For each
    candidate fixed cost (FIXED_WORK_GRID) the threshold is fitted to the model ratios
    (fit_threshold); of the candidates of least loss, the middle one of their first run (a
    geometric middle, as fit_threshold takes for a threshold); 0 unless 0 loses
    FIXED_WORK_MIN_GAIN more than that."""
    pts = [(d, f, tf, td) for d, f, tf, td in points if d > 0 and f > 0 and tf > 0 and td > 0]
    if not pts:
        raise ValueError("fit_model needs at least one measured problem")

    def fitted(k: float) -> Tuple[float, float]:
        return fit_threshold([(d / (f + k), tf, td) for d, f, tf, td in pts])
    fits = [fitted(k) for k in FIXED_WORK_GRID]
    best = min(loss for _, loss in fits)
    if fits[0][1] <= best * (1 + FIXED_WORK_MIN_GAIN):
        return 0.0, fits[0][0], fits[0][1]
    good = [i for i, (_, loss) in enumerate(fits) if loss <= best * (1 + 1e-12)]
    first = last = good[0]
    while last + 1 in good:
        last += 1
    middle = (first + last) // 2
    return FIXED_WORK_GRID[middle], fits[middle][0], fits[middle][1]
