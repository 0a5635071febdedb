"""Tables, summary ratios and the plot of a benchmark run."""
from __future__ import annotations

import math
from typing import Dict, List, Optional


def _ms(row: dict, impl: str, kind: str = "forward") -> Optional[float]:
    r = row[kind].get(impl)
    return None if not isinstance(r, dict) or "median_ms" not in r else r["median_ms"]


COMPOSITION_VARIANTS = ("best torch.fft", "best torch.fft 2-D", "best torch.fft whole batch")


def _fastest_variant(row: dict, impl: str, kind: str = "forward") -> Optional[str]:
    """The variant that stands for a baseline: itself, except "best torch.fft", which is
    the fastest variant of our composition (2-D: timed on CUDA only; whole batch: CPU only)."""
    if impl != "best torch.fft":
        return impl if _ms(row, impl, kind) else None
    timed = [(_ms(row, v, kind), v) for v in COMPOSITION_VARIANTS if _ms(row, v, kind)]
    return min(timed)[1] if timed else None


def _bar(row: dict, impl: str, kind: str = "forward") -> Optional[float]:
    """Time of a baseline as the targets count it (see _fastest_variant)."""
    v = _fastest_variant(row, impl, kind)
    return _ms(row, v, kind) if v else None


def geomean(values: List[float]) -> Optional[float]:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


DIRECT = "fftconv_ext direct"  # auto's direct path (F.conv2d is a baseline beside it)


def _auto_vs_faster(timings: dict) -> Optional[tuple]:
    """(auto / faster path by medians, auto / faster path paired or None) from one set of
    timings of auto and its two paths (fftconv_ext, fftconv_ext direct); None when one is missing."""
    ms = [timings.get(n, {}).get("median_ms") for n in ("fftconv_ext auto", "fftconv_ext", DIRECT)]
    if not all(ms):
        return None
    a, f, d = ms
    faster = "fftconv_ext" if f <= d else DIRECT
    return a / min(f, d), timings["fftconv_ext auto"].get("paired_ratio_vs", {}).get(faster)


def summary(rows: List[dict]) -> Dict[str, object]:
    """The ratios the performance targets are stated in (all inside this run)."""
    out: Dict[str, object] = {}
    sweep = [r for r in rows if r["suite"] == "sweep" and r["kernel"] >= 13]
    for base in ("best torch.fft", "naive torch.fft", "fft-conv-pytorch", "torch-fftconv", "F.conv2d"):
        ratios = [_bar(r, base) / _bar(r, "fftconv_ext") for r in sweep if _bar(r, base) and _bar(r, "fftconv_ext")]
        if ratios:
            out[f"sweep k>=13: geomean speedup vs {base}"] = geomean(ratios)
    # the same, from the ratio of the two times measured in the same round (median over
    # rounds): less moved by a slow spell of a shared machine than a ratio of medians
    paired = []
    for r in sweep:
        v = _fastest_variant(r, "best torch.fft")
        ratio = r["forward"].get("fftconv_ext", {}).get("paired_ratio_vs", {}).get(v) if v else None
        if ratio:
            paired.append(1.0 / ratio)
    if paired and len(paired) == len(sweep):
        out["sweep k>=13: geomean paired speedup vs best torch.fft"] = geomean(paired)
    bwd = [_bar(r, "best torch.fft", "backward") / _bar(r, "fftconv_ext", "backward") for r in sweep
           if _bar(r, "best torch.fft", "backward") and _bar(r, "fftconv_ext", "backward")]
    if bwd:
        out["sweep k>=13: geomean fwd+bwd speedup vs best torch.fft"] = geomean(bwd)
    # auto against the faster of its two paths: from the dedicated three-way timing where the
    # benchmark made one (row["auto_check"], the fast layers), else from the main rounds
    auto, paired = [], []
    for r in rows:
        ratios = _auto_vs_faster(r.get("auto_check") or r["forward"])
        if ratios:
            auto.append(ratios[0])
            if ratios[1] is not None:
                paired.append(ratios[1])
    if auto:
        out["auto: worst time / min(fft, direct)"] = max(auto)
        out["auto: geomean time / min(fft, direct)"] = geomean(auto)
    if paired:
        out["auto: worst paired ratio to the faster path"] = max(paired)
        out["auto: geomean paired ratio to the faster path"] = geomean(paired)
    for r in rows:
        if r["name"] == "reference 8x64x56x56 k31" and _bar(r, "F.conv2d") and _bar(r, "fftconv_ext"):
            out["reference 8x64x56x56 k31: speedup vs F.conv2d"] = _bar(r, "F.conv2d") / _bar(r, "fftconv_ext")
        if r["name"] == "sweep R32 k31" and r["input"][0] == 32 and _bar(r, "fftconv_ext"):
            # the GPU targets' layer: depthwise 31x31 on (32, 384, 32, 32)
            for base in ("best torch.fft", "F.conv2d"):
                if _bar(r, base):
                    out[f"(32, 384, 32, 32) k31: speedup vs {base}"] = _bar(r, base) / _bar(r, "fftconv_ext")
            if _bar(r, "best torch.fft", "backward") and _bar(r, "fftconv_ext", "backward"):
                out["(32, 384, 32, 32) k31: fwd+bwd speedup vs best torch.fft"] = (
                    _bar(r, "best torch.fft", "backward") / _bar(r, "fftconv_ext", "backward"))
    mem = [r["memory"] for r in rows if r.get("memory")]
    if mem:
        out["memory: worst forward extra / output, cached spectrum"] = max(m["cached_extra_over_output"] for m in mem)
        out["memory: worst forward extra / output, first call (spectrum computed)"] = max(
            m["first_call_extra_over_output"] for m in mem)
        if all("cache_off_extra_over_output" in m for m in mem):
            out["memory: worst forward extra / output, first call less the cache entry it keeps"] = max(
                m["first_call_transient_over_output"] for m in mem)
            out["memory: worst forward extra / output, cache off (set_cache_limit(0))"] = max(
                m["cache_off_extra_over_output"] for m in mem)
    return out


