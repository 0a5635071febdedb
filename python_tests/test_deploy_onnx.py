"""ONNX export of converted models: the convolution family as ONNX's own Conv / ConvTranspose
(the same nodes as the unconverted model's), fourier_mix as cosine/sine MatMuls and long_conv1d
as a depthwise Conv; each graph run in onnxruntime against eager PyTorch, scipy or float64."""
from __future__ import annotations

import collections
import warnings

import pytest
import torch
from torch import nn

import fftconv_ext
from fftconv_ext import models

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.compile
OPSET = 18
CONV_OPS = ("Conv", "ConvTranspose", "Pad")


def _export(model, args, path, dynamo, dynamic_shapes=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(dynamo=dynamo, opset_version=OPSET)
        if dynamo:
            kw["dynamic_shapes"] = dynamic_shapes
        elif dynamic_shapes is not None:
            kw["dynamic_axes"] = dynamic_shapes
        torch.onnx.export(model, args, str(path), **kw)
    return onnx.load(str(path))


def _op_counts(graph_model):
    return collections.Counter(n.op_type for n in graph_model.graph.node)


def _run_ort(path, *arrays):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), arrays)}
    return torch.from_numpy(session.run(None, feeds)[0])


def _rel(a, b):
    return float((a - b).norm() / b.norm())


