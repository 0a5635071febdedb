"""The convolution family beyond conv1d/conv2d: transposed convolutions (stride-1 large
kernels, as in large-kernel decoders, and stride-2 upsampling kernels, where direct must
win) against F.conv_transpose2d, a torch.fft composition written with the same rules
(docs/design.md §1-§5, on the flipped kernel) and torch-fftconv; forward and
forward + backward, each checked against float64 F.conv_transpose2d first."""
from __future__ import annotations

import importlib.util
import warnings
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

import fftconv_ext
from .baselines import BestFFTComposition, BestFFTComposition3d
from .report import geomean
from .timing import time_interleaved, with_backward

# (name, input shape, out channels per group, kernel, stride, padding, output_padding, groups)
TRANSPOSED = [
    ("depthwise 31x31, stride 1", (8, 64, 56, 56), 1, 31, 1, 15, 0, 64),
    ("depthwise 13x13, stride 1", (8, 64, 56, 56), 1, 13, 1, 6, 0, 64),
    ("depthwise 21x21, stride 1", (8, 128, 28, 28), 1, 21, 1, 10, 0, 128),
    ("depthwise 3x3, stride 1", (8, 64, 56, 56), 1, 3, 1, 1, 0, 64),
    ("dense 4x4, stride 2 (decoder)", (8, 64, 28, 28), 32, 4, 2, 1, 0, 1),
    ("dense 2x2, stride 2 (decoder)", (8, 64, 28, 28), 32, 2, 2, 0, 0, 1),
    ("depthwise 7x7, stride 2", (8, 64, 28, 28), 1, 7, 2, 3, 1, 64),
]


def _impls(x, w, b, stride, padding, output_padding, groups) -> Dict[str, Callable[..., torch.Tensor]]:
    """name -> f(x, w, b) for the implementations that compute this layer."""
    impls = {
        "fftconv_ext": lambda x_, w_, b_: fftconv_ext.conv_transpose2d(x_, w_, b_, stride, padding, output_padding,
                                                                        groups, algo="fft"),
        "fftconv_ext auto": lambda x_, w_, b_: fftconv_ext.conv_transpose2d(x_, w_, b_, stride, padding,
                                                                             output_padding, groups, algo="auto"),
        "F.conv_transpose2d": lambda x_, w_, b_: F.conv_transpose2d(x_, w_, b_, stride, padding, output_padding,
                                                                     groups),
    }
    k = w.shape[-1]
    if groups == x.shape[1] == w.shape[0] and w.shape[1] == 1 and stride == 1 and output_padding == 0 \
            and padding <= k - 1:
        # stride 1: a correlation with the flipped kernel and padding k - 1 - p
        best, flipped = BestFFTComposition(), w.flip(-1, -2)  # flipped once: its spectrum is cached as ours is
        impls["torch.fft composition"] = lambda x_, w_, b_: best(x_, flipped if w_ is w else w_.flip(-1, -2), b_,
                                                                 k - 1 - padding)
    if importlib.util.find_spec("torch_fftconv") is not None:
        from torch_fftconv import fft_conv_transpose2d
        impls["torch-fftconv"] = lambda x_, w_, b_: fft_conv_transpose2d(x_, w_, b_, stride, padding,
                                                                          output_padding, groups)
    return impls


_FAST_2D_MS = 60.0


