"""PTQ of a small Flax NNX CNN on scikit-learn's digits with every error method (the Flax twin
of ``digits_ptq.py``).

Trains an NNX CNN (conv, batch norm, silu, a residual depthwise block, max-pool, dense head) on
the 8x8 digits that ship with scikit-learn (nothing downloads) with optax in a few seconds,
then quantizes it with ``jq.ptq.flax_post_training_quantization`` (MCT's call on a Flax model;
the quantized model comes back as an ``nnx.Module``) once per error method, for activations
(weights MSE) and for weights (activations MSE), at 8 and 4 bits, and with jq's ``"auto"``.
Prints test accuracy, output SQNR against the float model (dB) and wall time per run, the
same table as the torch demo (MCT has no Flax front end, so there is no MCT column).

Run: ``make demo`` or ``PYTHONPATH=.:adapters python examples/flax_digits_ptq.py [--bits 8 4]``.

Notes: jq times include tracing the model and JIT compilation (the second call of a method
reuses the compiled searches).
"""

from __future__ import annotations

import argparse
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


class DigitsCNN(nnx.Module):
    """conv-bn-silu, residual depthwise-bn-silu, 1x1 conv-bn-silu, max-pool, conv-bn-silu,
    dense-silu, dense (NHWC, about 19 k params)."""

    def __init__(self, rngs: nnx.Rngs):
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
        x = nnx.silu(self.bn1(self.conv1(x)))
        x = x + nnx.silu(self.bn2(self.dw(x)))
        x = nnx.silu(self.bn3(self.pw(x)))
        x = nnx.max_pool(x, (2, 2), (2, 2))
        x = nnx.silu(self.bn4(self.conv3(x)))
        x = nnx.silu(self.fc1(x.reshape(x.shape[0], -1)))
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


def train(xtr, ytr, *, epochs: int = 12, seed: int = 0) -> DigitsCNN:
    model = DigitsCNN(nnx.Rngs(seed))
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


def _table(model, gen, xte, yte, f_logits, bits_list) -> list:
    header = f"{'bits':>4}  {'kind':<10} {'method':<10} | {'jq acc':>7} {'SQNR':>6} {'time':>10}"
    print(f"\n{header}\n{'-' * len(header)}")
    rows, cache = [], {}
    for bits in bits_list:
        runs = [(k, m) for k in ("activation", "weights") for m in METHODS + (AUTO,)]
        for kind, method in runs + [("both", AUTO)]:
            act, wgt = {"activation": (method, "mse"), "weights": ("mse", method)}.get(
                kind, (AUTO, AUTO)
            )
            key = (bits, act, wgt)
            if key not in cache:
                qm, _, dt = run_jq(model, gen, bits, act, wgt)
                _, _, dt2 = run_jq(model, gen, bits, act, wgt)  # compiled code reused
                lg = predict(qm, xte)
                acc = 100 * np.mean(lg.argmax(1) == yte)
                cache[key] = (acc, sqnr_db(f_logits, lg), f"{dt:5.1f}/{dt2:4.1f}")
            acc, sq, dt = cache[key]
            print(f"{bits:>4}  {kind:<10} {method:<10} | {acc:7.2f} {sq:6.1f} {dt:>10}", flush=True)
            rows.append((bits, kind, method, acc, sq))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--calib", type=int, default=256, help="calibration images")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_data()
    model = train(xtr, ytr)
    model = jq_flax.inference_view(model)
    f_logits = predict(jax.jit(lambda x: model(x)), xte)
    f_acc = 100 * np.mean(f_logits.argmax(1) == yte)
    print(
        f"digits: {len(xtr)} train / {len(xte)} test images; float NNX CNN trained with optax in "
        f"{time.perf_counter() - t0:.1f} s; float test accuracy {f_acc:.2f} %"
    )
    rows = _table(model, representative(xtr[: args.calib]), xte, yte, f_logits, args.bits)
    print(
        f"\nfloat accuracy {f_acc:.2f} %; accuracy and output SQNR (dB, logits vs float) on the "
        "test set; time = wall seconds of the whole PTQ call (first call incl. tracing and JIT "
        "compilation / second call reusing the compiled code)."
    )
    for bits in args.bits:
        worst = min(r[3] for r in rows if r[0] == bits and r[2] != AUTO)
        print(
            f"  {bits}-bit: worst accuracy {worst:.2f} % ({f_acc - worst:.2f} points below float)"
        )
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
