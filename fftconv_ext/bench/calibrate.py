"""python -m fftconv_ext.bench --calibrate: the measurements behind algo="auto"'s cost model.

For a set of layers (depthwise 1-D kernels of 9 to 257 taps, 2-D and 3-D kernels from 3 to 31
taps a side, strips, one-channel filters, dense 1-D and 2-D layers), each direction (forward,
input gradient, weight gradient) is timed on both paths, ``algo="fft"`` and ``algo="direct"``,
and the joint FFT backward (both gradients in one pass) on the FFT path: one warm-up call
each, then the median of ROUNDS calls in
alternating order, in each of PASSES passes through the whole set; a point is the median of its
passes. A layer whose direct convolution does over SKIP_DIRECT_MACS multiply-adds is
not timed direct (a direct 3-D backward there takes tens of seconds): it is listed, and left out
of the fit. ``cost_model.fit_model`` then gives, per kind (depthwise or dense, 1-, 2- or 3-D)
and direction, the FFT path's fixed cost per call and the threshold that lose least against
always taking the faster path (a fixed cost only where one geometry at several batch x channel
sizes shows it). The run prints each layer's ratio, both times and the choice of the fitted and
of the committed constants of this machine's cost profile (cost_model.profile), and writes
<out>/<machine>-calibrate.{json,md}.

``--calibrate-from RESULTS.json`` fits the forward threshold from a committed benchmark run
instead (its depthwise rows' fftconv_ext and F.conv2d medians), e.g. a GPU's.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import time

import torch

import fftconv_ext
from fftconv_ext import cost_model
from fftconv_ext.problem import ConvProblem
from .machine import finish_meta, machine_name, run_meta

ROUNDS = 9
PASSES = 3
SKIP_DIRECT_MACS = 4e9


def layers(quick: bool = False):
    """(name, x shape, w shape, groups) of 'same' layers, stride 1."""
    out = []
    sizes = (3, 7, 13, 31) if quick else (3, 5, 7, 9, 11, 13, 17, 21, 31)
    for r in ((16, 32) if quick else (16, 32, 64)):
        for k in sizes:
            out.append((f"depthwise 2-D R{r} k{k}", (2, 128, r, r), (128, 1, k, k), 128))
    if not quick:
        for k in (7, 13, 31):
            out.append((f"depthwise 2-D 56x56 k{k}", (4, 96, 56, 56), (96, 1, k, k), 96))
        for k in (9, 17, 33, 65, 129, 257):
            out.append((f"depthwise 1-D L4096 k{k}", (4, 64, 4096), (64, 1, k), 64))
        for k in (9, 33, 129):
            out.append((f"depthwise 1-D L1024 k{k}", (4, 128, 1024), (128, 1, k), 128))
        for k in (3, 5, 7, 9, 13):
            out.append((f"depthwise 3-D 16^3 k{k}", (1, 48, 16, 16, 16), (48, 1, k, k, k), 48))
        for k in (3, 7):
            out.append((f"depthwise 3-D 8x24x24 k{k}", (2, 64, 8, 24, 24), (64, 1, k, k, k), 64))
        for k in (7, 9):
            out.append((f"depthwise 3-D 12^3 k{k}", (2, 64, 12, 12, 12), (64, 1, k, k, k), 64))
        for side in (20, 24, 32):
            out.append((f"depthwise 3-D {side}^3 k7", (1, 32, side, side, side), (32, 1, 7, 7, 7), 32))
        # one geometry at several batch x channel sizes: what pins the FFT path's fixed cost
        for n, c in ((2, 64), (4, 64)):
            out.append((f"depthwise 3-D 20^3 k7 {n}x{c}", (n, c, 20, 20, 20), (c, 1, 7, 7, 7), c))
        out.append(("depthwise 3-D 16^3 k7 4x96", (4, 96, 16, 16, 16), (96, 1, 7, 7, 7), 96))
        out.append(("depthwise 3-D 8x24x24 k7 4x96", (4, 96, 8, 24, 24), (96, 1, 7, 7, 7), 96))
        for k in (3, 5, 7, 11, 15):
            out.append((f"dense 2-D 32x32 k{k}", (4, 64, 32, 32), (64, 64, k, k), 1))
        for k in (3, 7, 13, 21):
            out.append((f"dense 2-D 24x24 k{k}", (2, 16, 24, 24), (16, 16, k, k), 1))
        for k in (7, 11, 15):  # a small map: what the FFT path's fixed cost per call weighs on
            out.append((f"dense 2-D 16x16 k{k}", (2, 32, 16, 16), (32, 32, k, k), 1))
        # small maps at several batch x channel sizes: what pins the dense FFT path's fixed cost
        for n, c, k in ((4, 32, 9), (2, 64, 9), (1, 64, 13)):
            out.append((f"dense 2-D 16x16 k{k} {n}x{c}", (n, c, 16, 16), (c, c, k, k), 1))
        for k in (5, 7, 11):
            out.append((f"dense 2-D 12x12 k{k}", (2, 48, 12, 12), (48, 48, k, k), 1))
        for k in (9, 13):
            out.append((f"dense 2-D 20x20 k{k}", (2, 32, 20, 20), (32, 32, k, k), 1))
        for k in (7, 13):
            out.append((f"grouped 2-D 28x28 k{k} g16", (4, 128, 28, 28), (128, 8, k, k), 16))
        for k in (5, 9, 15):
            out.append((f"grouped 2-D 32x32 k{k} g4", (2, 64, 32, 32), (64, 16, k, k), 4))
        for k in (3, 7, 11):
            out.append((f"grouped 2-D 24x24 k{k} g8", (2, 128, 24, 24), (128, 16, k, k), 8))
        for k in (5, 9):
            out.append((f"grouped 2-D 16x16 k{k} g32", (4, 128, 16, 16), (128, 4, k, k), 32))
        # smaller problems of the same per-group geometries: what pins the grouped FFT path's fixed cost
        for n, c, g, k in ((1, 64, 8, 7), (2, 32, 4, 7), (1, 128, 16, 9), (2, 64, 8, 11)):
            out.append((f"grouped 2-D 28x28 k{k} g{g} {n}x{c}", (n, c, 28, 28), (c, c // g, k, k), g))
        for n, c, g, k in ((1, 64, 4, 5), (1, 64, 8, 9)):
            out.append((f"grouped 2-D 24x24 k{k} g{g} {n}x{c}", (n, c, 24, 24), (c, c // g, k, k), g))
        # kernels and inputs of other proportions: strips, a wide input, one channel
        for kh, kw in ((1, 11), (1, 21), (1, 31), (21, 1), (21, 3), (7, 3), (3, 7)):
            out.append((f"depthwise 2-D R32 {kh}x{kw}", (2, 128, 32, 32), (128, 1, kh, kw), 128))
        for k in (7, 11):
            out.append((f"depthwise 2-D 20x40 k{k}", (2, 96, 20, 40), (96, 1, k, k), 96))
        for k in (15, 31):
            out.append((f"one channel 2-D 128x128 k{k}", (1, 1, 128, 128), (1, 1, k, k), 1))
        for k in (9, 31, 63):
            out.append((f"dense 1-D L1024 k{k}", (2, 32, 1024), (32, 32, k), 1))
        for k in (31, 129):
            out.append((f"dense 1-D L4096 k{k}", (4, 16, 4096), (16, 16, k), 1))
    return out


_CONV = {3: fftconv_ext.conv1d, 4: fftconv_ext.conv2d, 5: fftconv_ext.conv3d}


def _problem(x_shape, w_shape, groups) -> ConvProblem:
    """The 'same' layer, stride 1."""
    dim = len(x_shape) - 2
    return ConvProblem(dim, tuple(x_shape), tuple(w_shape), (1,) * dim, tuple((k // 2, k // 2) for k in w_shape[2:]),
                       (1,) * dim, groups)


def _ratio(x_shape, w_shape, groups) -> float:
    """The cost model's arithmetic ratio of a 'same' layer."""
    return _problem(x_shape, w_shape, groups).arithmetic_ratio()


