"""The public faces: ``import jq`` brings ``jq.exporter`` (and imports neither torch nor onnx),
and ``dir(jq.ptq)`` lists only public names."""

from __future__ import annotations

import subprocess
import sys

import jq


def test_import_jq_brings_the_exporter_without_torch_or_onnx():
    code = (
        "import sys, jq; jq.exporter.pytorch_export_model; "
        "print([m for m in ('torch', 'onnx', 'flax') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dir_of_ptq_lists_its_public_names_only():
    names = dir(jq.ptq)
    assert "pytorch_post_training_quantization" in names
    assert not {"Any", "Callable", "annotations"} & set(names)
