"""The benchmark: fftconv_ext against direct convolution (cuDNN / oneDNN), the
torch.fft compositions and the FFT-convolution packages people use, on
large-kernel depthwise layers.

    python -m fftconv_ext.bench [--device cpu|cuda] [--threads 2] [--quick | --full]
                                [--shapes sweep,models,reference] [--out bench/results]

Suites:
  sweep      RepLKNet's Table 1 setup: depthwise 'same' layers on (B, 384, R, R),
             R in {16, 32, 64}, k in {3, 5, ..., 31} (one layer of the stack timed;
             B reduced on CPU, see the header line)
  models     single layers of ConvNeXt-T, RepLKNet-31B and SLaK-T stages
  reference  depthwise 31x31 on (8, 64, 56, 56), the reference layer

Every result is checked against a float64 F.conv2d reference (max rel err
column); times are medians after warm-up (synchronised on CUDA), with a fixed
thread count; ratios compare implementations inside one run. Writes
<out>/<machine>.json, .md and .png.

Other runs: --models (whole networks, original vs converted), --long
(long_conv1d, LongConv2d), --fit (FiT vs ViT, fourier_mix vs torch.fft).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

import fftconv_ext
from . import impls as impl_registry
from .machine import finish_meta, machine_name, restart_with_fixed_malloc, run_meta, set_auto_mode
from .memory import forward_memory
from .sweep import SWEEP_K_DEFAULT, SWEEP_K_FULL, SWEEP_R
from .report import COMPOSITION_VARIANTS, auto_markdown, markdown, memory_markdown, plot, summary
from .timing import SLOW_PATH_FACTOR, time_call, time_interleaved


# (name, channels, resolution, kernel)
MODEL_LAYERS = [
    ("ConvNeXt-T s1", 96, 56, 7), ("ConvNeXt-T s2", 192, 28, 7),
    ("ConvNeXt-T s3", 384, 14, 7), ("ConvNeXt-T s4", 768, 7, 7),
    ("RepLKNet-31B s1", 128, 56, 31), ("RepLKNet-31B s2", 256, 28, 29),
    ("RepLKNet-31B s3", 512, 14, 27), ("RepLKNet-31B s4", 1024, 7, 13),
    ("SLaK-T s1", 96, 56, 51), ("SLaK-T s2", 192, 28, 49), ("SLaK-T s3", 384, 14, 47),
]


def layers(suites, full: bool, device: torch.device):
    cpu = device.type == "cpu"
    out = []
    if "reference" in suites:
        out.append(("reference", "reference 8x64x56x56 k31", (8, 64, 56, 56), 31))
    if "sweep" in suites:
        batch = (4 if full else 2) if cpu else 32
        for R in SWEEP_R:
            for k in (SWEEP_K_FULL if full else SWEEP_K_DEFAULT):
                out.append(("sweep", f"sweep R{R} k{k}", (batch, 384, R, R), k))
    if "models" in suites:
        batch = 4 if cpu else 32
        for name, c, r, k in MODEL_LAYERS:
            out.append(("models", name, (batch, c, r, r), k))
    return out


def run(device, suites, full, quick, progress=True):
    names = list(impl_registry.FORWARD) if full else list(impl_registry.DEFAULT)
    todo = layers(suites, full, device)
    if quick:
        todo = [t for t in todo if t[0] == "reference" or (t[0] == "sweep" and t[3] in (7, 31))]
    cpu = device.type == "cpu"
    budget = 0.2  # seconds per timing set and layer, after warm-up (the default run stays under 3 minutes)
    # auto against the path it runs is a comparison of identical code: on a shared
    # 2-core machine 100 rounds leave it +-10 % (seen: 1.116 paired on R32 k31,
    # 0.99-1.01 in a dozen reruns), so it gets more rounds than the main set
    auto_budget = 0.5
    try:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="layers", disable=not progress)
    except ImportError:
        bar = None
    rows = []
    gen = torch.Generator().manual_seed(0)
    for suite, name, shape, k in todo:
        n, c, h, w_ = shape
        x = torch.randn(*shape, generator=gen).to(device)
        w = torch.randn(c, 1, k, k, generator=gen).to(device) / k
        b = torch.randn(c, generator=gen).to(device)
        pad = k // 2
        # float64 reference on the first image only: as telling, and a fraction of the
        # cost of a direct 51x51 convolution in float64 over the batch
        ref = F.conv2d(x[:1].double().cpu(), w.double().cpu(), b.double().cpu(), padding=pad, groups=c)
        row = {"suite": suite, "name": name, "input": list(shape), "kernel": k, "forward": {}, "backward": {}}
        fns = {}
        for impl in names:
            fn = impl_registry.FORWARD[impl](x, w, b, pad, c)
            if fn is None:
                continue
            try:  # check the result (and warm up) before timing
                with torch.no_grad():
                    err = ((fn()[:1].double().cpu() - ref).norm() / ref.norm()).item()
                row["forward"][impl] = {"rel_err": err}
                fns[impl] = fn
            except (RuntimeError, MemoryError, ValueError) as e:  # unsupported shape, out of memory: recorded
                row["forward"][impl] = {"error": type(e).__name__, "message": str(e)[:200]}
        with torch.no_grad():  # the checking call above was the warm-up
            pairs = [("fftconv_ext auto", "fftconv_ext"), ("fftconv_ext auto", "fftconv_ext direct")]
            main_pairs = pairs + [("fftconv_ext", v) for v in COMPOSITION_VARIANTS if v in fns]
            for impl, t in time_interleaved(fns, device, warmup=0, rounds=300, max_seconds=budget,
                                            paired=main_pairs).items():
                row["forward"][impl].update(t)
            # auto against its paths alone: the few microseconds auto adds are what is
            # measured, and the big allocations of the other baselines in the same rounds add
            # noise of that size or more (up to 15 % on 10 ms layers). Every path under 20 ms
            # and within SLOW_PATH_FACTOR of the faster one is timed with auto, interleaved; a
            # path over 20 ms or far slower (direct convolution with a large kernel, never
            # auto's choice there) keeps its time from the main rounds.
            trio = ("fftconv_ext auto", "fftconv_ext", "fftconv_ext direct")
            fastest = min((row["forward"][n].get("median_ms", float("inf")) for n in trio[1:] if n in fns),
                          default=float("inf"))
            cheap = [n for n in trio[1:] if n in fns and row["forward"][n]["median_ms"] < 20
                     and row["forward"][n]["median_ms"] <= SLOW_PATH_FACTOR * fastest]
            if all(n in fns for n in trio) and cheap:
                check = time_interleaved({n: fns[n] for n in (trio[0], *cheap)}, device, warmup=1, rounds=2000,
                                         max_seconds=auto_budget, paired=[p for p in pairs if p[1] in cheap],
                                         lockstep=True)
                for path in trio[1:]:
                    if path not in check:
                        check[path] = {"median_ms": row["forward"][path]["median_ms"], "from_main_rounds": True}
                row["auto_check"] = check
        steps = {}
        grad = torch.randn((n,) + tuple(ref.shape[1:]), generator=gen).to(device)
        for impl in impl_registry.BACKWARD:
            fwd = row["forward"].get(impl, {})
            if "median_ms" not in fwd:
                continue
            if fwd["median_ms"] > 100 * row["forward"]["fftconv_ext"].get("median_ms", float("inf")):
                row["backward"][impl] = {"error": "skipped", "message": "forward over 100x slower"}
                continue
            xg, wg, bg = (t.detach().clone().requires_grad_() for t in (x, w, b))
            fn = impl_registry.FORWARD[impl](xg, wg, bg, pad, c)

            def step(fn=fn, xg=xg, wg=wg, bg=bg):
                xg.grad = wg.grad = bg.grad = None
                fn().backward(grad)
            steps[impl] = step
        row["memory"] = forward_memory(x, w, pad, c)
        try:
            row["backward"].update(time_interleaved(steps, device, warmup=1, rounds=30, max_seconds=budget))
        except (RuntimeError, MemoryError, ValueError) as e:
            row["backward"]["error"] = {"error": type(e).__name__, "message": str(e)[:200]}
        rows.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(name)
    if bar is not None:
        bar.close()
    return rows, names


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fftconv_ext.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads, fixed for the run (default 2)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reference layer and k in {7, 31} only")
    mode.add_argument("--full", action="store_true",
                      help="every kernel size, larger CPU batch, every implementation (scipy too)")
    ap.add_argument("--shapes", default="reference,sweep,models",
                    help="comma-separated suites: reference, sweep, models")
    ap.add_argument("--out", default="bench/results", help="folder for <machine>.json, .md, .png")
    ap.add_argument("--models", action="store_true",
                    help="whole networks instead: RepLKNet-31B and ConvNeXt-T at 224x224, original vs converted")
    ap.add_argument("--batch", type=int, default=8, help="batch of --models (default 8)")
    ap.add_argument("--long", action="store_true",
                    help="long convolutions instead: long_conv1d vs torch.fft, LongConv2d vs F.conv2d")
    ap.add_argument("--fit", action="store_true",
                    help="FiT vs ViT latency and memory, and fourier_mix vs torch.fft.fft2(x).real")
    ap.add_argument("--fit-depth", type=int, default=None,
                    help="blocks of FiT/ViT-Base for --fit (default 12 on CUDA, 2 on CPU)")
    ap.add_argument("--train", action="store_true",
                    help="a training step with algo='auto' against 'fft' and 'direct' (sweep layers, RepLKNet-31B "
                         "and ConvNeXt-T converted), and auto's choices in 5 fresh processes")
    ap.add_argument("--heldout", action="store_true",
                    help="algo='auto' on layers kept out of the calibration and the other suites, forward and "
                         "training (writes <machine>-heldout.json, .md)")
    ap.add_argument("--nd", action="store_true",
                    help="the convolution family beyond conv1d/conv2d: transposed and 3-D convolutions against "
                         "F.conv_transpose2d, a torch.fft composition and torch-fftconv")
    ap.add_argument("--calibrate", action="store_true",
                    help="time both paths of every direction on a set of layers and fit algo='auto''s cost model "
                         "(writes <machine>-calibrate.json, .md)")
    ap.add_argument("--calibrate-kind", metavar="KIND",
                    help="with --calibrate: only the layers of one kind, e.g. 'dense 2-D' "
                         "(writes <machine>-calibrate-dense-2-d.json, .md)")
    ap.add_argument("--calibrate-from", metavar="RESULTS_JSON",
                    help="with --calibrate: fit the forward threshold from a committed benchmark run instead")
    ap.add_argument("--auto-benchmark", action="store_true",
                    help="run algo='auto' with fftconv_ext.backends.benchmark = True (files <machine>-benchmark*)")
    ap.add_argument("--glibc-defaults", action="store_true",
                    help="keep glibc's malloc thresholds (by default the harness fixes them: bench/machine.py)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    set_auto_mode(args.auto_benchmark)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.models:
        return main_models(device, args)
    if args.long:
        return main_long(device, args)
    if args.fit:
        return main_fit(device, args)
    if args.train:
        return main_train(device, args)
    if args.nd:
        return main_nd(device, args)
    if args.heldout:
        return main_heldout(device, args)
    if args.calibrate or args.calibrate_from:
        from .calibrate import main_calibrate
        return main_calibrate(device, args)
    suites = [s.strip() for s in args.shapes.split(",") if s.strip()]
    machine = machine_name(device, args.threads)
    meta = run_meta(device, args.threads, fftconv_ext=fftconv_ext.__version__, python=platform.python_version(),
                    built_with_cuda=fftconv_ext.built_with_cuda(),
                    mode="full" if args.full else ("quick" if args.quick else "default"), suites=suites,
                    note=("sweep batch reduced on CPU (2, or 4 with --full) from RepLKNet's 64"
                          if device.type == "cpu" else "sweep batch 32"))
    print(" | ".join(f"{k} {v}" for k, v in meta.items() if k in
                     ("machine", "torch", "threads", "mode", "note")), flush=True)
    t0 = time.time()
    rows, names = run(device, suites, args.full, args.quick, progress=not args.no_progress)
    meta["seconds"] = round(time.time() - t0, 1)
    finish_meta(meta, device)
    summ = summary(rows)
    fwd_md = markdown(rows, names, "forward")
    bwd_md = markdown(rows, list(impl_registry.BACKWARD), "backward")
    lines = [f"{k}: {v:.2f}x" if "speedup" in k else f"{k}: {v:.3f}" for k, v in summ.items()]
    print("\nForward, float32 (ms):\n" + fwd_md)
    print("\nForward + backward (ms):\n" + bwd_md)
    mem_md = memory_markdown(rows)
    auto_md = auto_markdown(rows)
    print("\nalgo='auto' against its two paths, timed alone (layers where both are cheap):\n" + auto_md)
    print("\nPeak extra memory of a forward call (fftconv_ext, beyond its output):\n" + mem_md)
    print("\nSummary (ratios inside this run):\n  " + "\n  ".join(lines))
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, machine)
    png = plot(rows, [n for n in names if n != "fftconv_ext auto"], base + ".png",
               f"{machine}, torch {torch.__version__}, {meta['threads']} threads, float32 forward")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "summary": summ, "rows": rows}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(f"# fftconv_ext benchmark: {machine}\n\n")
        f.write(", ".join(f"{k}: {v}" for k, v in meta.items()) + "\n\n")
        f.write("## Summary (ratios inside this run)\n\n" + "\n".join(f"- {s}" for s in lines) + "\n\n")
        f.write("## Forward, float32 (median ms)\n\n" + fwd_md + "\n\n")
        f.write("## Forward + backward (median ms)\n\n" + bwd_md + "\n\n")
        f.write("## algo='auto' against its two paths\n\nTimed alone, in interleaved rounds, with each path "
                f"that takes under 20 ms and at most {SLOW_PATH_FACTOR:g}x the faster one (a path marked * kept its "
                "time from the main rounds); the summary's auto ratios come from here where a layer has a "
                "row.\n\n" + auto_md + "\n\n")
        f.write("## Peak extra memory of a forward call\n\nPyTorch allocations during one call beyond its "
                "output (CPU: torch.profiler allocation events; CUDA: max_memory_allocated), with the kernel "
                "spectrum cached (inference); on a first call that computes it (training recomputes it "
                "every step), with how much of that the cache keeps after the call (the padded kernel "
                "spectrum and the copy of the weight that validates it); and with the cache off "
                "(`fftconv_ext.set_cache_limit(0)`: each group block's kernel spectra made beside its "
                "chunk, nothing kept).\n\n" + mem_md + "\n")
        if png:
            f.write(f"\n![time against kernel size]({os.path.basename(png)})\n")
    print(f"\nwrote {base}.json, .md" + (", .png" if png else "") + f" in {meta['seconds']} s")
    if args.full:  # the whole family too: transposed and 3-D convolutions
        main_nd(device, args)


def write_suite(out: str, machine: str, suite: str, meta: dict, payload: dict, title: str, intro: str,
                md: str) -> None:
    """<out>/<machine>-<suite>.json (meta and payload) and .md (title, meta, intro, tables)."""
    if "quiet" not in meta:
        finish_meta(meta, torch.device(meta["device"]))
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, f"{machine}-{suite}")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, **payload}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(f"# {title}\n\n" + ", ".join(f"{k}: {v}" for k, v in meta.items()) + f"\n\n{intro}\n\n{md}\n")
    print(f"wrote {base}.json and .md")


def suite_start(device: torch.device, args, **extra):
    """(machine name, run meta, progress printer or None) of a suite run, its meta printed."""
    machine = machine_name(device, args.threads)
    meta = run_meta(device, args.threads, **extra)
    print(" | ".join(f"{k} {v}" for k, v in meta.items()), flush=True)
    say = None if args.no_progress else (lambda m: print("  " + m, flush=True))
    return machine, meta, say


def main_long(device: torch.device, args) -> None:
    from .long import long_markdown, run_long
    machine, meta, _ = suite_start(device, args)
    res = run_long(device)
    md = long_markdown(res)
    print(md)
    write_suite(args.out, machine, "long", meta, {**res}, f"Long convolutions: {machine}",
                "Medians of interleaved rounds; ratios inside this run.", md)


def main_nd(device: torch.device, args) -> None:
    from .nd import plot_family, run_3d, run_transposed, summary_3d, transposed_markdown, transposed_summary
    machine, meta, say = suite_start(device, args)
    with tempfile.TemporaryDirectory() as cache, fftconv_ext.backends.flags(cache_dir=cache):
        rows = run_transposed(device, budget=0.4 if args.quick else 1.5, progress=say)
        rows3 = run_3d(device, budget=1.0 if args.quick else 3.0, progress=say)
    summ, summ3 = transposed_summary(rows), summary_3d(rows3)
    md = ("## Transposed convolutions (2-D)\n\n" + transposed_markdown(rows, summ) +
          "\n\n## 3-D convolutions\n\n" + transposed_markdown(rows3, summ3, "float32 direct"))
    print(md)
    os.makedirs(args.out, exist_ok=True)
    png = plot_family({"transposed convolutions (2-D)": rows, "3-D convolutions": rows3},
                      os.path.join(args.out, f"{machine}-nd.png"), f"{machine}, float32, forward")
    if png:
        md += f"\n\n![forward time per layer]({os.path.basename(png)})"
    write_suite(args.out, machine, "nd", meta, {"transposed": rows, "summary": summ, "3d": rows3, "summary_3d": summ3},
                f"The convolution family: {machine}",
                "Medians of interleaved rounds, ratios inside this run; algo='auto' as a user gets it (its "
                "first call made before the timing). Forward rows: every implementation in "
                "lockstep rounds, then those under 60 ms (2-D) or 200 ms (3-D) and within 4x of the fastest again "
                "among themselves, in up to 200 rounds within the budget, auto paired with "
                "each of its paths.", md)


def main_heldout(device: torch.device, args) -> None:
    from .heldout import PROCESSES, heldout_markdown, run_heldout
    machine, meta, say = suite_start(device, args)
    with tempfile.TemporaryDirectory() as cache, fftconv_ext.backends.flags(cache_dir=cache):
        rows = run_heldout(device, budget=0.3 if args.quick else 1.5, progress=say,
                           processes=1 if args.quick else PROCESSES, threads=args.threads)
    md = heldout_markdown(rows)
    print(md)
    write_suite(args.out, machine, "heldout", meta, {"rows": rows}, f"Held-out layers, algo='auto': {machine}",
                "Layers in neither the calibration nor the other suites. Forward (no gradients) and forward + "
                "backward (input, weight and bias gradients); medians of lockstep rounds, auto paired with the "
                f"faster path in the same rounds; each figure the median over {1 if args.quick else PROCESSES} "
                "fresh processes run one after another; ratios inside this run.", md)


def main_train(device: torch.device, args) -> None:
    from .train_step import run_stability, run_train, train_markdown
    batch = 2 if device.type == "cpu" else 32
    machine, meta, _ = suite_start(device, args, **{"sweep batch": batch,
                                                   "models": "batch 2 at 64x64, converted with algo='auto'/'fft'/'direct'"})
    with tempfile.TemporaryDirectory() as cache, fftconv_ext.backends.flags(cache_dir=cache):
        fftconv_ext.algo.clear_memory()  # auto starts from nothing
        rows = run_train(device, batch, full=args.full)
    # the default mode's choices in fresh processes (benchmark mode's depend on timings)
    stability = run_stability(batch, args.threads) if device.type == "cpu" and not args.auto_benchmark else {}
    md = train_markdown(rows, stability)
    print(md)
    write_suite(args.out, machine, "train", meta, {"rows": rows, "stability": stability},
                f"Training step, algo='auto' against its paths: {machine}",
                "Forward, backward (input and weight gradients) and an SGD step; medians of interleaved rounds, "
                "ratios inside this run. Where one path is over 3x slower than the other, auto is timed again "
                "against the faster one alone (the slow path would end the rounds after 3).", md)


def main_fit(device: torch.device, args) -> None:
    from .fit import default_depth, fit_markdown, run_fourier_mix, run_models
    depth = args.fit_depth or default_depth(device)
    machine, meta, say = suite_start(device, args, fit_depth=depth)
    t0 = time.time()
    mix = run_fourier_mix(device)
    rows = run_models(device, depth, args.threads, progress=say)
    meta["seconds"] = round(time.time() - t0, 1)
    finish_meta(meta, device)
    md = fit_markdown(mix, rows, depth)
    print(md)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, machine + "-fit")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "fourier_mix": mix, "models": rows}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(f"# FiT vs ViT: {machine}\n\n" + ", ".join(f"{k}: {v}" for k, v in meta.items())
                + "\n\nfourier_mix: medians of interleaved rounds in one process. Models: each cell its own "
                "process (median after warm-up; peak memory above the state before the first forward: "
                "process high-water RSS on CPU, max_memory_allocated on CUDA); parameters of the full "
                "12-block models.\n\n" + md + "\n")
    print(f"wrote {base}.json and .md in {meta['seconds']} s")


def main_models(device: torch.device, args) -> None:
    from .models import models_markdown, run_models
    machine, meta, _ = suite_start(device, args, batch=args.batch, resolution=224)
    rows = run_models(device, args.batch)
    finish_meta(meta, device)
    md = models_markdown(rows)
    print(md)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, machine + "-models")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(f"# Whole-network inference: {machine}\n\n" + ", ".join(f"{k}: {v}" for k, v in meta.items())
                + "\n\nOriginal vs fftconv_ext.convert(model) (RepLKNet re-parameterised on both sides), "
                "medians of interleaved runs, float32.\n\n" + md + "\n")
    print(f"wrote {base}.json and .md")


if __name__ == "__main__":
    if "--glibc-defaults" not in sys.argv[1:]:
        restart_with_fixed_malloc(sys.argv[1:])
    main()