def _work(p: dict) -> tuple:
    """A point's (direct work, FFT work), from its shapes."""
    return _problem(p["input"], p["weight"], p["groups"]).work()


def _model_work(p: dict, device_type: str) -> tuple:
    """A point's (direct work as the model counts it, at the narrow-kernel rate where one
    applies; FFT work)."""
    direct, fft = _work(p)
    kind = cost_model.kind(p["weight"], p["groups"])
    return direct / cost_model.direct_speedup(device_type, p["direction"], kind, p["weight"][2:]), fft


def _narrow(p: dict) -> bool:
    return p["weight"][-1] <= cost_model.NARROW_TAPS


def narrow_speedups(points: list) -> dict:
    """{kind: {direction: {"narrow": n, "wide": n, "speedup": s}}}: per kind and direction with
    two or more narrow-kernel points (cost_model.NARROW_TAPS columns or fewer, more than one tap)
    and two or more others, the median direct time per multiply-add of the others over that of
    the narrow ones (> 1: the direct kernel is faster per multiply-add on narrow kernels)."""
    groups = {}
    for p in points:
        if p["direct_ms"] is None or math.prod(p["weight"][2:]) == 1:
            continue
        per_mac = p["direct_ms"] / _work(p)[0]
        key = (cost_model.kind(p["weight"], p["groups"]), p["direction"])
        groups.setdefault(key, ([], []))[0 if _narrow(p) else 1].append(per_mac)
    out = {}
    for (kind, direction), (narrow, wide) in groups.items():
        if len(narrow) >= 2 and len(wide) >= 2:
            out.setdefault(kind, {})[direction] = {
                "narrow": len(narrow), "wide": len(wide),
                "speedup": statistics.median(wide) / statistics.median(narrow)}
    return out