def auto_markdown(rows: List[dict]) -> str:
    """auto against its two paths, timed alone (interleaved rounds) on the layers where a
    path is cheap; a path marked * kept its time from the main rounds (over 20 ms)."""
    lines = ["| layer | auto ms | fft ms | direct ms | auto / faster (medians) | auto / faster (paired) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        t = r.get("auto_check")
        if not t:
            continue
        a, f, d = (f"{t[n]['median_ms']:.3f}" + ("*" if t[n].get("from_main_rounds") else "")
                   for n in ("fftconv_ext auto", "fftconv_ext", DIRECT))
        medians, pr = _auto_vs_faster(t)
        lines.append(f"| {r['name']} | {a} | {f} | {d} | {medians:.3f} | " + (f"{pr:.3f} |" if pr else "– |"))
    return "\n".join(lines)


def memory_markdown(rows: List[dict]) -> str:
    lines = ["| layer | output MiB | extra, cached spectrum (MiB, x output) | extra, first call (MiB, x output) "
             "| of which kept in the cache (MiB) | extra, cache off (MiB, x output) |",
             "|---|---|---|---|---|---|"]

    def cell(m, key):
        if f"{key}_bytes" not in m:
            return "–"
        return f"{m[f'{key}_bytes'] / 2**20:.2f} ({m[f'{key}_over_output']:.2f}x)"
    for r in rows:
        m = r.get("memory")
        if not m:
            continue
        kept = m.get("first_call_cache_entry_bytes")
        lines.append(f"| {r['name']} | {m['output_bytes'] / 2**20:.2f} | {cell(m, 'cached_extra')} | "
                     f"{cell(m, 'first_call_extra')} | " + (f"{kept / 2**20:.2f}" if kept is not None else "–")
                     + f" | {cell(m, 'cache_off_extra')} |")
    return "\n".join(lines)


def markdown(rows: List[dict], impls: List[str], kind: str = "forward") -> str:
    present = [i for i in impls if any(_ms(r, i, kind) for r in rows)]
    head = "| layer | input | k | " + " | ".join(f"{i} ms" for i in present) + " | max rel err |"
    lines = [head, "|" + "---|" * (len(present) + 4)]
    for r in rows:
        if not any(_ms(r, i, kind) for i in present):
            continue
        cells = []
        for i in present:
            res = r[kind].get(i)
            if res is None:
                cells.append("–")
            elif "error" in res:
                cells.append(res["error"])
            else:
                cells.append(f"{res['median_ms']:.2f}")
        errs = [v["rel_err"] for v in r[kind].values() if v and "rel_err" in v]
        err = f"{max(errs):.1e}" if errs else "–"
        lines.append(f"| {r['name']} | {'x'.join(map(str, r['input']))} | {r['kernel']} | "
                     + " | ".join(cells) + f" | {err} |")
    return "\n".join(lines)


def plot(rows: List[dict], impls: List[str], path: str, title: str) -> Optional[str]:
    """Time against kernel size per implementation, one panel per resolution (log scale)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sweep = [r for r in rows if r["suite"] == "sweep"]
    res = sorted({r["input"][2] for r in sweep})
    if not res:
        return None
    fig, axes = plt.subplots(1, len(res), figsize=(5 * len(res), 4.2), squeeze=False)
    for ax, R in zip(axes[0], res):
        for impl in impls:
            pts = [(r["kernel"], _ms(r, impl)) for r in sweep if r["input"][2] == R and _ms(r, impl)]
            if pts:
                ks, ts = zip(*sorted(pts))
                ax.plot(ks, ts, marker="o", label=impl)
        ax.set_yscale("log")
        ax.set_xlabel("kernel size k")
        ax.set_ylabel("forward time (ms)")
        ax.set_title(f"{R}x{R}, {sweep[0]['input'][0]}x{sweep[0]['input'][1]} channels")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
