"""RepLKNet and ConvNeXt: re-parameterisation is exact, convert() keeps outputs."""
import pytest
import torch
from torch import nn

import fftconv_ext
from fftconv_ext.models import convnext_tiny, replknet_31b
from fftconv_ext.models.replknet import ReparamLargeKernelConv
from fftconv_ext.nn import FFTConv2d
from conftest import rel_err


pytestmark = pytest.mark.models  # whole networks: built, converted, compared


def _randomise_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_replknet_31b_published_shape():
    m = replknet_31b()
    n = sum(p.numel() for p in m.parameters())
    assert 78e6 < n < 81e6  # the paper's 79M
    kernels = sorted({mod.kernel for mod in m.modules() if isinstance(mod, ReparamLargeKernelConv)})
    assert kernels == [13, 27, 29, 31]


def test_reparam_merges_small_kernel_and_bn_exactly():
    torch.manual_seed(0)
    unit = ReparamLargeKernelConv(4, 13, 5).double().eval()
    _randomise_bn(unit)
    x = torch.randn(2, 4, 20, 20, dtype=torch.float64)
    with torch.no_grad():
        before = unit(x)
        unit.reparam()
        after = unit(x)
    assert rel_err(after, before) <= 1e-12


def test_replknet_convert_matches_original():
    torch.manual_seed(0)
    model = replknet_31b(num_classes=100).eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        before = model(x)
        model.structural_reparam()
        reparam = model(x)
        converted = fftconv_ext.convert(model, min_kernel_size=7, algo="fft")
        after = converted(x)
    assert rel_err(reparam, before) <= 1e-4
    assert len(converted.fftconv_converted) == 24  # every large kernel of the 24 RepLK blocks
    assert rel_err(after, reparam) <= 1e-4
    assert torch.equal(after.argmax(1), reparam.argmax(1))


def test_convnext_tiny_convert_matches_original():
    torch.manual_seed(0)
    model = convnext_tiny(num_classes=100).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        before = model(x)
        converted = fftconv_ext.convert(model, min_kernel_size=7, algo="fft")
        after = converted(x)
    assert len(converted.fftconv_converted) == 18
    assert all(isinstance(b.dwconv, FFTConv2d) for s in converted.stages for b in s)
    assert rel_err(after, before) <= 1e-4
    assert torch.equal(after.argmax(1), before.argmax(1))


def test_convnext_token_mixer_option():
    model = convnext_tiny(num_classes=10, token_mixer=lambda c: FFTConv2d(c, c, 15, padding=7, groups=c))
    assert model.stages[0][0].dwconv.kernel_size == (15, 15)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_checkpoint_round_trip(tmp_path):
    model = convnext_tiny(num_classes=10)
    path = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), path)
    again = convnext_tiny(num_classes=10, checkpoint=str(path))
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_model_registry_as_in_timm():
    import fftconv_ext
    names = fftconv_ext.models.list_models()
    assert names == sorted(names) and {"fit_tiny", "vit_tiny", "convnext_tiny", "replknet_31b"} <= set(names)
    assert fftconv_ext.models.list_models("fit_*") == ["fit_base", "fit_small", "fit_tiny"]
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        fftconv_ext.models.create_model("resnet50")
    m = fftconv_ext.models.create_model("convnext_tiny", num_classes=5).eval()
    assert isinstance(m, fftconv_ext.models.ConvNeXt)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    fit = fftconv_ext.models.create_model("fit_tiny", num_classes=3, img_size=32, patch_size=8, depth=1)
    assert fit(torch.randn(2, 3, 32, 32)).shape == (2, 3)