def _step(direction, x_shape, w_shape, groups, algo):
    """A callable running one direction of the layer on one path."""
    g = torch.Generator().manual_seed(0)
    conv = _CONV[len(x_shape)]
    pad = [k // 2 for k in w_shape[2:]]
    x = torch.randn(*x_shape, generator=g)
    w = torch.randn(*w_shape, generator=g) / math.prod(w_shape[2:])
    if direction == "forward":
        def run():
            with torch.no_grad():
                return conv(x, w, padding=pad, groups=groups, algo=algo)
        return run
    # "backward": both gradients, which the FFT path computes in one joint pass
    leaves = {"grad_input": (x,), "grad_weight": (w,), "backward": (x, w)}[direction]
    for leaf in leaves:
        leaf.requires_grad_(True)
    y = conv(x, w, padding=pad, groups=groups, algo=algo)
    grad = torch.randn(y.shape, generator=g)
    return lambda: torch.autograd.grad(y, leaves, grad, retain_graph=True)


def _medians_ms(runs: dict) -> dict:
    for f in runs.values():
        f()
    times = {n: [] for n in runs}
    names = list(runs)
    for r in range(ROUNDS):
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            runs[n]()
            times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: statistics.median(t) for n, t in times.items()}


def measure(quick: bool = False, progress=print, passes: int = PASSES, kind: str = None) -> list:
    """Per layer and direction, both paths' times: the median over `passes` passes through the
    whole layer set of each pass's median of ROUNDS calls. A layer near its crossover can come
    out either way in one pass (a near tie, or the machine's state for a few seconds);
    separate passes make the fit depend less on any one moment. kind: only that kind's layers
    (cost_model.KINDS)."""
    chosen = [layer for layer in layers(quick) if kind is None or cost_model.kind(layer[2], layer[3]) == kind]
    times = {}
    for i in range(passes):
        for name, x_shape, w_shape, groups in chosen:
            for direction in cost_model.DIRECTIONS:
                runs = {"fft": _step(direction, x_shape, w_shape, groups, "fft")}
                macs = math.prod(x_shape[:1]) * w_shape[0] * math.prod(w_shape[1:]) * math.prod(x_shape[2:])
                if macs <= SKIP_DIRECT_MACS:
                    runs["direct"] = _step(direction, x_shape, w_shape, groups, "direct")
                for path, ms in _medians_ms(runs).items():
                    times.setdefault((name, direction, path), []).append(ms)
                del runs
            # the joint FFT backward, against which a direct gradient beside an FFT one is weighed
            ms = _medians_ms({"fft": _step("backward", x_shape, w_shape, groups, "fft")})["fft"]
            times.setdefault((name, "backward", "fft"), []).append(ms)
        progress(f"pass {i + 1} of {passes} done")
    points = []
    for name, x_shape, w_shape, groups in chosen:
        ratio = _ratio(x_shape, w_shape, groups)
        for direction in cost_model.DIRECTIONS:
            t = {path: statistics.median(times[(name, direction, path)]) for path in ("fft", "direct")
                 if (name, direction, path) in times}
            points.append({"layer": name, "input": list(x_shape), "weight": list(w_shape), "groups": groups,
                           "direction": direction, "ratio": ratio, "fft_ms": t["fft"],
                           "direct_ms": t.get("direct"), "passes": passes})
            if direction == "grad_weight":
                points[-1]["joint_fft_ms"] = statistics.median(times[(name, "backward", "fft")])
            progress(f"{name:28s} {direction:11s} ratio {ratio:8.3f}  fft {t['fft']:9.2f} ms  direct "
                     + (f"{t['direct']:9.2f} ms" if "direct" in t else "   (not timed)"))
    return points


