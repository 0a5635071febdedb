"""FiT and ViT models, the shared front end, and the training command."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import run_processes

from fftconv_ext import models, train
from fftconv_ext.models.fit import FourierBlock


class _Fft2Real(torch.nn.Module):
    def forward(self, x):
        return torch.fft.fft2(x).real


def test_fit_matches_a_torch_fft_reference_float64():
    torch.manual_seed(0)
    m = models.FiT(img_size=32, patch_size=4, num_classes=10, embed_dim=48, depth=3, mlp_dim=96).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    y = m(x)
    assert y.shape == (2, 10)
    for blk in m.blocks:
        blk.mix = _Fft2Real()
    ref = m(x)
    assert ((y - ref).abs().max() / ref.abs().max()).item() <= 1e-10


def test_fit_block_structure():
    blk = FourierBlock(16, 32).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    h = F.layer_norm(x + torch.fft.fft2(x).real, (16,), blk.norm1.weight, blk.norm1.bias)
    ref = F.layer_norm(h + blk.mlp(h), (16,), blk.norm2.weight, blk.norm2.bias)
    assert torch.allclose(blk(x), ref, rtol=1e-12, atol=1e-12)


def test_fit_base_parameter_count():
    d, mlp, depth, p, classes = 768, 2048, 12, 16, 1000
    m = models.fit_base(img_size=224, patch_size=p, num_classes=classes)
    grid = (224 // p) ** 2
    front = 3 * p * p * d + d + d + (1 + grid) * d
    block = (d * mlp + mlp) + (mlp * d + d) + 4 * d
    head = (d * d + d) + (d * classes + classes)
    assert sum(q.numel() for q in m.parameters()) == front + depth * block + head


def test_vit_attention_matches_softmax_reference():
    torch.manual_seed(0)
    m = models.ViT(img_size=16, patch_size=4, num_classes=5, embed_dim=24, depth=1, heads=3, mlp_dim=48).double()
    attn = m.blocks[0].attn
    x = torch.randn(2, 17, 24, dtype=torch.float64)
    q, k, v = attn.qkv(x).view(2, 17, 3, 3, 8).permute(2, 0, 3, 1, 4)
    w = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1)
    ref = attn.proj((w @ v).transpose(1, 2).reshape(2, 17, 24))
    assert torch.allclose(attn(x), ref, rtol=1e-10, atol=1e-12)
    assert m(torch.randn(3, 3, 16, 16, dtype=torch.float64)).shape == (3, 5)


def test_vit_base_config():
    m = models.vit_base(img_size=32, patch_size=4, num_classes=10)
    blk = m.blocks[0]
    assert len(m.blocks) == 12 and blk.attn.heads == 12 and blk.mlp[0].out_features == 3072
    assert blk.attn.qkv.in_features == 768


@pytest.mark.parametrize("build", [models.fit_tiny, models.vit_tiny])
def test_other_resolution_interpolates_position_embedding(build):
    m = build(img_size=32, patch_size=4, num_classes=10, depth=1).eval()
    front = m.front
    assert front.position_embedding(8, 8) is front.pos_embed
    pe = front.position_embedding(12, 10)
    assert pe.shape == (1, 1 + 120, front.pos_embed.shape[-1])
    assert torch.equal(pe[:, :1], front.pos_embed[:, :1])
    # Upsampling a constant grid keeps it constant (a property of the interpolation, not of our code).
    with torch.no_grad():
        front.pos_embed[:, 1:] = 0.25
    assert torch.allclose(front.position_embedding(12, 10)[:, 1:], torch.full((1, 120, pe.shape[-1]), 0.25),
                          atol=1e-6)
    assert m(torch.randn(2, 3, 48, 40)).shape == (2, 10)


def test_front_end_errors():
    with pytest.raises(ValueError, match="smaller than patch_size"):
        models.fit_tiny(img_size=2, patch_size=4)
    m = models.fit_tiny(img_size=32, patch_size=4, depth=1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        m(torch.randn(3, 32, 32))


def test_fit_half_precision_forward_backward():
    m = models.fit_tiny(img_size=16, patch_size=4, num_classes=3, depth=1).to(torch.bfloat16)
    x = torch.randn(2, 3, 16, 16, dtype=torch.bfloat16)
    y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad.float()).all() for p in m.parameters())


# ---- training --------------------------------------------------------------------

def test_warmup_cosine_schedule():
    assert train.warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert train.warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert train.warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert train.warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert train.warmup_cosine(100, 10, 100) == pytest.approx(0.0, abs=1e-12)


def test_augment_crops_windows_and_flips():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        y = train.augment(x, 2, g)
        padded = F.pad(x, (2, 2, 2, 2))
        for b in range(2):
            windows = [padded[b, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
            assert any(torch.equal(y[b], w) or torch.equal(y[b], w.flip(-1)) for w in windows)


def test_cifar_pickle_reader(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(rng.integers(0, 10, 4))}, f)
    tx, ty, vx, vy = train.load_cifar10(str(tmp_path))
    assert tx.shape == (20, 3, 32, 32) and tx.dtype == torch.uint8 and ty.shape == (20,)
    assert vx.shape == (4, 3, 32, 32)
    with open(tmp_path / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    # Channel-major rows: first 1024 bytes are the red plane of image 0.
    assert torch.equal(vx[0, 0].flatten(), torch.from_numpy(raw[b"data"][0, :1024].astype(np.uint8)))
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        train.load_cifar10(str(tmp_path / "missing"))


TINY = ["--model", "fit_tiny", "--embed-dim", "32", "--depth", "2", "--mlp-dim", "64", "--img-size", "16",
        "--synthetic-train", "512", "--synthetic-test", "128", "--batch-size", "32", "--lr", "3e-3",
        "--warmup-epochs", "0.5", "--no-progress", "--device", "cpu", "--seed", "3"]


@pytest.mark.training
def test_tiny_fit_trains_and_resumes(tmp_path, capsys):
    straight = train.train(train.parse_args(TINY + ["--epochs", "3", "--out", str(tmp_path / "a")]))
    losses = straight["step_losses"]
    assert len(losses) == 3 * 16
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.2, "loss did not decrease"
    assert straight["test_acc"][-1] > 0.3  # 10 classes: chance is 0.1

    first = train.train(train.parse_args(TINY + ["--epochs", "3", "--stop-after", "2", "--out", str(tmp_path / "b")]))
    assert first["epoch"] == [1, 2]
    resumed = train.train(train.parse_args(TINY + ["--epochs", "3", "--out", str(tmp_path / "b"), "--resume"]))
    assert resumed["epoch"] == [1, 2, 3]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    for k in a:  # resuming continues exactly where the first run stopped
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k
    log = (tmp_path / "b" / "log.jsonl").read_text().strip().splitlines()
    assert len(log) == 3 and '"test_acc"' in log[-1]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train.train(train.parse_args(TINY + ["--epochs", "1", "--out", str(tmp_path), "--resume"]))


@pytest.mark.subprocess
@pytest.mark.training
def test_vit_trains_through_the_command_line(tmp_path):
    args = ["--model", "vit_tiny", "--embed-dim", "24", "--depth", "1", "--mlp-dim", "48", "--img-size", "16",
            "--synthetic-train", "64", "--synthetic-test", "32", "--batch-size", "16", "--epochs", "1",
            "--no-progress", "--device", "cpu", "--out", str(tmp_path)]
    r = subprocess.run([sys.executable, "-m", "fftconv_ext.train", *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"epoch": 1' in r.stdout and (tmp_path / "last.pt").exists()


def _torchrun(args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return run_processes([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                          "-m", "fftconv_ext.train", *args], timeout=timeout, env=env)


@pytest.mark.subprocess
@pytest.mark.training
def test_ddp_two_processes_on_cpu(tmp_path):
    # the ranks free the DDP wrapper before the process group: they exit (a stuck rank hit the timeout)
    r = _torchrun(TINY + ["--epochs", "1", "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"epoch": 1' in r.stdout


@pytest.mark.subprocess
@pytest.mark.training
def test_ddp_ranks_exit_when_one_fails(tmp_path):
    # an error on the ranks (here: the run already exists and neither --resume nor --overwrite
    # was given) ends every rank: torchrun reports the failure, nothing waits for a timeout
    (tmp_path / "log.jsonl").write_text("{}\n")
    r = _torchrun(TINY + ["--epochs", "1", "--out", str(tmp_path)], timeout=120)
    assert r.returncode != 0 and "FileExistsError" in r.stderr


@pytest.mark.training
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_trainer_mixed_precision(tmp_path, amp):
    # fp16 runs with a GradScaler, whose state is checkpointed with the rest
    hist = train.train(train.parse_args(TINY + ["--epochs", "2", "--amp", amp, "--out", str(tmp_path)]))
    losses = hist["step_losses"]
    assert all(np.isfinite(losses)) and np.mean(losses[-8:]) < np.mean(losses[:8]), losses
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["scaler"]["scale"] > 1 if amp == "fp16" else ck["scaler"] == {}


@pytest.mark.training
def test_trainer_converts_a_convnet(tmp_path, monkeypatch):
    import fftconv_ext
    converted = []
    real = fftconv_ext.convert

    def spy(model, **kw):
        out = real(model, **kw)
        converted.append(out.fftconv_converted)
        return out
    monkeypatch.setattr(fftconv_ext, "convert", spy)
    args = ["--model", "convnext_tiny", "--convert", "--amp", "bf16", "--img-size", "32", "--synthetic-train", "32",
            "--synthetic-test", "16", "--batch-size", "16", "--epochs", "1", "--no-progress", "--device", "cpu",
            "--out", str(tmp_path)]
    hist = train.train(train.parse_args(args))
    assert converted and len(converted[0]) == 18  # ConvNeXt-T's 3+3+9+3 depthwise 7x7 convolutions
    assert np.isfinite(hist["step_losses"]).all()