def run_transposed(device: torch.device, layers=TRANSPOSED, budget: float = 1.5,
                   progress: Optional[Callable[[str], None]] = None) -> List[Dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for name, xs, opg, k, stride, padding, output_padding, groups in layers:
        x = torch.randn(*xs, generator=g).to(device)
        w = (torch.randn(xs[1], opg, k, k, generator=g) / k).to(device)
        b = torch.randn(opg * groups, generator=g).to(device)
        impls = _impls(x, w, b, stride, padding, output_padding, groups)
        ref = F.conv_transpose2d(x.double(), w.double(), b.double(), stride, padding, output_padding, groups)
        row = {"layer": name, "input": list(xs), "weight": list(w.shape), "stride": stride, "padding": padding,
               "output_padding": output_padding, "groups": groups, "forward": {}, "backward": {}}
        with torch.no_grad():
            for impl, f in impls.items():
                row["forward"][impl] = {"rel_err": ((f(x, w, b).double() - ref).norm() / ref.norm()).item()}
            timed = time_interleaved({n: (lambda f=f: f(x, w, b)) for n, f in impls.items()}, device, warmup=1,
                                     rounds=20, max_seconds=budget, lockstep=True)
        for impl, t in timed.items():
            row["forward"][impl].update(t)
        _retime_fast(row, impls, x, w, b, device, budget, _FAST_2D_MS)
        bwd = {n: with_backward(impls[n], x, w, b) for n in ("fftconv_ext", "fftconv_ext auto", "F.conv_transpose2d",
                                                             "torch.fft composition") if n in impls}
        row["backward"] = time_interleaved(bwd, device, warmup=1, rounds=10, max_seconds=budget, lockstep=True)
        rows.append(row)
        if progress:
            fw = row["forward"]
            progress(f"{name}: " + ", ".join(f"{n} {v['median_ms']:.2f} ms" for n, v in fw.items()))
    return rows


def _ratio(row, kind, a, b) -> Optional[float]:
    r = row[kind]
    return r[a]["median_ms"] / r[b]["median_ms"] if a in r and b in r else None


def transposed_summary(rows: List[Dict]) -> Dict[str, float]:
    out = {}
    target = next((r for r in rows if r["layer"].startswith("depthwise 31x31")), None)
    if target is not None:
        for other in ("F.conv_transpose2d", "torch-fftconv", "torch.fft composition"):
            v = _ratio(target, "forward", other, "fftconv_ext")
            if v is not None:
                out[f"depthwise transposed 31x31 on {tuple(target['input'])}: speedup vs {other}"] = v
    large = [r for r in rows if r["stride"] == 1 and r["weight"][-1] >= 13]
    for other in ("F.conv_transpose2d", "torch-fftconv", "torch.fft composition"):
        v = geomean([_ratio(r, "forward", other, "fftconv_ext") for r in large])
        if v is not None:
            out[f"stride-1 transposed layers, k >= 13: geomean speedup vs {other}"] = v
    worst, paired = _auto_worst(rows, lambda r: "F.conv_transpose2d")
    out["algo='auto', worst layer: time / faster of its two paths (forward)"] = worst
    if paired is not None:
        out["algo='auto', worst layer: paired time / faster of its two paths (forward)"] = paired
    return out


def _auto_worst(rows: List[Dict], direct_of) -> tuple:
    """auto's worst forward time over the faster of its two paths, by medians and (where the
    rows have it) by the median same-round ratio."""
    worst, paired = 0.0, None
    for r in rows:
        f = r["forward"]
        direct = direct_of(r)
        faster = "fftconv_ext" if f["fftconv_ext"]["median_ms"] <= f[direct]["median_ms"] else direct
        worst = max(worst, f["fftconv_ext auto"]["median_ms"] / f[faster]["median_ms"])
        p = f["fftconv_ext auto"].get("paired_ratio_vs", {}).get(faster)
        if p is not None:
            paired = max(paired or 0.0, p)
    return worst, paired


def transposed_markdown(rows: List[Dict], summary: Dict[str, float], reference: str = "float64") -> str:
    """Forward and forward + backward tables and the summary (the 3-D rows use it too, with
    reference="float32 direct")."""
    names = []
    for r in rows:
        names += [n for n in r["forward"] if n not in names]
    lines = [f"### Forward (median ms; rel. error vs {reference} in the last column)", "",
             "| layer | input | weight | " + " | ".join(names) + " | max rel err |",
             "|---|---|---|" + "---|" * (len(names) + 1)]
    for r in rows:
        f = r["forward"]
        cells = [f"{f[n]['median_ms']:.2f}" if n in f else "—" for n in names]
        err = max(v["rel_err"] for v in f.values())
        lines.append(f"| {r['layer']} | {'x'.join(map(str, r['input']))} | {'x'.join(map(str, r['weight']))} "
                     f"(s{r['stride']} p{r['padding']} op{r['output_padding']} g{r['groups']}) | "
                     + " | ".join(cells) + f" | {err:.1e} |")
    bnames = []
    for r in rows:
        bnames += [n for n in r["backward"] if n not in bnames]
    lines += ["", "### Forward + backward (median ms)", "", "| layer | " + " | ".join(bnames) + " |",
              "|---|" + "---|" * len(bnames)]
    for r in rows:
        b = r["backward"]
        lines.append(f"| {r['layer']} | " + " | ".join(f"{b[n]['median_ms']:.2f}" if n in b else "—"
                                                      for n in bnames) + " |")
    lines += ["", "### Summary (ratios inside this run)", ""]
    lines += [f"- {k}: {v:.3f}" if "auto" in k else f"- {k}: {v:.2f}x" for k, v in summary.items()]
    return "\n".join(lines)


# ---- 3-D ------------------------------------------------------------------------------

# (name, input shape, kernel, padding) for depthwise conv3d, from RepUX-Net-like (k 13, 21) and
# 3D UX-Net-like (k 7) stages, and a 3x3x3 one where direct must win
CONV3D = [
    ("depthwise 21x21x21 (RepUX-Net)", (1, 48, 32, 32, 32), 21, 10),
    ("depthwise 13x13x13", (1, 48, 32, 32, 32), 13, 6),
    ("depthwise 21x21x21, 16^3", (1, 96, 16, 16, 16), 21, 10),
    ("depthwise 13x13x13, 16^3", (1, 96, 16, 16, 16), 13, 6),
    ("depthwise 7x7x7 (3D UX-Net)", (2, 96, 16, 24, 24), 7, 3),
    ("depthwise 3x3x3", (2, 96, 16, 24, 24), 3, 1),
]

# (name, input shape, out channels per group, kernel, stride, padding, output_padding, groups)
TRANSPOSED3D = [
    ("3-D depthwise 13x13x13, stride 1", (1, 48, 24, 24, 24), 1, 13, 1, 6, 0, 48),
    ("3-D dense 2x2x2, stride 2 (decoder)", (1, 96, 16, 16, 16), 48, 2, 2, 0, 0, 1),
]


def _conv3d_impls(x, w, b, padding, groups) -> Dict[str, Callable[..., torch.Tensor]]:
    impls = {
        "fftconv_ext": lambda x_, w_, b_: fftconv_ext.conv3d(x_, w_, b_, 1, padding, 1, groups, algo="fft"),
        "fftconv_ext auto": lambda x_, w_, b_: fftconv_ext.conv3d(x_, w_, b_, 1, padding, 1, groups, algo="auto"),
        "F.conv3d": lambda x_, w_, b_: F.conv3d(x_, w_, b_, 1, padding, 1, groups),
    }
    best = BestFFTComposition3d()
    impls["torch.fft composition"] = lambda x_, w_, b_: best(x_, w_, b_, padding)
    if importlib.util.find_spec("fft_conv_pytorch") is not None:
        from fft_conv_pytorch import fft_conv
        # its deprecated indexing warns once per process: not ours to fix, and it interleaves the progress
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        impls["fft-conv-pytorch"] = lambda x_, w_, b_: fft_conv(x_, w_, b_, padding=padding, groups=groups)
    if importlib.util.find_spec("torch_fftconv") is not None:
        from torch_fftconv import fft_conv3d
        impls["torch-fftconv"] = lambda x_, w_, b_: fft_conv3d(x_, w_, b_, 1, padding, 1, groups)
    return impls


def _transposed3d_impls(x, w, b, stride, padding, output_padding, groups) -> Dict[str, Callable[..., torch.Tensor]]:
    impls = {
        "fftconv_ext": lambda x_, w_, b_: fftconv_ext.conv_transpose3d(x_, w_, b_, stride, padding, output_padding,
                                                                        groups, algo="fft"),
        "fftconv_ext auto": lambda x_, w_, b_: fftconv_ext.conv_transpose3d(x_, w_, b_, stride, padding,
                                                                             output_padding, groups, algo="auto"),
        "F.conv_transpose3d": lambda x_, w_, b_: F.conv_transpose3d(x_, w_, b_, stride, padding, output_padding,
                                                                     groups),
    }
    if importlib.util.find_spec("torch_fftconv") is not None:
        from torch_fftconv import fft_conv_transpose3d
        impls["torch-fftconv"] = lambda x_, w_, b_: fft_conv_transpose3d(x_, w_, b_, stride, padding,
                                                                          output_padding, groups)
    return impls


_SLOW_DIRECT_MS = 200.0


def _retime_fast(row, impls, x, w, b, device, budget, limit_ms):
    """Lockstep rounds end when the slowest implementation (a direct conv3d: 0.6 s; torch-fftconv
    on a decoder layer: 0.2 s) has used the budget, after a handful: those under limit_ms are
    timed again among themselves, in up to 200 rounds within the budget, auto paired with each of the others (the
    same-round ratio, which a slow spell of the machine moves less)."""
    # (and within 4x of the fastest: a 0.2 s direct call between them leaves cold caches to
    # whichever runs next, which over 16 shuffled rounds had put auto 19 % above the same path)
    fastest = min(row["forward"][n]["median_ms"] for n in impls)
    fast = {n: f for n, f in impls.items() if row["forward"][n]["median_ms"] <= min(limit_ms, 4 * fastest)}
    if len(fast) > 1:
        with torch.no_grad():
            again = time_interleaved({n: (lambda f=f: f(x, w, b)) for n, f in fast.items()}, device, warmup=1,
                                     rounds=200, max_seconds=budget, lockstep=True,
                                     paired=[("fftconv_ext auto", n) for n in fast if n != "fftconv_ext auto"])
        for impl, t in again.items():
            row["forward"][impl].update(t)


def _time_row(row, impls, ref, x, w, b, device, budget, backward_names):
    with torch.no_grad():
        for impl, f in impls.items():
            row["forward"][impl] = {"rel_err": ((f(x, w, b).double() - ref).norm() / ref.norm()).item()}
        timed = time_interleaved({n: (lambda f=f: f(x, w, b)) for n, f in impls.items()}, device, warmup=1,
                                 rounds=10, max_seconds=budget, lockstep=True)
    for impl, t in timed.items():
        row["forward"][impl].update(t)
    _retime_fast(row, impls, x, w, b, device, budget, _SLOW_DIRECT_MS)
    # a direct backward whose forward takes over _SLOW_DIRECT_MS takes minutes on the CPU (a 21^3
    # depthwise conv3d: 95 s per call): not timed, shown as "—"
    bwd = {n: with_backward(impls[n], x, w, b) for n in backward_names if n in impls and not (
        n.startswith("F.") and row["forward"][n]["median_ms"] > _SLOW_DIRECT_MS)}
    row["backward"] = time_interleaved(bwd, device, warmup=1, rounds=5, max_seconds=budget, lockstep=True)


def run_3d(device: torch.device, layers=CONV3D, transposed=TRANSPOSED3D, budget: float = 3.0,
           progress: Optional[Callable[[str], None]] = None) -> List[Dict]:
    """conv3d and conv_transpose3d rows, in the format of run_transposed's."""
    rows = []
    g = torch.Generator().manual_seed(0)
    for name, xs, k, padding in layers:
        c = xs[1]
        x = torch.randn(*xs, generator=g).to(device)
        w = (torch.randn(c, 1, k, k, k, generator=g) / k ** 1.5).to(device)
        b = torch.randn(c, generator=g).to(device)
        # float32 direct as the reference: PyTorch's float64 conv3d on the CPU unfolds the whole
        # input per tap (over 100 GB here)
        ref = F.conv3d(x, w, b, 1, padding, 1, c).double()
        row = {"layer": name, "op": "conv3d", "input": list(xs), "weight": list(w.shape), "stride": 1,
               "padding": padding, "output_padding": 0, "groups": c, "forward": {}, "backward": {}}
        _time_row(row, _conv3d_impls(x, w, b, padding, c), ref, x, w, b, device, budget,
                  ("fftconv_ext", "fftconv_ext auto", "F.conv3d", "torch.fft composition"))
        rows.append(row)
        if progress:
            progress(f"{name}: " + ", ".join(f"{n} {v['median_ms']:.1f} ms" for n, v in row["forward"].items()))
    for name, xs, opg, k, stride, padding, output_padding, groups in transposed:
        x = torch.randn(*xs, generator=g).to(device)
        w = (torch.randn(xs[1], opg, k, k, k, generator=g) / k ** 1.5).to(device)
        b = torch.randn(opg * groups, generator=g).to(device)
        ref = F.conv_transpose3d(x, w, b, stride, padding, output_padding, groups).double()
        row = {"layer": name, "op": "conv_transpose3d", "input": list(xs), "weight": list(w.shape),
               "stride": stride, "padding": padding, "output_padding": output_padding, "groups": groups,
               "forward": {}, "backward": {}}
        _time_row(row, _transposed3d_impls(x, w, b, stride, padding, output_padding, groups), ref, x, w, b, device,
                  budget, ("fftconv_ext", "fftconv_ext auto", "F.conv_transpose3d"))
        rows.append(row)
        if progress:
            progress(f"{name}: " + ", ".join(f"{n} {v['median_ms']:.1f} ms" for n, v in row["forward"].items()))
    return rows


def summary_3d(rows: List[Dict]) -> Dict[str, float]:
    out = {}
    target = next((r for r in rows if r["layer"].startswith("depthwise 21x21x21 (RepUX")), None)
    if target is not None:
        for other in ("F.conv3d", "torch.fft composition", "torch-fftconv", "fft-conv-pytorch"):
            v = _ratio(target, "forward", other, "fftconv_ext")
            if v is not None:
                out[f"depthwise 21x21x21 on {tuple(target['input'])}: speedup vs {other}"] = v
    large = [r for r in rows if r["op"] == "conv3d" and r["weight"][-1] >= 13]
    for other in ("F.conv3d", "torch.fft composition", "fft-conv-pytorch", "torch-fftconv"):
        v = geomean([_ratio(r, "forward", other, "fftconv_ext") for r in large])
        if v is not None:
            out[f"3-D sweep, k >= 13: geomean speedup vs {other}"] = v
    worst, paired = _auto_worst(rows, lambda r: "F.conv3d" if r["op"] == "conv3d" else "F.conv_transpose3d")
    out["algo='auto', worst 3-D layer: time / faster of its two paths (forward)"] = worst
    if paired is not None:
        out["algo='auto', worst 3-D layer: paired time / faster of its two paths (forward)"] = paired
    return out


def plot_family(sections: Dict[str, List[Dict]], path: str, title: str) -> Optional[str]:
    """Forward time per layer and implementation, one panel per section (log scale); None
    without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(len(sections), 1, figsize=(11, 3.6 * len(sections)), squeeze=False)
    for ax, (name, rows) in zip(axes[:, 0], sections.items()):
        impls = []
        for r in rows:
            impls += [n for n in r["forward"] if n not in impls]
        width = 0.8 / max(len(impls), 1)
        for i, impl in enumerate(impls):
            xs = [j + i * width for j, r in enumerate(rows) if impl in r["forward"]]
            ts = [r["forward"][impl]["median_ms"] for r in rows if impl in r["forward"]]
            ax.bar(xs, ts, width, label=impl)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
        ax.set_xticklabels([r["layer"] for r in rows], rotation=20, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("forward time (ms)")
        ax.set_title(name, fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