def joint_costs(points: list) -> dict:
    """{kind: {"layers": n, "grad_input": c, "grad_weight": c}}: per kind, the median over layers
    of what taking each gradient along into the other's FFT pass costs, in its own FFT times:
    (joint FFT backward - the other FFT gradient alone) / its FFT gradient alone
    (cost_model.JOINT_EXTRA_COST)."""
    fft = {(p["layer"], p["direction"]): p["fft_ms"] for p in points}
    per_kind = {}
    for p in points:
        if "joint_fft_ms" in p:
            gi, gw, joint = fft[(p["layer"], "grad_input")], p["fft_ms"], p["joint_fft_ms"]
            per_kind.setdefault(cost_model.kind(p["weight"], p["groups"]), []).append(
                ((joint - gw) / gi, (joint - gi) / gw))
    return {kind: {"layers": len(v), "grad_input": statistics.median(e for e, _ in v),
                   "grad_weight": statistics.median(e for _, e in v)} for kind, v in per_kind.items()}


def fit(points: list, device_type: str) -> dict:
    """{kind: {direction: the fitted fixed work, threshold and loss; the committed ones and their
    loss and worst layer}}."""
    out = {}
    for kind in cost_model.KINDS:
        for direction in cost_model.DIRECTIONS:
            pts = [_model_work(p, device_type) + (p["fft_ms"], p["direct_ms"]) for p in points
                   if p["direction"] == direction and p["direct_ms"] is not None
                   and cost_model.kind(p["weight"], p["groups"]) == kind]
            if not pts:
                continue
            k, t, loss = cost_model.fit_model(pts)
            committed = (cost_model.fixed_work(device_type, direction, kind),
                         cost_model.threshold(device_type, direction, kind))
            out.setdefault(kind, {})[direction] = {
                "fixed_work": k, "threshold": t, "loss": loss, "committed_fixed_work": committed[0],
                "committed_threshold": committed[1], "committed_loss": _loss(pts, *committed), "layers": len(pts),
                "worst_committed": _worst(pts, *committed)}
    return out


def _picked(pts, k, t):
    return [(tf if d / (f + k) >= t else td) / min(tf, td) for d, f, tf, td in pts]


def _worst(pts, k, t) -> float:
    return max(_picked(pts, k, t))


def _loss(pts, k, t) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in _picked(pts, k, t)))


