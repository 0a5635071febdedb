"""convert()/revert() keep everything a module carries; derived-kernel caches are never
stale; numpy integers are accepted; FLOP counts do not change with conversion; the
trainer does not overwrite a run; SGConv1d compiles with fullgraph."""
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations
from torch.utils.flop_counter import FlopCounterMode

import fftconv_ext
from fftconv_ext import train
from fftconv_ext.nn import FFTConv2d, LongConv2d, S4DConv, SGConv1d
from conftest import rel_err


def _hooked_conv(calls):
    def count(key):
        def hook(*args, **kwargs):
            calls[key] = calls.get(key, 0) + 1
        return hook
    conv = nn.Conv2d(4, 4, 9, padding=4, groups=4)
    conv.register_forward_pre_hook(count("pre"))
    conv.register_forward_pre_hook(lambda m, args, kwargs: count("pre_kwargs")(), with_kwargs=True)
    conv.register_forward_hook(count("forward"))
    conv.register_forward_hook(lambda m, args, kwargs, out: count("forward_kwargs")(), with_kwargs=True)
    conv.register_full_backward_pre_hook(count("backward_pre"))
    conv.register_full_backward_hook(count("backward"))
    conv.register_state_dict_post_hook(count("state_dict"))
    conv._register_load_state_dict_pre_hook(count("load_state_dict"))
    return conv


@pytest.mark.parametrize("inplace", [False, True])
def test_convert_keeps_every_hook_and_revert_too(inplace):
    calls = {}
    model = nn.Sequential(_hooked_conv(calls), nn.GELU())
    converted = fftconv_ext.convert(model, algo="fft", inplace=inplace)
    assert isinstance(converted[0], FFTConv2d)
    for m in (converted, fftconv_ext.revert(converted)):
        calls.clear()
        x = torch.randn(2, 4, 12, 12, requires_grad=True)
        m(x).sum().backward()
        m.load_state_dict(m.state_dict())
        assert calls == {"pre": 1, "pre_kwargs": 1, "forward": 1, "forward_kwargs": 1, "backward_pre": 1,
                         "backward": 1, "state_dict": 1, "load_state_dict": 1}


def test_shared_module_stays_shared():
    conv = nn.Conv2d(4, 4, 9, padding=4, groups=4)
    model = nn.Sequential(conv, nn.GELU(), conv)
    for inplace in (False, True):
        fast = fftconv_ext.convert(model, algo="fft", inplace=inplace)
        assert fast[0] is fast[2] and isinstance(fast[0], FFTConv2d)
        assert fast.fftconv_converted == ["0"]
        back = fftconv_ext.revert(fast)
        assert back[0] is back[2] and type(back[0]) is nn.Conv2d


def test_parametrized_and_old_style_normalised_convolutions_convert_correctly():
    torch.manual_seed(0)
    sn = nn.utils.spectral_norm(nn.Conv2d(4, 4, 7, padding=3))
    wn = nn.utils.weight_norm(nn.Conv2d(4, 4, 7, padding=3))
    pz = parametrizations.weight_norm(nn.Conv2d(4, 4, 7, padding=3))
    pn = parametrizations.spectral_norm(nn.Conv2d(4, 4, 7, padding=3))
    model = nn.Sequential(sn, wn, pz, pn).eval()  # eval: spectral norms make no power iteration
    x = torch.randn(2, 4, 16, 16, dtype=torch.float32)
    ref = model(x)
    fast = fftconv_ext.convert(model, algo="fft", inplace=True)
    assert fast.fftconv_converted == ["0", "1", "2", "3"]
    assert all(isinstance(m, FFTConv2d) for m in fast)
    assert type(fast[2]).__name__ == "ParametrizedFFTConv2d" and torch.nn.utils.parametrize.is_parametrized(fast[2])
    assert rel_err(fast(x), ref) < 1e-5
    fast.train()(x).sum().backward()  # the parametrizations' gradients flow through the FFT layers
    assert pz.parametrizations.weight.original0.grad is not None
    back = fftconv_ext.revert(fast.eval(), inplace=True)
    assert type(back[2]).__name__ == "ParametrizedConv2d" and type(back[0]) is nn.Conv2d


def test_a_model_that_cannot_be_copied_gets_a_clear_error():
    model = nn.Sequential(nn.utils.weight_norm(nn.Conv2d(4, 4, 7, padding=3)))
    model(torch.randn(1, 4, 8, 8))  # the old weight_norm now holds a non-leaf weight: deepcopy fails
    with pytest.raises(RuntimeError, match="inplace=True"):
        fftconv_ext.convert(model)
    assert fftconv_ext.convert(model, inplace=True).fftconv_converted == ["0"]


def test_convert_logs_what_it_swapped(caplog):
    with caplog.at_level(logging.INFO, logger="fftconv_ext"):
        fftconv_ext.convert(nn.Sequential(nn.Conv2d(2, 2, 9), nn.Conv2d(2, 2, 3)))
    assert "1 convolution(s)" in caplog.text and "['0']" in caplog.text


# ---- caches of derived kernels --------------------------------------------------------------------

