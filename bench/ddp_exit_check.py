"""Does the torchrun trainer exit, every time? Runs `python -m fftconv_ext.train` under torchrun
with 2 CPU ranks N times per model (fit_tiny, and convnext_tiny converted with --convert) and
counts the runs that exited within the time limit with status 0 and left no process behind.

    python bench/ddp_exit_check.py [--runs 20] [--timeout 120]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

MODELS = {
    "fit_tiny": ["--model", "fit_tiny", "--embed-dim", "32", "--depth", "2", "--mlp-dim", "64", "--img-size", "16",
                 "--synthetic-train", "256", "--synthetic-test", "64", "--batch-size", "32"],
    "convnext_tiny --convert": ["--model", "convnext_tiny", "--convert", "--img-size", "32", "--synthetic-train",
                                "64", "--synthetic-test", "32", "--batch-size", "16"],
}


def _descendants(pid: int) -> list:
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def run_once(model_args, timeout: float) -> tuple:
    """(status, seconds, processes left behind)"""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "fftconv_ext.train", *model_args, "--epochs", "1", "--no-progress", "--device", "cpu",
               "--out", out]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = "timeout"
        seconds = time.perf_counter() - t0
        time.sleep(0.5)
        left = _descendants(proc.pid) if proc.poll() is None else []
        # ranks run in sessions of their own: look for them by their command line too
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        if out.encode() in f.read():
                            left.append(int(entry))
                except OSError:
                    pass
        for pid in set(left) | ({proc.pid} if proc.poll() is None else set()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return status, seconds, len(set(left))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    for name, model_args in MODELS.items():
        ok, times = 0, []
        for i in range(args.runs):
            status, seconds, left = run_once(model_args, args.timeout)
            times.append(seconds)
            ok += status == 0 and left == 0
            print(f"{name} run {i + 1}: status {status}, {seconds:.1f} s, {left} processes left behind", flush=True)
        print(f"{name}: {ok} of {args.runs} runs exited cleanly (median {sorted(times)[len(times) // 2]:.1f} s)",
              flush=True)


if __name__ == "__main__":
    main()
