"""PTQ of a small Flax NNX CNN on scikit-learn's digits with every error method (the Flax twin
of ``digits_ptq.py``), beside the same network in PyTorch through jq and MCT.

Trains an NNX CNN (conv, batch norm, silu, a residual depthwise block, max-pool, dense head) on
the 8x8 digits that ship with scikit-learn (nothing downloads) with optax in a few seconds,
then quantizes it with ``jq.ptq.flax_post_training_quantization`` (MCT's call on a Flax model;
the quantized model comes back as an ``nnx.Module``) once per error method, for activations
(weights MSE) and for weights (activations MSE), at 8 and 4 bits, and with jq's ``"auto"``.
Prints test accuracy, output SQNR against the float model (dB) and wall time per run, the
same table as the torch demo.

MCT has no Flax front end, and the torch demo's CNN is another network (relu, no residual or
depthwise block, half the widths), so its table is no yardstick for this one: a silu output
is signed and fills half of a signed 4-bit grid where a relu output fills an unsigned one
(``--activation relu`` trains this network with relu in its place). The fair comparison is
the same network with the same weights in PyTorch: the trained weights are copied into a torch
twin (NCHW, ``fc1``'s rows reordered from the NHWC flatten) and quantized with
``jq.ptq.pytorch_post_training_quantization`` and, when installed, MCT 2.6.1; the table shows
both beside the Flax run, and whether jq's thresholds for the two frameworks are equal.

Run: ``make demo`` or ``PYTHONPATH=.:adapters python examples/flax_digits_ptq.py [--bits 8 4]
[--activation relu] [--no-torch] [--no-mct] [--mct-kl]``.

Notes: jq times include tracing the model and JIT compilation (the second call of a method
reuses the compiled searches). The torch twin needs torch (the ``torch`` extra); MCT's
weights-KL runs are skipped unless ``--mct-kl`` (minutes each), and MCT needs GPTQ for
weights HMSE, as in the torch demo.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

sys.path[:0] = [
    os.path.join(os.path.dirname(__file__), ".."),
    os.path.join(os.path.dirname(__file__), "..", "adapters"),
]

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.ptq  # noqa: E402
import jq_flax  # noqa: E402

METHODS = ("noclipping", "mse", "mae", "kl", "lp", "hmse")
AUTO = "auto"  # jq only: per layer, the method with the best layer-output SQNR
BATCH = 64
ACTIVATIONS = {"silu": nnx.silu, "relu": nnx.relu}


class DigitsCNN(nnx.Module):
    """conv-bn-act, residual depthwise-bn-act, 1x1 conv-bn-act, max-pool, conv-bn-act,
    dense-act, dense (NHWC, about 27 k params); ``act`` is silu (the issue's net) or relu."""

    def __init__(self, rngs: nnx.Rngs, act: str = "silu"):
        self.act = act
        self.conv1 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(16, rngs=rngs)
        self.dw = nnx.Conv(16, 16, (3, 3), feature_group_count=16, rngs=rngs)
        self.bn2 = nnx.BatchNorm(16, rngs=rngs)
        self.pw = nnx.Conv(16, 32, (1, 1), rngs=rngs)
        self.bn3 = nnx.BatchNorm(32, rngs=rngs)
        self.conv3 = nnx.Conv(32, 32, (3, 3), rngs=rngs)
        self.bn4 = nnx.BatchNorm(32, rngs=rngs)
        self.fc1 = nnx.Linear(32 * 4 * 4, 32, rngs=rngs)
        self.fc2 = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        act = ACTIVATIONS[self.act]
        x = act(self.bn1(self.conv1(x)))
        x = x + act(self.bn2(self.dw(x)))
        x = act(self.bn3(self.pw(x)))
        x = nnx.max_pool(x, (2, 2), (2, 2))
        x = act(self.bn4(self.conv3(x)))
        x = act(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc2(x)


def load_data(seed: int = 0):
    """The torch demo's split and normalisation, images NHWC."""
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0 - 0.3) / 0.4
    x = x[..., None]
    y = d.target.astype(np.int32)
    idx = np.random.default_rng(seed).permutation(len(x))
    tr, te = idx[:1280], idx[1280:]
    return x[tr], y[tr], x[te], y[te]


@nnx.jit
def _train_step(model: DigitsCNN, opt: nnx.Optimizer, x, y):
    def loss_fn(m):
        logits = m(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss


def train(xtr, ytr, *, act: str = "silu", epochs: int = 12, seed: int = 0) -> DigitsCNN:
    model = DigitsCNN(nnx.Rngs(seed), act)
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = rng.permutation(len(xtr))
        for i in range(0, len(xtr) - BATCH + 1, BATCH):
            b = perm[i : i + BATCH]
            _train_step(model, opt, jnp.asarray(xtr[b]), jnp.asarray(ytr[b]))
    return model


def predict(model, x: np.ndarray) -> np.ndarray:
    """Logits in batches of ``BATCH`` (the last batch padded: one compiled shape)."""
    out = []
    for i in range(0, len(x), BATCH):
        b = x[i : i + BATCH]
        n = len(b)
        if n < BATCH:
            b = np.concatenate([b, np.zeros((BATCH - n,) + b.shape[1:], b.dtype)])
        out.append(np.asarray(model(b))[:n])
    return np.concatenate(out)


def sqnr_db(ref: np.ndarray, q: np.ndarray) -> float:
    noise = np.sum((ref.astype(np.float64) - q) ** 2)
    signal = np.sum(ref.astype(np.float64) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(signal / noise))


def representative(xcal: np.ndarray):
    def gen():
        for i in range(0, len(xcal), BATCH):
            yield [xcal[i : i + BATCH]]

    return gen


def run_jq(model, gen, bits: int, act: str, wgt: str):
    qc = jq.core.QuantizationConfig(activation_error_method=act, weights_error_method=wgt)
    core = jq.core.CoreConfig(quantization_config=qc, progress=False)
    tp = jq.core.TargetPlatform(weights_n_bits=bits, activation_n_bits=bits)
    t = time.perf_counter()
    qmodel, info = jq.ptq.flax_post_training_quantization(
        model, gen, core_config=core, target_platform_capabilities=tp
    )
    return qmodel, info, time.perf_counter() - t


def torch_twin(model: DigitsCNN):
    """The same network in PyTorch (NCHW) with ``model``'s weights, in eval mode. ``fc1``'s
    input rows are reordered from the NHWC flatten to torch's NCHW one; batch norms keep their
    running statistics (both frameworks' epsilon is 1e-5)."""
    import torch

    fn = {"silu": torch.nn.functional.silu, "relu": torch.relu}[model.act]

    class TwinCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            conv, bn = torch.nn.Conv2d, torch.nn.BatchNorm2d
            self.conv1, self.bn1 = conv(1, 16, 3, padding=1), bn(16)
            self.dw, self.bn2 = conv(16, 16, 3, padding=1, groups=16), bn(16)
            self.pw, self.bn3 = conv(16, 32, 1), bn(32)
            self.conv3, self.bn4 = conv(32, 32, 3, padding=1), bn(32)
            self.fc1, self.fc2 = torch.nn.Linear(512, 32), torch.nn.Linear(32, 10)

        def forward(self, x):
            x = fn(self.bn1(self.conv1(x)))
            x = x + fn(self.bn2(self.dw(x)))
            x = torch.nn.functional.max_pool2d(fn(self.bn3(self.pw(x))), 2)
            x = fn(self.bn4(self.conv3(x)))
            return self.fc2(fn(self.fc1(torch.flatten(x, 1))))

    def value(v):
        return np.asarray(v.get_value())

    sd = {}
    for c in ("conv1", "dw", "pw", "conv3"):
        sd[f"{c}.weight"] = value(getattr(model, c).kernel).transpose(3, 2, 0, 1)  # HWIO->OIHW
        sd[f"{c}.bias"] = value(getattr(model, c).bias)
    for b in ("bn1", "bn2", "bn3", "bn4"):
        m = getattr(model, b)
        sd |= {f"{b}.weight": value(m.scale), f"{b}.bias": value(m.bias)}
        sd |= {f"{b}.running_mean": value(m.mean), f"{b}.running_var": value(m.var)}
        sd[f"{b}.num_batches_tracked"] = np.zeros((), np.int64)
    k = value(model.fc1.kernel).reshape(4, 4, 32, 32)  # (H, W, C, out)
    sd["fc1.weight"] = k.transpose(3, 2, 0, 1).reshape(32, 512)
    sd["fc1.bias"] = value(model.fc1.bias)
    sd |= {"fc2.weight": value(model.fc2.kernel).T, "fc2.bias": value(model.fc2.bias)}
    twin = TwinCNN()
    twin.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()})
    return twin.eval()