class Depthwise3d(nn.Module):
    """A 3-D depthwise network with 21^3 kernels (as Rep3D-style medical segmentation uses)."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = nn.Conv3d(1, c, 3, padding=1)
        self.dw = nn.Conv3d(c, c, 21, padding=10, groups=c)
        self.pw = nn.Conv3d(c, 2, 1)

    def forward(self, x):
        return self.pw(torch.relu(self.dw(torch.relu(self.stem(x)))))


class Decoder(nn.Module):
    """Upsampling decoder: transposed convolutions (stride 2 with output_padding, and a large
    kernel) between ordinary ones, a circular-padded layer among them."""

    def __init__(self):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1)
        self.mix = nn.Conv2d(6, 6, 9, padding=4, groups=6, padding_mode="circular")
        self.up2 = nn.ConvTranspose2d(6, 3, 15, stride=2, padding=7, output_padding=1)
        self.up1d = nn.ConvTranspose1d(3, 3, 13, padding=6, groups=3)

    def forward(self, x):
        y = self.up2(torch.relu(self.mix(torch.relu(self.up1(x)))))
        n, c, h, w = y.shape
        return self.up1d(y.reshape(n, c, h * w)).reshape(n, c, h, w)


class LongConvNet(nn.Module):
    def __init__(self, c=8, length=96):
        super().__init__()
        self.sg = fftconv_ext.nn.SGConv1d(c, length, kernel_dim=16)
        self.sg_bi = fftconv_ext.nn.SGConv1d(c, length, kernel_dim=16, bidirectional=True)
        self.proj = nn.Conv1d(c, c, 1)

    def forward(self, u):
        return self.proj(self.sg_bi(torch.nn.functional.gelu(self.sg(u))))


def _conv_cases():
    torch.manual_seed(0)
    return {
        "convnext_tiny": (lambda: models.convnext_tiny(num_classes=10), (1, 3, 64, 64)),
        "depthwise3d_21": (Depthwise3d, (1, 1, 24, 24, 24)),
        "decoder": (Decoder, (1, 8, 6, 6)),
    }


@pytest.mark.models
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("name", ["convnext_tiny", "depthwise3d_21", "decoder"])
def test_converted_model_exports_as_the_unconverted_convolutions(name, dynamo, tmp_path):
    build, shape = _conv_cases()[name]
    torch.manual_seed(0)
    plain = build().eval()
    converted = fftconv_ext.convert(plain, inplace=False).eval()
    assert any(type(m).__module__.startswith("fftconv_ext") for m in converted.modules())
    x = torch.randn(shape)
    ref = _export(plain, (x,), tmp_path / "plain.onnx", dynamo)
    got = _export(converted, (x,), tmp_path / "converted.onnx", dynamo)
    plain_ops, conv_ops = _op_counts(ref), _op_counts(got)
    assert not [op for op in conv_ops if op.startswith("fftconv")], conv_ops
    assert conv_ops == plain_ops, (plain_ops, conv_ops)
    assert conv_ops["Conv"] + conv_ops["ConvTranspose"] > 0
    with torch.no_grad():
        eager = converted(x)
    assert _rel(_run_ort(tmp_path / "converted.onnx", x), eager) <= 1e-5


@pytest.mark.models
@pytest.mark.slow
def test_replknet_31b_exports_as_the_unconverted_convolutions(tmp_path):
    torch.manual_seed(0)
    plain = models.replknet_31b(num_classes=10).eval()
    converted = fftconv_ext.convert(plain, inplace=False).eval()
    x = torch.randn(1, 3, 64, 64)
    plain_ops = _op_counts(_export(plain, (x,), tmp_path / "plain.onnx", True))
    conv_ops = _op_counts(_export(converted, (x,), tmp_path / "converted.onnx", True))
    assert conv_ops == plain_ops and conv_ops["Conv"] > 0
    with torch.no_grad():
        eager = converted(x)
    assert _rel(_run_ort(tmp_path / "converted.onnx", x), eager) <= 1e-5


def _conv_attrs(graph_model):
    out = []
    for n in graph_model.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            out.append((n.op_type, sorted((a.name, tuple(a.ints) or a.i) for a in n.attribute
                                          if a.name in ("strides", "pads", "dilations", "group"))))
    return out


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_conv_nodes_keep_stride_padding_dilation_groups(dynamo, tmp_path):
    torch.manual_seed(1)
    plain = nn.Sequential(nn.Conv2d(4, 8, 13, stride=2, padding=(5, 7), dilation=(1, 2), groups=2),
                          nn.ConvTranspose2d(8, 4, 11, stride=3, padding=2, output_padding=1, groups=4)).eval()
    converted = fftconv_ext.convert(plain, inplace=False, algo="fft").eval()
    x = torch.randn(2, 4, 30, 34)
    ref = _conv_attrs(_export(plain, (x,), tmp_path / "p.onnx", dynamo))
    got = _conv_attrs(_export(converted, (x,), tmp_path / "c.onnx", dynamo))
    assert got == ref and len(got) == 2
    with torch.no_grad():
        eager = converted(x)
    assert _rel(_run_ort(tmp_path / "c.onnx", x), eager) <= 1e-5


def test_dynamic_batch_and_spatial_size(tmp_path):
    torch.manual_seed(2)
    converted = fftconv_ext.convert(nn.Sequential(nn.Conv2d(3, 3, 17, padding=8, groups=3), nn.ReLU()),
                                    inplace=False).eval()
    x = torch.randn(2, 3, 32, 32)
    b, h = torch.export.Dim("b", min=1, max=8), torch.export.Dim("h", min=16, max=128)
    _export(converted, (x,), tmp_path / "d.onnx", True, dynamic_shapes=({0: b, 2: h},))
    for shape in ((1, 3, 20, 32), (5, 3, 57, 32)):
        x2 = torch.randn(shape)
        with torch.no_grad():
            eager = converted(x2)
        assert _rel(_run_ort(tmp_path / "d.onnx", x2), eager) <= 1e-5


@pytest.mark.models
def test_fit_exports_and_matches_eager(tmp_path):
    torch.manual_seed(3)
    model = models.fit_tiny(num_classes=10, img_size=32, patch_size=4).eval()
    x = torch.randn(2, 3, 32, 32)
    ops = _op_counts(_export(model, (x,), tmp_path / "fit.onnx", True))
    assert ops["MatMul"] > 0 and not [op for op in ops if op.startswith("fftconv")], ops
    with torch.no_grad():
        eager = model(x)
    assert _rel(_run_ort(tmp_path / "fit.onnx", x), eager) <= 1e-5


@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
def test_fourier_mix_exports_and_matches_float64_fft(norm, tmp_path):
    layer = fftconv_ext.nn.FourierMix(norm)
    x = torch.randn(2, 37, 24)
    b = torch.export.Dim("b", min=1, max=8)
    t = torch.export.Dim("t", min=2, max=512)
    _export(layer, (x,), tmp_path / "fm.onnx", True, dynamic_shapes=({0: b, 1: t},))
    for shape in ((2, 37, 24), (3, 65, 24), (1, 197, 24)):  # the ViT-style token counts, primes
        x = torch.randn(shape)
        ref = torch.fft.fft2(x.double(), norm=norm).real
        assert _rel(_run_ort(tmp_path / "fm.onnx", x).double(), ref) <= 1e-6


def test_long_convolution_model_exports_and_matches_eager(tmp_path):
    torch.manual_seed(4)
    model = LongConvNet().eval()
    u = torch.randn(2, 8, 96)
    with torch.no_grad():
        eager = model(u)  # fixes the kernels' normalisation
    ops = _op_counts(_export(model, (u,), tmp_path / "lc.onnx", True))
    assert not [op for op in ops if op.startswith("fftconv")], ops
    assert _rel(_run_ort(tmp_path / "lc.onnx", u), eager) <= 1e-5


@pytest.mark.parametrize("causal", [True, False])
def test_long_conv1d_matches_scipy_in_onnxruntime(causal, tmp_path):
    scipy_signal = pytest.importorskip("scipy.signal")
    import numpy as np

    class Net(nn.Module):
        def forward(self, u, k, d):
            return fftconv_ext.long_conv1d(u, k, d, causal=causal)

    u, k, d = torch.randn(2, 3, 50), torch.randn(3, 20), torch.randn(3)
    _export(Net(), (u, k, d), tmp_path / "l.onnx", True)
    got = _run_ort(tmp_path / "l.onnx", u, k, d).double().numpy()
    un, kn = u.double().numpy(), k.double().numpy()
    if causal:
        ref = np.stack([[scipy_signal.convolve(un[b, c], kn[c])[:50] for c in range(3)] for b in range(2)])
    else:
        kp = np.pad(kn, ((0, 0), (0, 30)))
        ref = np.real(np.fft.ifft(np.fft.fft(un) * np.fft.fft(kp)))
    ref = ref + d.double().numpy()[:, None] * un
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) <= 1e-5


def test_argument_errors_are_raised_while_exporting(tmp_path):
    class Bad(nn.Module):
        def forward(self, x):
            return fftconv_ext.conv2d(x, torch.ones(4, 2, 3, 3), groups=3)

    with pytest.raises(Exception, match="groups=3"):
        _export(Bad(), (torch.randn(1, 4, 8, 8),), tmp_path / "bad.onnx", False)


def test_eager_calls_after_an_export_use_the_operator_again(tmp_path):
    converted = fftconv_ext.convert(nn.Conv2d(2, 2, 15, padding=7, groups=2), inplace=False, algo="fft")
    x = torch.randn(1, 2, 20, 20)
    _export(converted, (x,), tmp_path / "e.onnx", False)
    from torch.profiler import profile
    with profile() as prof:
        converted(x)
    names = {e.name for e in prof.events()}
    assert any(n.startswith("fftconv::") for n in names), names
