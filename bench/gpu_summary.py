"""The summary table of a GPU check (bench/gpu_check.sh): one row per stage (status, seconds,
what it found) and the GPU targets against what the benchmarks measured. Reads only what the
stages left in the output folder, so it also sums up a check that ran out of time.

    python bench/gpu_summary.py OUT_DIR
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional


def _read(path: str) -> Optional[str]:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def test_counts(out: str, stem: str) -> Dict[str, int]:
    """passed/failed/errors/skipped of a pytest stage: from its junit XML when the run ended,
    else from the verbose log it wrote test by test (a stage that timed out)."""
    xml = os.path.join(out, stem + ".xml")
    if os.path.exists(xml):
        try:
            root = ET.parse(xml).getroot()
            suites = [root] if root.tag == "testsuite" else list(root)
            n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
            return {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"], "failed": n["failures"],
                    "errors": n["errors"], "skipped": n["skipped"]}
        except (ET.ParseError, ValueError):
            pass
    log = _read(os.path.join(out, stem + ".log")) or ""
    words = re.findall(r"::\S+ (PASSED|FAILED|ERROR|SKIPPED)", log)
    return {"passed": words.count("PASSED"), "failed": words.count("FAILED"), "errors": words.count("ERROR"),
            "skipped": words.count("SKIPPED")}


def sanitizer_errors(out: str, stem: str) -> Optional[int]:
    """The ERROR SUMMARY count of a compute-sanitizer log (summed over processes), or None."""
    log = _read(os.path.join(out, stem + ".sanitizer.log"))
    if log is None:
        return None
    found = re.findall(r"ERROR SUMMARY: (\d+) error", log)
    return sum(int(v) for v in found) if found else None


def _stage_result(out: str, name: str) -> str:
    if name in ("memcheck", "racecheck"):
        errs = sanitizer_errors(out, name)
        t = test_counts(out, name)
        return (f"{'?' if errs is None else errs} sanitizer errors; tests {t['passed']} passed, "
                f"{t['failed'] + t['errors']} failed")
    if name.startswith("tests:"):
        t = test_counts(out, "tests-" + name.split(":", 1)[1])
        return f"{t['passed']} passed, {t['failed'] + t['errors']} failed, {t['skipped']} skipped"
    if name == "build":
        return "see build.log"
    return ""


def stages(out: str) -> List[dict]:
    rows = []
    try:
        with open(os.path.join(out, "stages.tsv")) as f:
            for r in csv.DictReader(f, delimiter="\t"):
                r["result"] = _stage_result(out, r["stage"])
                rows.append(r)
    except OSError:
        pass
    return rows


def targets(out: str) -> List[tuple]:
    """(target, needed, measured, met) from gpu_pipelines.json (float32, ratios inside one run)."""
    text = _read(os.path.join(out, "gpu_pipelines.json"))
    if text is None:
        return []
    data = json.loads(text)
    rows = data.get("rows", [])
    res = []
    big = [r for r in rows if int(r["layer"].rsplit("k", 1)[1]) >= 13]
    for kind in ("forward", "fwd+bwd"):
        ratios = [r["best_composition_over_fastest_pipeline"] for r in big if r["pass"] == kind]
        if ratios:
            res.append((f"sweep k>=13 {kind}: fastest pipeline vs best torch.fft (worst layer)", ">= 1.0x",
                        f"{min(ratios):.2f}x", min(ratios) >= 1.0))
    target = [r for r in rows if r["layer"] == "32x384x32x32 k31" and r["pass"] == "forward"]
    if target:
        r = target[0]
        res.append(("(32, 384, 32, 32) k31 vs best torch.fft", ">= 2x",
                    f"{r['best_composition_over_fastest_pipeline']:.2f}x",
                    r["best_composition_over_fastest_pipeline"] >= 2.0))
        res.append(("(32, 384, 32, 32) k31 vs cuDNN", ">= 5x", f"{r['cudnn_over_fastest_pipeline']:.2f}x",
                    r["cudnn_over_fastest_pipeline"] >= 5.0))
    for key, label in (("auto_over_fastest_candidate", "auto (default) / its fastest candidate"),
                       ("auto_unverified_over_fastest_candidate", "auto (cuda_unverified) / its fastest candidate")):
        vals = [r[key] for r in rows if key in r]
        if vals:
            res.append((label + " (worst layer)", "<= 1.10", f"{max(vals):.3f}", max(vals) <= 1.10))
    mems = [m for r in rows if r["pass"] == "forward" for p, m in r["extra_memory_over_output"].items()
            if p in ("rows", "planes", "small_plane")]
    if mems:
        res.append(("forward extra memory / output (worst pipeline and layer)", "<= 2", f"{max(mems):.2f}",
                    max(mems) <= 2.0))
    return res


def markdown(out: str) -> str:
    lines = ["# GPU check summary", "", "| stage | status | seconds | limit | result |", "|---|---|---|---|---|"]
    for r in stages(out):
        lines.append(f"| {r['stage']} | {r['status']} | {r['seconds']} | {r['limit']} | {r['result']} |")
    t = targets(out)
    if t:
        lines += ["", "| target | needed | measured | met |", "|---|---|---|---|"]
        lines += [f"| {name} | {need} | {got} | {'yes' if ok else 'NO'} |" for name, need, got, ok in t]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(markdown(sys.argv[1]), end="")


if __name__ == "__main__":
    main()