def _thresholds(info) -> list:
    return [(li.kind, li.op, np.atleast_1d(np.asarray(li.threshold))) for li in info.layers]


def _same_thresholds(a, b) -> bool:
    ta, tb = _thresholds(a), _thresholds(b)
    return len(ta) == len(tb) and all(
        x[:2] == y[:2] and x[2].shape == y[2].shape and np.array_equal(x[2], y[2])
        for x, y in zip(ta, tb, strict=True)
    )


class Twin:
    """The torch twin's runs (jq, and MCT when ``tdemo`` says it is importable)."""

    def __init__(self, model, xcal, xte, yte, *, mct: bool, mct_kl: bool):
        import digits_ptq as tdemo  # the torch demo's runners (imports torch)

        self.tdemo, self.model = tdemo, torch_twin(model)
        self.gen = tdemo.representative(xcal.transpose(0, 3, 1, 2))
        self.xte, self.yte = xte.transpose(0, 3, 1, 2), yte
        self.mct = mct and tdemo.mct_available()
        self.mct_kl = mct_kl
        self.f_logits = tdemo.predict(self.model, self.xte)

    def _score(self, qmodel) -> tuple[float, float]:
        lg = self.tdemo.predict(qmodel, self.xte)
        return 100 * np.mean(lg.argmax(1) == self.yte), sqnr_db(self.f_logits, lg)

    def jq(self, bits: int, act: str, wgt: str, flax_info) -> tuple[float, float, bool]:
        qm, info, _ = self.tdemo.run_jq(self.model, self.gen, bits, act, wgt)
        return (*self._score(qm), _same_thresholds(flax_info, info))

    def mct_cell(self, bits: int, kind: str, method: str, act: str, wgt: str):
        """MCT's ``(acc, SQNR)``, or why there is none."""
        if method == AUTO:
            return "n/a (jq only)"
        if kind == "weights" and method == "hmse":
            return "n/a (needs GPTQ)"
        if kind == "weights" and method == "kl" and not self.mct_kl:
            return "skipped (slow)"
        qm, _ = self.tdemo.run_mct(self.model, self.gen, bits, act, wgt)
        return self._score(qm)


