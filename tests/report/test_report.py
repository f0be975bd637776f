"""``jq.report`` / ``python -m jq report``: HTML + markdown from a synthetic QuantizationInfo.

No torch: the info is built by hand with ``jq._src.ptq.auto_analysis.layer_analysis``, the way
the pipeline records AUTO's choices. The browser test opens the page in headless Chromium (Debian's
``chromium``) and checks a non-blank screenshot and every layer's section in the DOM.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from jq import report  # noqa: E402
from jq._src.ptq import auto_analysis as _analysis  # noqa: E402
from jq._src.ptq import auto_eval as _auto  # noqa: E402

METHODS = ["mse", "noclipping", "mae", "lp", "kl"]


def _info(n_act: int = 3, n_w: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(n_w):
        db = rng.uniform(20, 40, len(METHODS) + 1)
        methods = METHODS + ["hmse"]
        params = [_analysis.params_dict(threshold=rng.uniform(0.5, 1.0, 4)) for _ in methods]
        curves = [
            ([], [])
            if m == "noclipping"
            else _analysis.error_curve(
                (np.linspace(-1, 1, 30)[:, None] ** 2) * rng.uniform(1, 2, 4),
                np.linspace(0.7, 1.2, 30)[:, None] * np.ones(4),
                np.ones(4),
            )
            for m in methods
        ]
        choice = int(np.argmax(db))
        layers.append(
            dict(
                name=f"conv{i}",
                kind="weights",
                op="conv",
                n_bits=8,
                method="symmetric",
                error_method=methods[choice],
                signed=True,
                threshold=params[choice]["threshold"],
                channel_axis=0,
                sqnr_db=float(db[choice]),
                analysis=_analysis.layer_analysis(
                    methods, db, choice, params=params, curves=curves
                ),
            )
        )
    for i in range(n_act):
        x = np.maximum(rng.standard_normal(20000), 0) if i % 2 == 0 else rng.standard_normal(20000)
        counts, edges = np.histogram(x, 2048)
        signed = bool(edges[0] < 0)
        ts = [2.0 ** (1 + k % 2) for k in range(len(METHODS))]
        params = [_analysis.params_dict(threshold=t, signed=signed) for t in ts]
        curves = [
            ([], [])
            if m == "noclipping"
            else _analysis.error_curve((np.arange(20) - 10.0 + k) ** 2, 2.0 ** -np.arange(20), 8.0)
            for k, m in enumerate(METHODS)
        ]
        db = np.array([30.0, 25.0, 29.0, 30.0, 28.0]) + i
        choice, _ = _auto.choose(np.array([10.0**4]), 10 ** (4 - db[None] / 10))
        layers.append(
            dict(
                name=f"layer{i}.relu" if i % 2 == 0 else f"add_{i}",
                kind="activation",
                op="relu" if i % 2 == 0 else "add",
                n_bits=8,
                method="power_of_two",
                error_method=METHODS[int(choice[0])],
                signed=signed,
                threshold=ts[int(choice[0])],
                sqnr_db=float(db[int(choice[0])]) - 1,
                analysis=_analysis.layer_analysis(
                    METHODS,
                    db,
                    int(choice[0]),
                    params=params,
                    curves=curves,
                    histogram=(edges, counts),
                ),
            )
        )
    # A layer without analysis (e.g. a bounded op) must still get its section.
    layers.append(
        dict(
            name="sigmoid_1",
            kind="activation",
            op="sigmoid",
            n_bits=8,
            method="power_of_two",
            error_method="minmax",
            signed=False,
            threshold=1.0,
            sqnr_db=float("inf"),
        )
    )
    return dict(
        layers=layers,
        output_sqnr_db=27.5,
        config=dict(activation_error_method="auto", weights_error_method="auto"),
        timings={"total": 1.0},
        notes=["bias correction: 2 layers"],
    )


def _ids(info: dict) -> list[str]:
    out = []
    for li in info["layers"]:
        pre = "w-" if li["kind"] == "weights" else "a-"
        out.append(pre + re.sub(r"[^A-Za-z0-9_-]", "_", li["name"]))
    return out


def test_report_html_is_self_contained_and_complete(tmp_path):
    info = _info()
    html_path, md_path = report(info, tmp_path / "r.html")
    page = Path(html_path).read_text(encoding="utf-8")
    assert md_path == str(tmp_path / "r.md")
    # Self-contained: no external resources, every image inline and a valid PNG.
    assert not re.search(r'(src|href)="(https?:|file:|//)', page)
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    n_analysed = sum(1 for li in info["layers"] if "analysis" in li)
    assert len(imgs) == n_analysed
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    for slug, li in zip(_ids(info), info["layers"], strict=True):
        assert f'id="{slug}"' in page
        assert f'href="#{slug}"' in page  # summary row links to the section
        assert li["name"] in page
    assert page.index('id="summary-table"') < page.index('<section class="layer"')
    # The best method of each analysed layer is highlighted in the summary.
    assert page.count('class="best"') >= n_analysed


def test_report_markdown_summary(tmp_path):
    info = _info()
    _, md_path = report(info, tmp_path / "r.html")
    md = Path(md_path).read_text(encoding="utf-8")
    for li in info["layers"]:
        assert f"`{li['name']}`" in md
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(table) == 1 + len(info["layers"])
    assert "Chosen per layer:" in md and "27.50" in md


def test_report_names_the_per_layer_choice_the_check_replaced(tmp_path):
    """AUTO's whole-model check kept another method than the layer's own best: both show."""
    info = _info(n_act=1, n_w=1)
    an = info["layers"][0]["analysis"]
    own = an["chosen"]
    other = next(m for m in an["methods"] if m != own)
    an["per_layer"], an["chosen"] = own, other
    info["layers"][1]["analysis"]["per_layer"] = info["layers"][1]["analysis"]["chosen"]
    html_path, md_path = report(info, tmp_path / "r.html")
    page = Path(html_path).read_text(encoding="utf-8")
    md = Path(md_path).read_text(encoding="utf-8")
    for text in (page, md):
        assert f"{other} (per layer: {own})" in text
        assert text.count("(per layer:") == (2 if text is page else 1)  # row + section / row


def test_report_accepts_json_path_and_cli(tmp_path):
    info = _info(n_act=2, n_w=1)
    p = tmp_path / "info.json"
    p.write_text(json.dumps(info))
    out = tmp_path / "sub" / "cli.html"
    cli = [sys.executable, "-m", "jq", "report", str(p), str(out)]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # jq creates no folders (the rule of every jq writer): a missing one is named.
    r = subprocess.run(cli, capture_output=True, text=True, cwd=root)
    assert r.returncode == 1 and f"folder {str(out.parent)!r} does not exist" in r.stderr
    out.parent.mkdir()
    r = subprocess.run(cli, capture_output=True, text=True, cwd=root)
    assert r.returncode == 0, r.stderr
    assert out.exists() and (tmp_path / "sub" / "cli.md").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "jq", "report", str(tmp_path / "missing.json"), str(out)],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert bad.returncode == 1 and "missing.json" in bad.stderr


def test_report_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="jq.report: quantization_info"):
        report(42, tmp_path / "x.html")


def test_import_jq_does_not_import_matplotlib():
    code = (
        "import sys, jq, jq._src.report.report, jq._src.ptq.auto_eval, jq._src.ptq.auto_analysis; "
        "print('matplotlib' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


@pytest.mark.skipif(
    _chromium() is None,
    reason="headless Chromium not found (Debian: apt-get install -y chromium; .ci/run installs "
    "it when missing)",
)
def test_report_renders_in_headless_chromium(tmp_path):
    png_mod = pytest.importorskip("matplotlib.image")
    info = _info()
    html_path, _ = report(info, tmp_path / "page.html")
    url = "file://" + os.path.abspath(html_path)
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp(dir=tmp_path)
    base = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    r = subprocess.run(
        base + [f"--screenshot={shot}", "--window-size=1200,3000", url],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists(), r.stderr.decode(errors="replace")[-2000:]
    img = png_mod.imread(str(shot))  # (H, W, 3|4) floats in [0, 1]
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    rgb = img[..., :3]
    # Non-blank: not a single colour, and a real share of non-white pixels (text, plots).
    assert float(rgb.std()) > 0.05
    assert float(np.mean(np.any(rgb < 0.9, axis=-1))) > 0.02
    dom = subprocess.run(
        base + ["--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    for slug in _ids(info):
        assert f'id="{slug}"' in dom, slug
    assert 'id="summary-table"' in dom
    # Every embedded plot decoded: the DOM keeps the data URLs.
    assert dom.count("data:image/png;base64,") == sum(
        1 for li in info["layers"] if "analysis" in li
    )