def test_long_conv2d_eval_cache_sees_data_edits_and_loaded_state():
    torch.manual_seed(0)
    lc = LongConv2d(8).eval()
    x = torch.randn(2, 8, 28, 28)
    with torch.no_grad():
        y0 = lc(x)
        lc.scales[0].data.mul_(3)  # no version bump
        y1 = lc(x)
        fresh = LongConv2d(8).eval()
        fresh.load_state_dict(lc.state_dict())
        assert not torch.equal(y0, y1)
        assert rel_err(y1, fresh(x)) < 1e-6
        other = LongConv2d(8).eval()
        lc.load_state_dict(other.state_dict())
        assert rel_err(lc(x), other(x)) < 1e-6
        lc.double()
        assert lc(x.double()).dtype == torch.float64


@pytest.mark.parametrize("layer", ["s4d", "sgconv"])
def test_long_layers_see_data_edits(layer):
    torch.manual_seed(0)
    m = (S4DConv(4, state=8) if layer == "s4d" else SGConv1d(4, l_max=64)).eval()
    u = torch.randn(2, 4, 64)
    with torch.no_grad():
        y0 = m(u)
        p = next(iter(m.parameters()))
        p.data.mul_(2)
        y1 = m(u)
        fresh = (S4DConv(4, state=8) if layer == "s4d" else SGConv1d(4, l_max=64)).eval()
        fresh.load_state_dict(m.state_dict())
        assert not torch.equal(y0, y1) and rel_err(y1, fresh(u)) < 1e-6


@pytest.mark.compile
def test_sgconv_compiles_with_fullgraph():
    torch.manual_seed(0)
    m = SGConv1d(4, l_max=64)
    u = torch.randn(2, 4, 64)
    eager = m(u)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")(u)
    assert rel_err(compiled, eager) < 1e-5


# ---- numpy integers -------------------------------------------------------------------------------

def test_numpy_integers_are_accepted_as_pytorch_accepts_them():
    x, w = torch.randn(1, 4, 10, 10), torch.randn(4, 1, 3, 3)
    y = fftconv_ext.conv2d(x, w, padding=np.int64(1), stride=(np.int32(1), 1), dilation=np.int64(1),
                           groups=np.int64(4), algo="fft")
    assert rel_err(y, F.conv2d(x, w, padding=1, groups=4)) < 1e-5
    m = FFTConv2d(np.int64(4), np.int64(4), np.int64(3), padding=np.int64(1), groups=np.int64(4), algo="fft")
    assert m(x).shape == (1, 4, 10, 10)
    with pytest.raises(fftconv_ext.ConvArgumentError, match="padding"):
        fftconv_ext.conv2d(x, w, padding=1.0, groups=4)


def test_reflect_padding_wider_than_the_input_names_the_argument():
    with pytest.raises(fftconv_ext.ConvArgumentError, match="reflect padding"):
        fftconv_ext.conv2d(torch.randn(1, 2, 6, 6), torch.randn(2, 1, 13, 13), padding=6, groups=2,
                           padding_mode="reflect")


# ---- FLOP counts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["fft", "auto"])
def test_flop_counts_do_not_change_when_converted(algo):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 9, padding=4, groups=8),
                          nn.Conv2d(8, 16, 7, stride=2, padding=3))
    fast = fftconv_ext.convert(model, algo=algo)
    x = torch.randn(2, 3, 20, 20)
    totals = []
    for m in (model, fast):
        with FlopCounterMode(display=False) as counter:
            m(x).sum().backward()
        totals.append(counter.get_total_flops())
    assert totals[0] == totals[1] > 0
    with FlopCounterMode(display=False) as counter:  # an input gradient alone, a weight gradient alone
        xg = x.clone().requires_grad_()
        fast[1].weight.requires_grad_(False)
        fast[1](fast[0](xg)).sum().backward()
        fast[1].weight.requires_grad_(True)
    assert counter.get_total_flops() > 0


# ---- the trainer ----------------------------------------------------------------------------------

TINY = ["--model", "fit_tiny", "--embed-dim", "16", "--depth", "1", "--mlp-dim", "32", "--img-size", "16",
        "--synthetic-train", "64", "--synthetic-test", "32", "--batch-size", "32", "--no-progress", "--device",
        "cpu", "--epochs", "1"]


def test_trainer_refuses_to_overwrite_a_run(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    train.train(train.parse_args(TINY + out))
    before = (tmp_path / "log.jsonl").read_text()
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        train.train(train.parse_args(TINY + out))
    assert (tmp_path / "log.jsonl").read_text() == before
    train.train(train.parse_args(TINY + out + ["--overwrite"]))
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 1
    capsys.readouterr()
    hist = train.train(train.parse_args(TINY + out + ["--resume"]))
    assert "already complete" in capsys.readouterr().out and hist["epoch"] == [1]
    with pytest.raises(ValueError, match="contradict"):
        train.train(train.parse_args(TINY + out + ["--resume", "--overwrite"]))


def test_convert_rejects_bad_arguments():
    model = nn.Sequential(nn.Conv2d(2, 2, 9))
    with pytest.raises(ValueError, match="algo"):
        fftconv_ext.convert(model, algo="fast")
    with pytest.raises(ValueError, match="min_kernel_size"):
        fftconv_ext.convert(model, min_kernel_size=0)
    assert type(model[0]) is nn.Conv2d  # untouched
