"""PTQ of a small CNN on scikit-learn's digits with every error method, jq beside MCT.

Trains a CNN on the 8x8 digits that ship with scikit-learn (nothing downloads) in a few
seconds, then quantizes it with MCT's documented call
(``jq.ptq.pytorch_post_training_quantization``) once per error method, for activations
(weights MSE) and for weights (activations MSE), at 8 and 4 bits, and with jq's ``"auto"``
(per layer, the method whose parameters give the best layer-output SQNR; for one kind, then
for both). Prints test accuracy,
output SQNR against the float model (dB) and wall time per run. When
model-compression-toolkit is importable, the same runs go through
``mct.ptq.pytorch_post_training_quantization`` and MCT's figures are printed beside jq's.

Run: ``make demo`` or ``PYTHONPATH=.:adapters python examples/digits_ptq.py [--no-mct]
[--mct-kl] [--bits 8 4] [--report PREFIX]``.

Notes: jq times include JIT compilation (the first run of a method compiles its search; later
runs of the same shapes reuse it). MCT's KL search on kernels is very slow (about 280 s for
this small CNN), so MCT's weights-KL runs are skipped unless ``--mct-kl``; MCT cannot use HMSE
for weights without GPTQ, so that cell is "n/a".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path[:0] = [
    os.path.join(os.path.dirname(__file__), ".."),
    os.path.join(os.path.dirname(__file__), "..", "adapters"),
]

import jq  # noqa: E402
import jq.core  # noqa: E402
import jq.ptq  # noqa: E402

METHODS = ("noclipping", "mse", "mae", "kl", "lp", "hmse")
AUTO = "auto"  # jq only: per layer, the method with the best layer-output SQNR
BATCH = 64


class DigitsCNN(torch.nn.Module):
    """conv-bn-relu x2, max-pool, conv-bn-relu, linear-relu, linear (about 12 k params)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(16)
        self.conv3 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.bn3 = torch.nn.BatchNorm2d(16)
        self.fc1 = torch.nn.Linear(16 * 4 * 4, 32)
        self.fc2 = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def load_data(seed: int = 0):
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0 - 0.3) / 0.4
    x = x[:, None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(x))
    tr, te = idx[:1280], idx[1280:]
    return x[tr], y[tr], x[te], y[te]


def train(xtr, ytr, *, epochs: int = 12, seed: int = 0) -> DigitsCNN:
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), BATCH):
            b = perm[i : i + BATCH]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
            opt.step()
    return model.eval()