def _runs(bits_list):
    for bits in bits_list:
        for kind in ("activation", "weights", "both"):
            for method in METHODS + (AUTO,) if kind != "both" else (AUTO,):
                act, wgt = {"activation": (method, "mse"), "weights": ("mse", method)}.get(
                    kind, (AUTO, AUTO)
                )
                yield bits, kind, method, act, wgt


def _header(twin: Twin | None) -> str:
    h = f"{'bits':>4}  {'kind':<10} {'method':<10} | {'Flax acc':>8} {'SQNR':>6} {'time':>10}"
    if twin is not None:
        h += f" | {'torch acc':>9} {'SQNR':>6} {'thr':>4}"
        h += f" | {'MCT acc':>7} {'SQNR':>6}" if twin.mct else ""
    return h


def _table(model, gen, xte, yte, f_logits, bits_list, twin: Twin | None) -> list:
    """One row per run: ``(bits, kind, method, acc, sqnr, twin (acc, sqnr, same) or None, MCT
    (acc, sqnr), a reason or None)``."""
    header = _header(twin)
    print(f"\n{header}\n{'-' * len(header)}")
    rows, cache = [], {}
    for bits, kind, method, act, wgt in _runs(bits_list):
        key = (bits, act, wgt)
        if key not in cache:
            qm, info, dt = run_jq(model, gen, bits, act, wgt)
            _, _, dt2 = run_jq(model, gen, bits, act, wgt)  # compiled code reused
            lg = predict(qm, xte)
            t = None if twin is None else twin.jq(bits, act, wgt, info)
            acc = 100 * np.mean(lg.argmax(1) == yte)
            cache[key] = (acc, sqnr_db(f_logits, lg), f"{dt:5.1f}/{dt2:4.1f}", t)
        acc, sq, dt, t = cache[key]
        m = twin.mct_cell(bits, kind, method, act, wgt) if twin is not None and twin.mct else None
        line = f"{bits:>4}  {kind:<10} {method:<10} | {acc:8.2f} {sq:6.1f} {dt:>10}"
        if t is not None:
            line += f" | {t[0]:9.2f} {t[1]:6.1f} {'=' if t[2] else 'diff':>4}"
        if m is not None:
            line += f" | {m:>14}" if isinstance(m, str) else f" | {m[0]:7.2f} {m[1]:6.1f}"
        print(line, flush=True)
        rows.append((bits, kind, method, acc, sq, t, m))
    return rows


