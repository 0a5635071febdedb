"""algo="auto" under torch.compile: one opaque operator (fftconv::conv_auto) that chooses when
the graph runs, so dynamic shapes give one graph, no break; checked against torch.nn.functional
in float64, with opcheck and gradcheck of the operator and its backward."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend

import fftconv_ext
from fftconv_ext.problem import ConvProblem
from conftest import rel_err

pytestmark = pytest.mark.compile
ops = torch.ops.fftconv

# (functional call, the same through torch.nn.functional, input shape at size n, weight shape)
CASES = {
    "conv2d": (lambda x, w, b: fftconv_ext.conv2d(x, w, b, padding=4, groups=4),
               lambda x, w, b: F.conv2d(x, w, b, padding=4, groups=4), lambda n: (2, 4, n, n + 3), (4, 1, 9, 9)),
    "conv1d_same": (lambda x, w, b: fftconv_ext.conv1d(x, w, b, padding="same"),
                    lambda x, w, b: F.conv1d(x, w, b, padding="same"), lambda n: (2, 3, 2 * n), (2, 3, 8)),
    "conv3d_reflect": (lambda x, w, b: fftconv_ext.conv3d(x, w, b, padding=(1, 3, 3), groups=2, padding_mode="reflect"),
                       lambda x, w, b: F.conv3d(F.pad(x, (3, 3, 3, 3, 1, 1), mode="reflect"), w, b, groups=2),
                       lambda n: (1, 2, 4, n, 9), (2, 1, 3, 7, 7)),
    "conv_transpose2d": (lambda x, w, b: fftconv_ext.conv_transpose2d(x, w, b, 2, 3, 1, 2),
                         lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 3, 1, 2), lambda n: (2, 4, n, 11), (4, 3, 7, 7)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_compile_dynamic_is_one_graph_and_matches_functional(name):
    call, reference, x_shape, w_shape = CASES[name]
    g = torch.Generator().manual_seed(0)
    w = torch.randn(*w_shape, dtype=torch.float64, generator=g, requires_grad=True)
    c_out = w_shape[1] * (2 if name == "conv_transpose2d" else 1) if "transpose" in name else w_shape[0]
    b = torch.randn(c_out, dtype=torch.float64, generator=g, requires_grad=True)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(call, dynamic=True, fullgraph=True, backend=counter)
    for n in (12, 17, 26):
        x = torch.randn(*x_shape(n), dtype=torch.float64, generator=g, requires_grad=True)
        y, ref = compiled(x, w, b), reference(x, w, b)
        assert y.shape == ref.shape and rel_err(y, ref) <= 1e-10
        gy = torch.randn_like(ref)
        for got, want in zip(torch.autograd.grad(y, (x, w, b), gy), torch.autograd.grad(ref, (x, w, b), gy)):
            assert rel_err(got, want) <= 1e-10
    assert counter.frame_count == 1, "a new size compiled the function again"


def test_each_size_gets_the_choice_eager_makes(monkeypatch):
    # the operator runs the eager call at run time: the cost model sees the real sizes
    seen = []
    real = fftconv_ext.cost_model.choice
    monkeypatch.setattr(fftconv_ext.cost_model, "choice", lambda *a: seen.append(a[0]) or real(*a))
    w = torch.randn(4, 1, 9, 9)
    compiled = torch.compile(lambda x: fftconv_ext.conv2d(x, w, padding=4, groups=4), dynamic=True, fullgraph=True,
                             backend="aot_eager")
    with torch.no_grad():
        for n in (12, 40):
            compiled(torch.randn(2, 4, n, n))
    ratios = [ConvProblem(2, (2, 4, n, n), (4, 1, 9, 9), (1, 1), ((4, 4), (4, 4)), (1, 1), 4).model_ratio("cpu")
              for n in (12, 40)]
    assert seen == ratios


def test_export_keeps_the_eager_operator_not_the_runtime_one():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 1, 9, 9))

        def forward(self, x):
            return fftconv_ext.conv2d(x, self.w, padding=4, groups=4)
    ep = torch.export.export(Net(), (torch.randn(2, 4, 24, 24),),
                             dynamic_shapes={"x": {2: torch.export.Dim("h", min=12, max=64)}})
    assert not any("conv_auto" in str(n.target) for n in ep.graph.nodes)


def _samples():
    g = torch.Generator().manual_seed(3)

    def t(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=True)
    return [  # conv_auto's arguments after (x, weight, bias)
        ((t(2, 4, 9, 10), t(4, 2, 3, 4), t(4)), (2, False, [1, 1], "", [1, 2], [0, 0], [1, 1], 2, "zeros")),
        ((t(2, 3, 11), t(2, 3, 4), None), (1, False, [1], "same", [], [0], [1], 1, "zeros")),
        ((t(1, 2, 8, 9), t(2, 2, 3, 3), t(2)), (2, False, [1, 1], "", [1, 1], [0, 0], [1, 1], 1, "circular")),
        ((t(2, 4, 5, 6), t(4, 3, 3, 3), t(6)), (2, True, [2, 1], "", [1, 1], [1, 0], [1, 1], 2, "zeros")),
    ]


@pytest.mark.parametrize("idx", range(4))
def test_opcheck_and_gradcheck(idx):
    (x, w, b), args = _samples()[idx]
    torch.library.opcheck(ops.conv_auto, (x, w, b, *args))
    inputs = (x, w) if b is None else (x, w, b)
    assert torch.autograd.gradcheck(lambda *t: ops.conv_auto(t[0], t[1], t[2] if len(t) > 2 else None, *args),
                                    inputs)
    y = ops.conv_auto(x.detach(), w.detach(), None if b is None else b.detach(), *args)
    gy = torch.randn_like(y)
    torch.library.opcheck(ops.conv_auto_backward, (gy, x.detach(), w.detach(), *args, [True, True]))
    torch.library.opcheck(ops.conv_auto_backward, (gy, x.detach(), w.detach(), *args, [False, True]))


def test_eager_calls_do_not_use_it(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.ops.fftconv, "conv_auto", lambda *a: calls.append(1))
    x, w = torch.randn(2, 4, 16, 16), torch.randn(4, 1, 9, 9)
    assert rel_err(fftconv_ext.conv2d(x, w, padding=4, groups=4), F.conv2d(x, w, padding=4, groups=4)) <= 1e-5
    assert calls == []


@pytest.mark.parametrize("call, match", [
    (lambda x, w: fftconv_ext.conv2d(x, w, padding=4, groups=3), "groups=3 must divide"),
    (lambda x, w: fftconv_ext.conv2d(x, w.double(), padding=4, groups=4), "weight dtype"),
    (lambda x, w: fftconv_ext.conv2d(x, w, padding=-1, groups=4), "padding must be non-negative"),
    (lambda x, w: fftconv_ext.conv_transpose2d(x, w[:2], None, 2, 3, 1, 4), "channels"),
])
def test_bad_arguments_raise_the_eager_error_under_compile(call, match):
    # the checks run while tracing, before the call becomes conv_auto: the user gets the eager error
    # (with fullgraph=True Dynamo wraps every exception raised while tracing in its own)
    x, w = torch.randn(2, 4, 16, 16), torch.randn(4, 1, 9, 9)
    compiled = torch.compile(call, dynamic=True, backend="aot_eager")
    with pytest.raises(fftconv_ext.ConvArgumentError, match=match):
        compiled(x, w)