def markdown(result: dict) -> str:
    meta, fits = result["meta"], result["fit"]
    device_type = meta.get("cost_profile", meta["device"])
    lines = ["# algo='auto' cost-model calibration: " + meta["machine"], "",
             ", ".join(f"{k}: {v}" for k, v in meta.items()), "",
             "Per kind and direction: FFT where the model ratio, direct work / (FFT work + fixed work), "
             "reaches the threshold (fixed work: the FFT path's cost per call besides its transforms, "
             "in FFT-work units). Loss: geometric mean over layers of (time of the chosen path) / "
             "(faster path's time).", "",
             "| kind | direction | layers | fitted fixed work | fitted threshold | its loss | committed fixed work | "
             "committed threshold | its loss | its worst layer |", "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, per in fits.items():
        for d, f in per.items():
            lines.append(f"| {kind} | {d} | {f['layers']} | {f.get('fixed_work', 0.0):.3g} | {f['threshold']:.3f} | "
                         f"{f['loss']:.3f} | {f.get('committed_fixed_work', 0.0):.3g} | "
                         f"{f['committed_threshold']:.3f} | {f['committed_loss']:.3f} | {f['worst_committed']:.2f} |")
    lines += ["", "Direct time per multiply-add, median of the other layers over that of narrow kernels (at most "
              f"{cost_model.NARROW_TAPS} columns; > 1: faster on narrow kernels), and the speedup the model "
              "counts (cost_model.NARROW_DIRECT_SPEEDUP):", "",
              "| kind | direction | narrow layers | others | measured speedup | committed |", "|---|---|---|---|---|---|"]
    for kind, per in result.get("narrow", {}).items():
        for d, f in per.items():
            committed = cost_model.direct_speedup(device_type, d, kind, (cost_model.NARROW_TAPS,))
            lines.append(f"| {kind} | {d} | {f['narrow']} | {f['wide']} | {f['speedup']:.2f} | {committed:.2f} |")
    lines += ["", "Taking a gradient along into the other's FFT pass (the joint backward): (joint - the other FFT "
              "gradient alone) / its own FFT gradient alone, median per kind, and the committed cost "
              "(cost_model.JOINT_EXTRA_COST; –: the gradients run apart):", "",
              "| kind | layers | input gradient measured | committed | weight gradient measured | committed |",
              "|---|---|---|---|---|---|"]
    for kind, f in result.get("joint", {}).items():
        cells = []
        for d in ("grad_input", "grad_weight"):
            committed = cost_model.joint_extra_cost(device_type, kind, d)
            cells += [f"{f[d]:.2f}", "–" if committed is None else f"{committed:.2f}"]
        lines.append(f"| {kind} | {f['layers']} | " + " | ".join(cells) + " |")
    lines += ["", "| layer | direction | ratio | model ratio | fft ms | direct ms | faster | committed model picks | "
                  "chosen / faster |", "|---|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        problem = _problem(p["input"], p["weight"], p["groups"])
        model_ratio = problem.model_ratio(device_type, p["direction"])
        pick = problem.model_choice(device_type, p["direction"])
        if p["direct_ms"] is None:
            lines.append(f"| {p['layer']} | {p['direction']} | {p['ratio']:.3f} | {model_ratio:.3f} | {p['fft_ms']:.2f} | "
                         f"not timed | "
                         f"– | {pick} | – |")
            continue
        faster = "fft" if p["fft_ms"] <= p["direct_ms"] else "direct"
        chosen = p["fft_ms"] if pick == "fft" else p["direct_ms"]
        lines.append(f"| {p['layer']} | {p['direction']} | {p['ratio']:.3f} | {model_ratio:.3f} | "
                     f"{p['fft_ms']:.2f} | {p['direct_ms']:.2f} | {faster} | {pick} | {chosen / min(p['fft_ms'], p['direct_ms']):.2f} |")
    return "\n".join(lines) + "\n"


def points_from_results(path: str) -> list:
    """Forward points from a committed benchmark run: its depthwise 'same' rows."""
    with open(path) as f:
        data = json.load(f)
    points = []
    for row in data["rows"]:
        fwd = row.get("forward", {})
        if "fftconv_ext" not in fwd or "F.conv2d" not in fwd or "median_ms" not in fwd["F.conv2d"]:
            continue
        x_shape, k = tuple(row["input"]), row["kernel"]
        w_shape = (x_shape[1], 1, k, k)
        points.append({"layer": row["name"], "input": list(x_shape), "weight": list(w_shape), "groups": x_shape[1],
                       "direction": "forward", "ratio": _ratio(x_shape, w_shape, x_shape[1]),
                       "fft_ms": fwd["fftconv_ext"]["median_ms"], "direct_ms": fwd["F.conv2d"]["median_ms"]})
    return points


def main_calibrate(device: torch.device, args) -> None:
    if getattr(args, "calibrate_from", None):
        with open(args.calibrate_from) as f:
            meta = dict(json.load(f)["meta"])
        meta["source"] = os.path.basename(args.calibrate_from)
        device_type = "cuda" if meta.get("device", "cpu").startswith("cuda") else "cpu"
        meta["device"] = device_type
        points = points_from_results(args.calibrate_from)
        stem = meta["machine"] + "-calibrate-forward"
    else:
        if device.type != "cpu":
            raise SystemExit("--calibrate times the CPU here; on a GPU use --calibrate-from a --device cuda run")
        torch.set_num_threads(args.threads)
        meta = run_meta(device, args.threads, rounds=ROUNDS, passes=PASSES, skip_direct_macs=SKIP_DIRECT_MACS)
        meta["device"] = "cpu"
        meta["cost_profile"] = device_type = cost_model.profile("cpu")
        kind = getattr(args, "calibrate_kind", None)
        if kind is not None and kind not in cost_model.KINDS:
            raise SystemExit(f"--calibrate-kind must be one of {', '.join(cost_model.KINDS)}, got {kind!r}")
        points = measure(quick=args.quick, progress=(lambda s: None) if args.no_progress else print, kind=kind)
        finish_meta(meta, device)
        stem = machine_name(device, args.threads) + "-calibrate"
        if kind is not None:
            meta["kind"] = kind
            stem += "-" + kind.replace(" ", "-").lower()
    result = {"meta": meta, "points": points, "fit": fit(points, device_type), "narrow": narrow_speedups(points),
              "joint": joint_costs(points)}
    for kind, per in result["fit"].items():
        for d, f in per.items():
            print(f"{kind:9s} {d:11s}: fitted fixed work {f['fixed_work']:.3g}, threshold {f['threshold']:.3f} "
                  f"(loss {f['loss']:.3f}); committed {f['committed_fixed_work']:.3g}, "
                  f"{f['committed_threshold']:.3f} (loss {f['committed_loss']:.3f}, worst layer "
                  f"{f['worst_committed']:.2f}) over {f['layers']} layers")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(markdown(result))
    print(f"wrote {os.path.join(args.out, stem)}.json, .md")