def _summary(rows, f_acc: float, bits_list) -> None:
    for bits in bits_list:
        worst = min(r[3] for r in rows if r[0] == bits and r[2] != AUTO)
        print(
            f"  {bits}-bit: worst accuracy {worst:.2f} % ({f_acc - worst:.2f} points below float)"
        )
    twin = [r for r in rows if r[5] is not None]
    if twin:
        below = [r[:3] for r in twin if r[3] < r[5][0]]
        same = sum(r[5][2] for r in twin)
        print(
            f"  Flax accuracy below its torch twin's (jq) in {len(below)} of {len(twin)} runs"
            + (f": {below}" if below else "")
            + f"; jq thresholds equal (bit for bit) in {same} of {len(twin)}"
        )
    mct = [r for r in rows if isinstance(r[6], tuple)]
    if mct:
        below = [r[:3] for r in mct if r[3] < r[6][0]]
        print(
            f"  Flax accuracy below MCT's on the torch twin in {len(below)} of {len(mct)} runs"
            + (f": {below}" if below else "")
        )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--calib", type=int, default=256, help="calibration images")
    ap.add_argument("--activation", choices=sorted(ACTIVATIONS), default="silu")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch twin (and MCT)")
    ap.add_argument("--no-mct", action="store_true", help="skip MCT on the torch twin")
    ap.add_argument("--mct-kl", action="store_true", help="also run MCT's (slow) weights KL")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("Model Compression Toolkit").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_data()
    model = jq_flax.inference_view(train(xtr, ytr, act=args.activation))
    f_logits = predict(jax.jit(lambda x: model(x)), xte)
    f_acc = 100 * np.mean(f_logits.argmax(1) == yte)
    print(
        f"digits: {len(xtr)} train / {len(xte)} test images; float NNX CNN ({args.activation}) "
        f"trained with optax in {time.perf_counter() - t0:.1f} s; float test accuracy "
        f"{f_acc:.2f} %"
    )
    twin = _twin(model, xtr[: args.calib], xte, yte, f_logits, args)
    gen = representative(xtr[: args.calib])
    rows = _table(model, gen, xte, yte, f_logits, args.bits, twin)
    print(
        f"\nfloat accuracy {f_acc:.2f} %; accuracy and output SQNR (dB, logits vs float) on the "
        "test set; time = wall seconds of the whole PTQ call (first call incl. tracing and JIT "
        "compilation / second call reusing the compiled code)"
        + (
            "; torch = the same network and weights in PyTorch through jq (thr '=': every "
            "threshold equal to the Flax run's), MCT = MCT 2.6.1 on that torch twin."
            if twin is not None
            else "."
        )
    )
    _summary(rows, f_acc, args.bits)
    print(f"total {time.perf_counter() - t0:.0f} s")


def _twin(model, xcal, xte, yte, f_logits, args) -> Twin | None:
    if args.no_torch:
        return None
    try:
        import torch
    except ImportError:
        print("(torch twin not run: torch not importable; pip install jq-quant[torch])")
        return None
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared box
    twin = Twin(model, xcal, xte, yte, mct=not args.no_mct, mct_kl=args.mct_kl)
    gap = float(np.max(np.abs(twin.f_logits - f_logits)))
    print(f"torch twin: same weights, max |logits - Flax logits| = {gap:.1e}")
    if not twin.mct and not args.no_mct:
        print("(MCT not run: model-compression-toolkit not importable)")
    return twin


if __name__ == "__main__":
    main()
