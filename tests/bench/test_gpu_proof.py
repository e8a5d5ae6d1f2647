"""``bench/gpu_proof.py --cpu``: the GPU measurement's code path runs (one step per method, tiny sizes), so the
prepared script cannot rot between GPU runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_proof_cpu_smoke(tmp_path):
    out = tmp_path / "proof.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_proof.py"), "--cpu", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["card"]["device"] == "cpu" and report["precision"] == "32-true"
    ours = {Path(r["recipe"]).parent.name: r for r in report["ours"]}
    assert sorted(ours) == sorted(["simclr", "moco_v2", "byol", "swav", "amdim", "yadim", "cpc_v2"])
    for method, row in ours.items():
        assert row["steps"] == 1 and row["batch"] == 2, method
        assert row["training_flops_per_image"] > 0, method
        assert row["loss"] == row["loss"], f"{method}: NaN loss"
    try:
        import lightly  # noqa: F401
    except ImportError:  # CI installs the train and dev extras, not the bench extra
        assert report["lightly"] == [] and "lightly is not installed" in report["lightly_skipped"]
    else:
        assert [r["lightly"] for r in report["lightly"]] == ["simclr", "byol"]
        assert all(r["loss"] == r["loss"] for r in report["lightly"])
