"""Diagnostics for the first GPU run's failures (not a test; printed for a person)."""
import threading
import traceback

import torch

import fftconv_ext

ops = torch.ops.fftconv
dev = "cuda"


def maxdiff(a, b):
    return (a - b).abs().max().item()


def try_(label, fn):
    try:
        r = fn()
        print(f"{label}: OK {'' if r is None else r}")
    except Exception as e:  # noqa: BLE001 - diagnostics
        print(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


print("== determinism (gradcheck case, float64) ==")
g = torch.Generator().manual_seed(2)
x = torch.randn(2, 4, 9, 10, generator=g, dtype=torch.float64).to(dev)
w = torch.randn(6, 2, 3, 4, generator=g, dtype=torch.float64).to(dev)
args = ([1, 2], [1, 1, 2, 2], [2, 1], 2, False)
y = ops.conv2d_forward(x, w, None, *args)
go = torch.randn(y.shape, generator=g, dtype=torch.float64).to(dev)
f = [ops.conv2d_forward(x, w, None, *args) for _ in range(3)]
gi = [ops.conv2d_grad_input(go, w, list(x.shape), *args) for _ in range(3)]
gw = [ops.conv2d_grad_weight(go, x, list(w.shape), *args) for _ in range(3)]
jb = [ops.conv2d_backward(go, x, w, *args) for _ in range(3)]
print("forward repeat diffs", [maxdiff(f[0], t) for t in f[1:]])
print("grad_input repeat diffs", [maxdiff(gi[0], t) for t in gi[1:]])
print("grad_weight repeat diffs", [maxdiff(gw[0], t) for t in gw[1:]])
print("joint gin diffs", [maxdiff(gi[0], t[0]) for t in jb], "joint gw diffs", [maxdiff(gw[0], t[1]) for t in jb])
ref = torch.ops.aten.convolution_backward(go.cpu(), x.cpu(), w.cpu(), None, [1, 2], [1, 2], [2, 1], False, [0, 0], 2,
                                          [True, True, False])
print("gin vs CPU aten", maxdiff(gi[0].cpu(), ref[0]), "gw vs CPU aten", maxdiff(gw[0].cpu(), ref[1]))
for k in range(3):
    fftconv_ext.clear_caches()
    print("after clear_caches: gin diff", maxdiff(gi[0], ops.conv2d_grad_input(go, w, list(x.shape), *args)),
          "gw diff", maxdiff(gw[0], ops.conv2d_grad_weight(go, x, list(w.shape), *args)))
box = {}
th = threading.Thread(target=lambda: box.update(
    gi=ops.conv2d_grad_input(go, w, list(x.shape), *args), gw=ops.conv2d_grad_weight(go, x, list(w.shape), *args),
    f=ops.conv2d_forward(x, w, None, *args)))
th.start()
th.join()
print("other thread vs main: forward", maxdiff(f[0], box["f"]), "gin", maxdiff(gi[0], box["gi"]),
      "gw", maxdiff(gw[0], box["gw"]))
xr = x.clone().requires_grad_()
wr = w.clone().requires_grad_()
outs = []
for _ in range(3):
    xr.grad = wr.grad = None
    fftconv_ext.conv2d(xr, wr, None, (1, 2), (1, 2), (2, 1), 2, algo="fft").backward(go)
    outs.append((xr.grad.clone(), wr.grad.clone()))
print("autograd backward repeat diffs gin", [maxdiff(outs[0][0], o[0]) for o in outs[1:]],
      "gw", [maxdiff(outs[0][1], o[1]) for o in outs[1:]], "vs direct op gin", maxdiff(outs[0][0], gi[0]))
# the same on the depthwise bench layer in float64
xd = torch.randn(4, 16, 32, 32, dtype=torch.float64, device=dev)
wd = torch.randn(16, 1, 31, 31, dtype=torch.float64, device=dev)
a2 = ([1, 1], [15, 15, 15, 15], [1, 1], 16, False)
gd = torch.randn(4, 16, 32, 32, dtype=torch.float64, device=dev)
r = [ops.conv2d_grad_weight(gd, xd, list(wd.shape), *a2) for _ in range(3)]
print("depthwise gw repeat diffs", [maxdiff(r[0], t) for t in r[1:]])
r = [ops.conv2d_grad_input(gd, wd, list(xd.shape), *a2) for _ in range(3)]
print("depthwise gin repeat diffs", [maxdiff(r[0], t) for t in r[1:]])

print("== fourier_mix on other threads / backward ==")
for shape in ((8, 197, 768), (8, 196, 768), (2, 31, 12)):
    xm = torch.randn(*shape, device=dev)
    try_(f"{shape} forward main thread", lambda: fftconv_ext.fourier_mix(xm).shape)
    box = {}

    def other():
        try:
            fftconv_ext.fourier_mix(xm)
            torch.cuda.synchronize()
            box["r"] = "OK"
        except Exception as e:  # noqa: BLE001
            box["r"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    t = threading.Thread(target=other)
    t.start()
    t.join()
    print(f"{shape} forward on another thread: {box['r']}")
    xg = xm.clone().requires_grad_()
    try_(f"{shape} backward", lambda: fftconv_ext.fourier_mix(xg).backward(torch.randn_like(xm)))
    fftconv_ext.clear_caches()
    try_(f"{shape} backward after clear_caches",
         lambda: fftconv_ext.fourier_mix(xg).backward(torch.randn_like(xm)))
    try_(f"{shape} direct op on a fresh contiguous tensor", lambda: ops.fourier_mix(torch.randn_like(xm)).shape)
torch.cuda.synchronize()
print("== done ==")
