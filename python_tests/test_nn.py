"""FFTConv1d/FFTConv2d as drop-ins for nn.Conv1d/nn.Conv2d, and convert()/revert()."""
import pytest
import torch
from torch import nn

import fftconv_ext
from fftconv_ext.nn import FFTConv1d, FFTConv2d
from conftest import rel_err


def _pair(mode="zeros", dtype=torch.float64, **kw):
    torch.manual_seed(0)
    ref = nn.Conv2d(6, 6, 7, padding=3, groups=3, padding_mode=mode, dtype=dtype, **kw)
    ours = FFTConv2d(6, 6, 7, padding=3, groups=3, padding_mode=mode, dtype=dtype, algo="fft", **kw)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_fftconv2d_matches_conv2d(mode):
    ref, ours = _pair(mode)
    x = torch.randn(2, 6, 15, 16, dtype=torch.float64)
    assert rel_err(ours(x), ref(x)) <= 1e-10


def test_state_dict_round_trip_and_repr():
    ref, ours = _pair()
    assert list(ours.state_dict()) == list(ref.state_dict())
    back = nn.Conv2d(6, 6, 7, padding=3, groups=3, dtype=torch.float64)
    back.load_state_dict(ours.state_dict())
    for a, b in zip(back.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    assert "FFTConv2d" in repr(ours) and "algo='fft'" in repr(ours)
    assert isinstance(ours, nn.Conv2d)


def test_same_initialisation_as_torch():
    torch.manual_seed(3)
    a = nn.Conv2d(4, 8, 5, groups=2)
    torch.manual_seed(3)
    b = FFTConv2d(4, 8, 5, groups=2)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


@pytest.mark.parametrize("edit", ["inplace", "optimizer", "load_state_dict", "to_double"])
def test_eval_cache_invalidated_by_weight_changes(edit):
    ref, ours = _pair(dtype=torch.float32)
    ours.eval()
    x = torch.randn(2, 6, 16, 16)
    with torch.no_grad():
        y0 = ours(x)
        y0b = ours(x)  # cached spectrum
    assert torch.equal(y0, y0b)
    if edit == "inplace":
        with torch.no_grad():
            ours.weight.mul_(2.0)
    elif edit == "optimizer":
        ours.train()
        opt = torch.optim.SGD(ours.parameters(), lr=0.5)
        ours(x).square().sum().backward()
        opt.step()
        ours.eval()
    elif edit == "load_state_dict":
        ours.load_state_dict({"weight": torch.randn_like(ours.weight), "bias": ours.bias.detach().clone()})
    else:
        ours.to(torch.float64)
        x = x.double()
    with torch.no_grad():
        y1 = ours(x)
        ref_now = nn.functional.conv2d(x.double(), ours.weight.double(), ours.bias.double(), padding=3, groups=3)
    assert rel_err(y1, ref_now) <= (1e-10 if edit == "to_double" else 1e-5)
    if edit != "to_double":
        assert not torch.allclose(y0, y1)


def test_train_eval_switch_gradients():
    ref, ours = _pair()
    x = torch.randn(2, 6, 12, 12, dtype=torch.float64)
    for mode in ("train", "eval", "train"):
        getattr(ours, mode)()
        getattr(ref, mode)()
        ours.zero_grad()
        ref.zero_grad()
        ours(x).sum().backward()
        ref(x).sum().backward()
        assert rel_err(ours.weight.grad, ref.weight.grad) <= 1e-10
        assert rel_err(ours.bias.grad, ref.bias.grad) <= 1e-10


def test_fftconv1d():
    torch.manual_seed(0)
    ref = nn.Conv1d(4, 4, 31, padding=15, groups=4, dtype=torch.float64)
    ours = FFTConv1d(4, 4, 31, padding=15, groups=4, dtype=torch.float64, algo="fft")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 100, dtype=torch.float64)
    assert rel_err(ours(x), ref(x)) <= 1e-10


def test_bad_algo_in_module():
    with pytest.raises(ValueError, match="algo"):
        FFTConv2d(2, 2, 3, algo="fast")


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 13, padding=6, groups=8), nn.BatchNorm2d(8), nn.GELU(),
                                   nn.Sequential(nn.Conv2d(8, 8, (1, 9), padding=(0, 4))))
        self.seq = nn.Conv1d(8, 8, 15, padding=7, groups=8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.block(self.stem(x))
        s = self.seq(x.flatten(2))
        return self.head(s.mean(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_convert_swaps_large_kernels_only(dtype):
    torch.manual_seed(0)
    net = _Net().to(dtype).eval()
    x = torch.randn(2, 3, 16, 16, dtype=dtype)
    before = net(x)
    conv = fftconv_ext.convert(net, min_kernel_size=7, algo="fft")
    assert sorted(conv.fftconv_converted) == ["block.0", "block.3.0", "seq"]
    assert type(conv.stem) is nn.Conv2d and type(conv.block[0]) is FFTConv2d
    assert type(conv.seq) is FFTConv1d
    assert conv.block[0].weight.dtype == dtype and not conv.training
    # the original is untouched, and the copy's weights equal it
    assert type(net.block[0]) is nn.Conv2d and net.block[0].weight is not conv.block[0].weight
    assert torch.equal(net.block[0].weight, conv.block[0].weight)
    assert rel_err(conv(x), before) <= (1e-5 if dtype == torch.float32 else 1e-10)
    back = fftconv_ext.revert(conv)
    assert type(back.block[0]) is nn.Conv2d and type(back.seq) is nn.Conv1d
    assert rel_err(back(x), before) <= 1e-6


def test_convert_inplace_and_a_bare_convolution():
    net = _Net()
    same = fftconv_ext.convert(net, inplace=True)
    assert same is net and type(net.block[0]) is FFTConv2d
    c = nn.Conv2d(2, 2, 9, padding=4)
    cc = fftconv_ext.convert(c)
    assert type(cc) is FFTConv2d and type(c) is nn.Conv2d
    with pytest.raises(ValueError, match="min_kernel_size"):
        fftconv_ext.convert(net, min_kernel_size=0)
