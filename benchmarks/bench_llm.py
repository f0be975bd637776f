"""Weights-only searches on Llama-shaped models (issue 24): time, parameters per second and
peak memory of ``jq_torch.quantize_weights_streamed`` at ~125M, ~350M and ~1B parameters,
beside MCT 2.6.1's per-channel search timed on a sample of the same matrices and extrapolated.

Models: ``transformers.LlamaForCausalLM`` at random init (seeded; nothing downloads), float32,
shapes of the usual small Llamas (``SIZES``). Every decoder Linear (q/k/v/o, gate/up/down) is
searched; the embedding and ``lm_head`` stay float (LLM recipes' default). Modes, 4 bits,
symmetric:

- ``channel``: per output channel, MSE;
- ``group``: per group of 128 inputs, MSE (W4A16 g128);
- ``group-hmse``: per group of 128, HMSE with layer-wise scores (each Linear's inputs' mean
  squares over 4 random token sequences of 128: the calibration pass is timed apart).

Each (size, mode) runs in a fresh process with an empty jq compilation cache: ``first`` is the
first decoder block (compilation included), ``steady`` the parameters per second over the other
blocks, ``total`` the whole search (calibration excluded); ``peak RSS`` is the process's
maximum resident memory (model included: ``model`` is its float32 weights' size).

MCT: ``mct_ref.weights`` (MCT 2.6.1's own ``*_selection_tensor``, per channel, MSE,
symmetric, 4 bits) on the first ``--mct-rows`` output rows of each of the first block's seven
matrices; its time per weight times the searched weights is the "extrapolated" column. jq's
own per-channel time on the same sample is shown beside it.

Run: ``PYTHONPATH=.:adapters python benchmarks/bench_llm.py [--sizes 125m 350m 1b]
[--modes channel group group-hmse] [--write-docs]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "adapters")]
sys.path.insert(0, os.path.join(HERE, "..", "tests", "select"))

# hidden, intermediate, layers, heads, kv heads (vocab 32000): GPT-3-small-like 125M,
# 350M-like, and TinyLlama-1.1B's shapes.
SIZES = {
    "125m": (768, 2048, 12, 12, 12),
    "350m": (1024, 2816, 24, 16, 16),
    "1b": (2048, 5632, 22, 32, 4),
}
MODES = {"channel": (None, "mse"), "group": (128, "mse"), "group-hmse": (128, "hmse")}
VOCAB, CALIB_SEQS, CALIB_LEN = 32000, 4, 128


def _model(size: str):
    import torch
    import transformers

    hidden, inter, layers, heads, kv = SIZES[size]
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.no_grad():
        return transformers.LlamaForCausalLM(cfg).eval()


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def child(size: str, mode: str) -> dict:
    import torch

    import jq_torch

    t = time.perf_counter()
    model = _model(size)
    build_s = time.perf_counter() - t
    n_total = sum(p.numel() for p in model.parameters())
    group, error = MODES[mode]
    calibration = None
    calib_s = 0.0
    if error == "hmse":
        g = torch.Generator().manual_seed(1)
        calibration = [torch.randint(0, VOCAB, (1, CALIB_LEN), generator=g) for _ in range(4)]
        # Time the calibration pass apart: the streamed call's own pass repeats it (the model
        # is float until the first write), so subtract this from its total.
        from jq_torch._streamed import _targets, input_mean_squares

        t = time.perf_counter()
        input_mean_squares(model, _targets(model, ("lm_head",), group)[0], calibration)
        calib_s = time.perf_counter() - t
    sizes = {n: m.weight.numel() for n, m in model.named_modules() if hasattr(m, "weight")}
    rss_before = _peak_rss_gb()
    res = jq_torch.quantize_weights_streamed(
        model, n_bits=4, group_size=group, error_method=error, calibration=calibration
    )
    first = sum(v.seconds for k, v in res.layers.items() if ".layers.0." in k)
    rest = [k for k in res.layers if ".layers.0." not in k]
    rest_s = sum(res.layers[k].seconds for k in rest)
    return {
        "n_total": n_total,
        "n_searched": res.n_params,
        "build_s": build_s,
        "calib_s": calib_s,
        "total_s": res.seconds - calib_s,
        "first_s": first,
        "steady_pps": sum(sizes[k] for k in rest) / max(rest_s, 1e-9),
        "rss_before_gb": rss_before,
        "peak_rss_gb": _peak_rss_gb(),
        "model_gb": n_total * 4 / 2**30,
    }


def mct_sample(size: str, rows: int) -> dict:
    """MCT's and jq's per-channel MSE search on the first ``rows`` rows of block 0's
    matrices, and the weights they stand for."""
    import mct_ref
    import numpy as np

    import jq

    model = _model(size)
    mats = [
        m.weight.detach()[:rows].float().numpy().copy()
        for n, m in model.named_modules()
        if ".layers.0." in n and hasattr(m, "weight") and m.weight.ndim == 2
    ]
    searched = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if ".layers." in n and hasattr(m, "weight") and m.weight.ndim == 2
    )
    del model
    n = sum(w.size for w in mats)
    warnings.filterwarnings("ignore")
    t = time.perf_counter()
    for w in mats:
        mct_ref.weights(w, method="symmetric", error_method="mse", n_bits=4)
    mct_s = time.perf_counter() - t
    kw = {"n_bits": 4, "error_method": "mse"}
    for w in mats:  # compile first: jq's steady state on the same sample
        np.asarray(jq.weights_qparams(w, **kw).threshold)
    t = time.perf_counter()
    for w in mats:
        np.asarray(jq.weights_qparams(w, **kw).threshold)
    jq_s = time.perf_counter() - t
    return {"n_sample": n, "mct_s": mct_s, "jq_s": jq_s, "searched": searched}


def _spawn(args: list[str], timeout: float, cache: dict | None = None) -> dict:
    """The child's result for ``args`` (a fresh process), with the load after it; from
    ``cache`` (``--results``) when a previous run measured it."""
    key = " ".join(args)
    if cache is not None and key in cache.get("rows", {}):
        return cache["rows"][key]
    if cache is not None and cache.get("only"):
        return {"error": "not run"}
    r = _run_child(args, timeout)
    r["load"] = os.getloadavg()[0]
    if cache is not None and "error" not in r:
        cache.setdefault("rows", {})[key] = r
        with open(cache["path"], "w") as f:
            json.dump({"rows": cache["rows"]}, f, indent=1)
    return r


def _run_child(args: list[str], timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JQ_COMPILATION_CACHE_DIR": cache, "TQDM_DISABLE": "1"}
        cmd = [sys.executable, "-u", __file__, "--child", *args]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timeout after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}


def _fmt_n(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="*", default=list(SIZES))
    p.add_argument("--modes", nargs="*", default=list(MODES))
    p.add_argument("--mct-rows", type=int, default=16)
    p.add_argument("--no-mct", action="store_true")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--write-docs", action="store_true", help="replace the page's llm section")
    p.add_argument(
        "--results",
        help="a JSON file of finished rows: rows found there are not rerun, new rows are added "
        "(a long run in parts; each row still measured in its own fresh process)",
    )
    p.add_argument(
        "--cached-only", action="store_true", help="print the --results rows, run nothing"
    )
    args = p.parse_args(argv)
    cache = None
    if args.results:
        cache = {"path": args.results, "rows": {}, "only": args.cached_only}
        if os.path.exists(args.results):
            with open(args.results) as f:
                cache["rows"] = json.load(f)["rows"]
    if args.write_docs:
        import _page  # benchmarks/_page.py: this script's section of the page

        _page.record_stdout("llm")
    print(f"{os.cpu_count()} cores; load (1 min) at the start {os.getloadavg()[0]:.1f}")
    print(
        "| model (searched) | mode | total | first block (compiles) | steady params/s "
        "| peak RSS (model fp32) | load |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for mode in args.modes:
            r = _spawn([size, mode], args.timeout, cache)
            load = r.get("load", os.getloadavg()[0])
            if "error" in r:
                print(f"| {size} | {mode} | {r['error']} | | | | {load:.1f} |", flush=True)
                continue
            calib = f" (+ calibration {r['calib_s']:.0f} s)" if r["calib_s"] else ""
            print(
                f"| {size} {_fmt_n(r['n_total'])} ({_fmt_n(r['n_searched'])}) | {mode} "
                f"| {r['total_s']:.0f} s{calib} | {r['first_s']:.1f} s "
                f"| {r['steady_pps'] / 1e6:.2f}M | {r['peak_rss_gb']:.1f} GB "
                f"({r['model_gb']:.1f} GB) | {load:.1f} |",
                flush=True,
            )
    if args.no_mct:
        return
    print()
    print(
        f"MCT 2.6.1 per-channel MSE (symmetric, 4 bits) on the first {args.mct_rows} rows of "
        "block 0's seven matrices, extrapolated to every searched weight:"
    )
    print("| model | sample | MCT sample | jq sample (steady) | MCT extrapolated | load |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        r = _spawn(["mct", size, str(args.mct_rows)], args.timeout, cache)
        load = r.get("load", os.getloadavg()[0])
        if "error" in r:
            print(f"| {size} | {r['error']} | | | | {load:.1f} |", flush=True)
            continue
        extrap = r["mct_s"] * r["searched"] / r["n_sample"]
        print(
            f"| {size} | {_fmt_n(r['n_sample'])} | {r['mct_s']:.1f} s | {r['jq_s']:.2f} s "
            f"| {extrap / 60:.0f} min (extrapolated) | {load:.1f} |",
            flush=True,
        )
    print(f"load (1 min) at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        warnings.filterwarnings("ignore")
        if sys.argv[2] == "mct":
            out = mct_sample(sys.argv[3], int(sys.argv[4]))
        else:
            out = child(sys.argv[2], sys.argv[3])
        print("RESULT " + json.dumps(out))
    else:
        main()
