"""Train a model of fftconv_ext.models on CIFAR-10 (or a synthetic stand-in): ``python -m fftconv_ext.train``.

    python -m fftconv_ext.train --model fit_tiny --data ~/cifar-10-batches-py --epochs 100
    python -m fftconv_ext.train --model fit_tiny --epochs 2            # synthetic data
    torchrun --nproc_per_node 4 -m fftconv_ext.train --model fit_base --data ...   # DDP

CIFAR-10 is read from its standard python-pickle folder (data_batch_1..5,
test_batch) without torchvision. Without --data a synthetic 10-class dataset
of the same shape is generated from the seed, so the command always runs.
AdamW, linear warm-up then cosine decay (per step), label smoothing, random
crop with padding and horizontal flips in plain torch, mixed precision
(``--amp bf16|fp16``; bfloat16 by default on CUDA; float16 with a GradScaler),
``--convert`` to train the model after ``fftconv_ext.convert()``,
per-epoch train loss and test accuracy, checkpoints (``last.pt``) that
``--resume`` continues from, seeds, and DDP when launched by torchrun.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pickle
import random
import time
import traceback
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .models import TRANSFORMERS, create_model, list_models

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


# ---- data --------------------------------------------------------------------

def load_cifar10(folder: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x uint8 (50000, 3, 32, 32), train_y, test_x, test_y) from the python-pickle folder."""
    def read(name):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"--data: {path} not found (expected the cifar-10-batches-py folder)")
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = torch.from_numpy(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).copy())
        return x, torch.tensor(d[b"labels"], dtype=torch.long)

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read("test_batch")
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), test_x, test_y