def predict(model, x: np.ndarray) -> np.ndarray:
    """Logits in batches of ``BATCH`` (the last batch is padded, which keeps one compiled
    shape for the float model's torch calls)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), BATCH):
            b = x[i : i + BATCH]
            n = len(b)
            if n < BATCH:
                b = np.concatenate([b, np.zeros((BATCH - n,) + b.shape[1:], b.dtype)])
            y = model(torch.from_numpy(b))
            out.append(np.asarray(y.detach().cpu().numpy())[:n])
    return np.concatenate(out)


def sqnr_db(ref: np.ndarray, q: np.ndarray) -> float:
    noise = np.sum((ref.astype(np.float64) - q) ** 2)
    return (
        float("inf")
        if noise == 0
        else float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise))
    )


def representative(xcal: np.ndarray):
    def gen():
        for i in range(0, len(xcal), BATCH):
            yield [torch.from_numpy(xcal[i : i + BATCH])]

    return gen


# -- jq --------------------------------------------------------------------------------------


def run_jq(model, gen, bits: int, act: str, wgt: str, *, compat: bool = False):
    qc = jq.core.QuantizationConfig(
        activation_error_method=act, weights_error_method=wgt, mct_compat=compat
    )
    core = jq.core.CoreConfig(quantization_config=qc, progress=False)
    tp = jq.core.TargetPlatform(weights_n_bits=bits, activation_n_bits=bits)
    t = time.perf_counter()
    qmodel, info = jq.ptq.pytorch_post_training_quantization(
        model, gen, core_config=core, target_platform_capabilities=tp
    )
    return qmodel, info, time.perf_counter() - t


# -- MCT -------------------------------------------------------------------------------------


def mct_available() -> bool:
    try:
        import model_compression_toolkit  # noqa: F401
    except Exception:
        return False
    return True


def mct_tpc(bits: int):
    from model_compression_toolkit.target_platform_capabilities.tpc_models.imx500_tpc.v1_0 import (
        tpc as imx,
    )

    base, _, default = imx.get_op_quantization_configs()
    edit = dict(activation_n_bits=bits, supported_input_activation_n_bits=(bits,))
    base = base.clone_and_edit(attr_to_edit={"kernel_attr": {"weights_n_bits": bits}}, **edit)
    default = default.clone_and_edit(**edit)
    return imx.generate_tpc(
        default_config=default, base_config=base, mixed_precision_cfg_list=[base], name="imx"
    )


def run_mct(model, gen, bits: int, act: str, wgt: str):
    import model_compression_toolkit as mct

    em = mct.core.QuantizationErrorMethod
    qc = mct.core.QuantizationConfig(
        activation_error_method=em[act.upper()], weights_error_method=em[wgt.upper()]
    )
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        qmodel, _ = mct.ptq.pytorch_post_training_quantization(
            model,
            gen,
            core_config=mct.core.CoreConfig(quantization_config=qc),
            target_platform_capabilities=mct_tpc(bits),
        )
    return qmodel.eval(), time.perf_counter() - t


def mct_thresholds(qmodel):
    """(activation thresholds, [kernel thresholds per layer]) of an MCT-exported model."""
    acts, wgts = [], []
    for m in qmodel.modules():
        hq = getattr(m, "activation_holder_quantizer", None)
        if hq is not None and hasattr(hq, "threshold_np"):
            acts.append(float(np.asarray(hq.threshold_np).ravel()[0]))
        wq = getattr(m, "weights_quantizers", None)
        if wq and "weight" in wq and hasattr(wq["weight"], "threshold_np"):
            wgts.append(np.asarray(wq["weight"].threshold_np, np.float64).ravel())
    return acts, wgts


# -- main ------------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--no-mct", action="store_true", help="skip MCT even if installed")
    ap.add_argument("--mct-kl", action="store_true", help="also run MCT's (slow) KL searches")
    ap.add_argument("--calib", type=int, default=256, help="calibration images")
    ap.add_argument(
        "--report",
        metavar="PREFIX",
        default=None,
        help="write the HTML report of each AUTO run to PREFIX_<bits>bit.html (jq.report)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared box
    warnings.filterwarnings("ignore")
    logging.getLogger("Model Compression Toolkit").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_data()
    model = train(xtr, ytr)
    f_logits = predict(model, xte)
    f_acc = 100 * np.mean(f_logits.argmax(1) == yte)
    print(
        f"digits: {len(xtr)} train / {len(xte)} test images; float CNN trained in "
        f"{time.perf_counter() - t0:.1f} s; float test accuracy {f_acc:.2f} %"
    )
    gen = representative(xtr[: args.calib])
    use_mct = not args.no_mct and mct_available()
    if not use_mct:
        print("(MCT not run: --no-mct or model-compression-toolkit not importable)")

    header = f"{'bits':>4}  {'kind':<10} {'method':<10} | {'jq acc':>7} {'SQNR':>6} {'time':>10}"
    if use_mct:
        header += f" | {'MCT acc':>7} {'SQNR':>6} {'time':>6}"
    print()
    print(header)
    print("-" * len(header))
    rows = []
    cache = {}
    auto_infos = {}
    for bits in args.bits:
        for kind in ("activation", "weights"):
            for method in METHODS + (AUTO,):
                act, wgt = (method, "mse") if kind == "activation" else ("mse", method)
                key = (bits, act, wgt)
                if key not in cache:
                    qm, info, dt = run_jq(model, gen, bits, act, wgt)
                    _, _, dt2 = run_jq(model, gen, bits, act, wgt)  # compiled code reused
                    lg = predict(qm, xte)
                    acc = 100 * np.mean(lg.argmax(1) == yte)
                    cache[key] = (acc, sqnr_db(f_logits, lg), f"{dt:5.1f}/{dt2:4.1f}")
                acc, sq, dt = cache[key]
                line = f"{bits:>4}  {kind:<10} {method:<10} | {acc:7.2f} {sq:6.1f} {dt:>10}"
                mct_cell = None
                if use_mct:
                    if method == AUTO:
                        line += f" | {'n/a (jq only)':>22}"
                    elif kind == "weights" and method == "hmse":
                        line += f" | {'n/a (needs GPTQ)':>22}"
                    elif kind == "weights" and method == "kl" and not args.mct_kl:
                        line += f" | {'skipped (slow)':>22}"
                    else:
                        mkey = ("mct",) + key
                        if mkey not in cache:
                            qm, dt = run_mct(model, gen, bits, act, wgt)
                            lg = predict(qm, xte)
                            cache[mkey] = (
                                100 * np.mean(lg.argmax(1) == yte),
                                sqnr_db(f_logits, lg),
                                dt,
                            )
                        mct_cell = cache[mkey]
                        line += f" | {mct_cell[0]:7.2f} {mct_cell[1]:6.1f} {mct_cell[2]:6.2f}"
                print(line, flush=True)
                rows.append((bits, kind, method, acc, mct_cell, sq))
        # AUTO for both kinds at once.
        key = (bits, AUTO, AUTO)
        qm, info, dt = run_jq(model, gen, bits, AUTO, AUTO)
        _, _, dt2 = run_jq(model, gen, bits, AUTO, AUTO)
        lg = predict(qm, xte)
        acc, sq = 100 * np.mean(lg.argmax(1) == yte), sqnr_db(f_logits, lg)
        cache[key] = (acc, sq, f"{dt:5.1f}/{dt2:4.1f}")
        auto_infos[bits] = info
        line = f"{bits:>4}  {'both':<10} {AUTO:<10} | {acc:7.2f} {sq:6.1f} {cache[key][2]:>10}"
        print(line + (f" | {'n/a (jq only)':>22}" if use_mct else ""), flush=True)
        rows.append((bits, "both", AUTO, acc, None, sq))

    print()
    print(
        f"float accuracy {f_acc:.2f} %; accuracy and output SQNR (dB, logits vs float) on the "
        "test set; time = wall seconds of the whole PTQ call (jq: first call incl. JIT "
        "compilation / second call reusing the compiled code; both include torch.export)."
    )
    for bits in args.bits:
        for kind in ("activation", "weights"):
            single = [r for r in rows if r[:2] == (bits, kind) and r[2] != AUTO]
            auto = next(r for r in rows if r[:3] == (bits, kind, AUTO))
            best_acc = max(single, key=lambda r: r[3])
            best_sq = max(single, key=lambda r: r[5])
            print(
                f"  {bits}-bit {kind} AUTO: accuracy {auto[3]:.2f} % (best single method "
                f"{best_acc[2]} {best_acc[3]:.2f} %), output SQNR {auto[5]:.2f} dB (best single "
                f"{best_sq[2]} {best_sq[5]:.2f} dB)"
            )
        chosen = [li.error_method for li in auto_infos[bits].layers if li.analysis]
        tally = ", ".join(f"{m} {chosen.count(m)}" for m in dict.fromkeys(chosen))
        print(f"  {bits}-bit AUTO (both kinds) chose per layer: {tally}")
    if args.report:
        for bits, info in auto_infos.items():
            html_path, md_path = jq.report(info, f"{args.report}_{bits}bit.html")
            print(f"  report of the {bits}-bit AUTO run: {html_path} (summary {md_path})")
    for bits in args.bits:
        worst = min(r[3] for r in rows if r[0] == bits and r[2] != AUTO)
        print(
            f"  {bits}-bit: worst jq accuracy {worst:.2f} % "
            f"({f_acc - worst:.2f} points below float)"
        )
    if use_mct:
        compared = [r for r in rows if r[4] is not None]
        behind = [r for r in compared if r[3] < r[4][0]]
        worse_sqnr = [r for r in compared if r[5] < r[4][1] - 0.05]
        print(
            f"  jq accuracy below MCT in {len(behind)} of {len(compared)} compared runs"
            + (f": {[(r[0], r[1], r[2]) for r in behind]}" if behind else "")
            + f"; jq output SQNR below MCT's in {len(worse_sqnr)}"
        )
        # Compat mode: jq's thresholds against MCT's on the same model and data.
        qm_mct, _ = run_mct(model, gen, 8, "mse", "mse")
        _, info, _ = run_jq(model, gen, 8, "mse", "mse", compat=True)
        m_act, m_w = mct_thresholds(qm_mct)
        j_act = [li.threshold for li in info.layers if li.kind == "activation"]
        j_w = [np.asarray(li.threshold) for li in info.layers if li.kind == "weights"]
        act_ok = sorted(m_act) == sorted(j_act)
        w_dev = max(
            (
                float(np.max(np.abs(a - b) / b))
                for a, b in zip(j_w, m_w, strict=False)
                if a.shape == b.shape
            ),
            default=float("nan"),
        )
        print(
            f"  mct_compat=True, 8-bit MSE: activation thresholds equal MCT's: {act_ok} "
            f"({len(j_act)} jq / {len(m_act)} MCT); kernel thresholds max relative "
            f"difference {w_dev:.2e} over {len(j_w)} layers"
        )
    onnx_int8(model, gen, xte, yte)
    print(f"total {time.perf_counter() - t0:.0f} s")


def onnx_int8(model, gen, xte: np.ndarray, yte: np.ndarray) -> None:
    """Export the 8-bit MSE model to ONNX INT8 (``jq.exporter``) and print onnxruntime's test
    accuracy beside jq's (integer kernels at ORT's default optimization level)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("(ONNX export not run: onnxruntime not importable; pip install jq-quant[onnx])")
        return
    import jq.exporter

    qmodel, _, _ = run_jq(model, gen, 8, "mse", "mse")
    jq_acc = 100 * np.mean(predict(qmodel, xte).argmax(1) == yte)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "digits_int8.onnx")
        t = time.perf_counter()
        jq.exporter.pytorch_export_model(qmodel, path, gen, quantization_format="INT8")
        dt = time.perf_counter() - t
        size = os.path.getsize(path)
        so = ort.SessionOptions()
        so.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        logits = session.run(None, {session.get_inputs()[0].name: xte})[0]
        import onnx

        kernels = sorted(
            {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}
            & {"QLinearConv", "QLinearMatMul", "QGemm"}
        )
    ort_acc = 100 * np.mean(logits.argmax(1) == yte)
    print(
        f"  ONNX INT8 (8-bit MSE, {size / 1024:.0f} KiB, exported in {dt:.1f} s): onnxruntime "
        f"accuracy {ort_acc:.2f} % beside jq's {jq_acc:.2f} %; integer kernels {kernels}"
    )


if __name__ == "__main__":
    main()
