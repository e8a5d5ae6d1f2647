"""``pip install contrastive-zoo`` (no ``train`` extra) is enough to load and run an encoder: using ``zoo`` never
imports the training stack. A fresh interpreter, because this test session has imported all of it already."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING_ONLY = ("pytorch_lightning", "lightning", "lightning_fabric", "jsonargparse", "matplotlib", "torchmetrics",
                 "yaml", "training")

SCRIPT = f"""
import json, sys
import torch
import zoo

e = zoo.load_encoder("yadim")
y = e(zoo.eval_transform(e)(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)))
zoo.get_card("yadim")
print(json.dumps({{"shape": list(y.shape), "zoo": zoo.__file__,
                  "imported": [m for m in {TRAINING_ONLY!r} if m in sys.modules]}}))
"""


def test_using_zoo_imports_no_training_dependency(tmp_path):
    # cwd outside the checkout, the checkout on the path: ``training`` is importable but must not be imported
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"][0] == 2
    assert Path(report["zoo"]).resolve().is_relative_to(ROOT)
    assert report["imported"] == [], f"using zoo imported training-only modules: {report['imported']}"