def synthetic_dataset(n_train: int, n_test: int, img_size: int, num_classes: int, seed: int):
    """Images whose class is a fixed random low-frequency pattern plus noise: learnable, deterministic."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(num_classes, 3, 4, 4, generator=g)
    patterns = F.interpolate(patterns, size=(img_size, img_size), mode="bilinear", align_corners=False)

    def make(n):
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = 0.6 * patterns[y] + 0.4 * torch.rand(n, 3, img_size, img_size, generator=g)
        return (x * 255).round().to(torch.uint8), y

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return train_x, train_y, test_x, test_y


def normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN, device=x_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=x_uint8.device).view(1, 3, 1, 1)
    return (x_uint8.float() / 255.0 - mean) / std


def augment(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding, then random horizontal flip, per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).to(x.device)
    idx_b = torch.arange(b, device=x.device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_b, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out).contiguous()


# ---- schedule ------------------------------------------------------------------

def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to min_ratio."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ---- distributed -----------------------------------------------------------------

def setup_distributed(device_arg: Optional[str]) -> Tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device_arg:
        device = torch.device(device_arg)
    elif torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        device = torch.device("cpu")
    if world > 1:
        import torch.distributed as dist
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


# ---- training ----------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fftconv_ext.train", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="fit_tiny", choices=list_models(),
                   help="any of fftconv_ext.models.list_models(); --img-size, --patch-size, --depth, --embed-dim, "
                        "--mlp-dim and --dropout apply to the transformers (fit_*, vit_*)")
    p.add_argument("--data", default=None, help="cifar-10-batches-py folder; synthetic data when omitted")
    p.add_argument("--synthetic-train", type=int, default=2048, help="synthetic training images")
    p.add_argument("--synthetic-test", type=int, default=512)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--depth", type=int, default=None, help="override the config's depth")
    p.add_argument("--embed-dim", type=int, default=None, help="override the config's width")
    p.add_argument("--mlp-dim", type=int, default=None)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps in all")
    p.add_argument("--stop-after", type=int, default=None,
                   help="end this run after N epochs (the schedule still spans --epochs); go on with --resume")
    p.add_argument("--batch-size", type=int, default=128, help="per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--crop-padding", type=int, default=4)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default=None,
                   help="mixed precision: torch.autocast in bfloat16 or float16 (fp16 with a GradScaler); "
                        "default bf16 on CUDA, off on the CPU")
    p.add_argument("--convert", action="store_true",
                   help="train the model after fftconv_ext.convert() (its large-kernel convolutions as FFT layers)")
    p.add_argument("--min-kernel-size", type=int, default=7, help="convert()'s threshold, with --convert")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--out", default="runs/train", help="folder for last.pt and log.jsonl")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an OUT that holds a run")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def build_model(args) -> torch.nn.Module:
    kwargs = dict(num_classes=args.num_classes)
    if args.model in TRANSFORMERS:
        kwargs.update(img_size=args.img_size, patch_size=args.patch_size, dropout=args.dropout)
        for key in ("depth", "embed_dim", "mlp_dim"):
            if getattr(args, key) is not None:
                kwargs[key] = getattr(args, key)
    return create_model(args.model, **kwargs)


@torch.no_grad()
def evaluate(model, x_u8, y, batch_size, device, amp: Optional[torch.dtype]) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = normalize(x_u8[i:i + batch_size].to(device))
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model(xb)
        correct += (logits.argmax(-1).cpu() == y[i:i + batch_size]).sum().item()
    return correct / max(1, len(y))


def train(args) -> Dict[str, list]:
    """Run training; returns the history (also written to OUT/log.jsonl by rank 0)."""
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other")
    rank, world, device = setup_distributed(args.device)
    try:
        history = _train(args, rank, world, device)
    except BaseException as e:  # an error or Ctrl-C: this rank exits too, and the others see it
        # The traceback keeps _train's frames, and so the DDP wrapper, alive: clear them first,
        # or destroying the process group under them can deadlock (see _teardown).
        traceback.clear_frames(e.__traceback__)
        _teardown(world, meet=False)  # the other ranks may be inside a collective: no barrier
        raise
    _teardown(world, meet=True)
    return history


def _train(args, rank: int, world: int, device: torch.device) -> Dict[str, list]:
    """train()'s body: everything that holds the process group (the DDP wrapper, its Reducer,
    the optimizer over its parameters) lives in this frame and is gone when it returns."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + rank)
    random.seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    amp_mode = args.amp or ("bf16" if device.type == "cuda" else "off")
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp_mode]
    # float16 gradients underflow without loss scaling; bfloat16 has float32's range
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    if args.data:
        train_x, train_y, test_x, test_y = load_cifar10(args.data)
    else:
        train_x, train_y, test_x, test_y = synthetic_dataset(args.synthetic_train, args.synthetic_test,
                                                             args.img_size, args.num_classes, args.seed)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = build_model(args)
    if args.convert:
        import fftconv_ext
        model = fftconv_ext.convert(model, min_kernel_size=args.min_kernel_size, inplace=True)
    model = model.to(device)
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = max(1, len(train_y) // (args.batch_size * world))
    total_steps = steps_per_epoch * args.epochs
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    warmup = int(args.warmup_epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total_steps))

    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "last.pt")
    start_epoch, step = 0, 0
    history: Dict[str, list] = {"epoch": [], "train_loss": [], "test_acc": [], "step_losses": []}
    log_path = os.path.join(args.out, "log.jsonl")
    if not args.resume and (os.path.exists(ckpt_path) or os.path.exists(log_path)):
        if not args.overwrite:
            raise FileExistsError(f"{args.out} holds a run (last.pt, log.jsonl): pass --resume to continue it or "
                                  "--overwrite to start afresh")
        if rank == 0:
            for path in (ckpt_path, log_path):
                if os.path.exists(path):
                    os.remove(path)
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if "scaler" in ck:
            scaler.load_state_dict(ck["scaler"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch, step, history = ck["epoch"], ck["step"], ck["history"]
        torch.set_rng_state(ck["rng"])
        if start_epoch >= args.epochs or step >= total_steps:
            if rank == 0:
                print(f"{args.out}: the run is already complete ({start_epoch} of {args.epochs} epochs, "
                      f"{step} of {total_steps} steps); nothing to resume", flush=True)
            return history

    gen = torch.Generator().manual_seed(args.seed * 1000 + rank)
    try:
        from tqdm import tqdm
    except ImportError:  # progress bars are optional
        tqdm = None
    last_epoch = args.epochs if args.stop_after is None else min(args.epochs, start_epoch + args.stop_after)
    for epoch in range(start_epoch, last_epoch):
        if step >= total_steps:
            break
        ddp_model.train()
        gen.manual_seed(args.seed * 1000 + epoch * 7919 + rank)
        perm = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(args.seed + epoch))
        perm = perm[rank::world]  # each rank its own shard of the epoch
        batches = range(steps_per_epoch)
        bar = None
        if tqdm is not None and not args.no_progress and rank == 0:
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
            batches = bar
        losses = []
        for i in batches:
            if step >= total_steps:
                break
            idx = perm[i * args.batch_size:(i + 1) * args.batch_size]
            xb = normalize(train_x[idx].to(device, non_blocking=True))
            if not args.no_augment:
                xb = augment(xb, args.crop_padding, gen)
            yb = train_y[idx].to(device)
            with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                loss = F.cross_entropy(ddp_model(xb).float(), yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            losses.append(loss.item())
            history["step_losses"].append(losses[-1])
            if bar is not None:
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        if bar is not None:
            bar.close()
        acc = evaluate(model, test_x, test_y, args.batch_size, device, amp)
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(sum(losses) / max(1, len(losses)))
        history["test_acc"].append(acc)
        if rank == 0:
            line = {"epoch": epoch + 1, "step": step, "train_loss": history["train_loss"][-1], "test_acc": acc,
                    "lr": sched.get_last_lr()[0], "time": time.time()}
            print(json.dumps(line), flush=True)
            with open(os.path.join(args.out, "log.jsonl"), "a") as f:
                f.write(json.dumps(line) + "\n")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch + 1, "step": step,
                        "history": history, "rng": torch.get_rng_state(), "args": vars(args)}, ckpt_path)
    return history


def _teardown(world: int, meet: bool) -> None:
    """Destroy the process group once nothing holds it. A DistributedDataParallel wrapper still
    alive then frees its Reducer later, with the GIL held, and the Reducer's last reference to a
    gloo group joins a gloo thread that waits for the GIL: a rank that never exits. So the
    wrapper (train()'s frame) is gone before this runs, a collection frees what cycles kept, and
    the ranks meet at a barrier (meet=True, a run that ended normally) before the group goes."""
    if world <= 1:
        return
    import torch.distributed as dist
    gc.collect()
    if not dist.is_initialized():
        return
    if meet:
        dist.barrier()
    dist.destroy_process_group()


def main(argv=None):
    train(parse_args(argv))


if __name__ == "__main__":
    main()
