"""The wheel without its ``train`` extra is enough to load and run an encoder: using ``zoo`` never
imports the training stack. A fresh interpreter, because this test session has imported all of it already."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.slow
def test_using_zoo_imports_no_training_dependency(tmp_path):
    # cwd outside the checkout, the checkout on the path: ``training`` is importable but must not be imported
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"][0] == 2
    assert Path(report["zoo"]).resolve().is_relative_to(ROOT)
    assert report["imported"] == [], f"using zoo imported training-only modules: {report['imported']}"


# A core-only install: the train extra's modules cannot be found
WITHOUT_TRAIN_EXTRA = """
import importlib.abc, runpy, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TRAIN_EXTRA:
            return None
        return self.finder.find_spec(name, path, target)

TRAIN_EXTRA = {"pytorch_lightning", "lightning_fabric", "jsonargparse", "matplotlib", "torchmetrics", "yaml"}
sys.meta_path[:] = [NotInstalled(finder) for finder in sys.meta_path]
import torch, zoo
e = zoo.load_encoder("yadim")
e(zoo.eval_transform(e)(torch.zeros(1, 1, 28, 28, dtype=torch.uint8)))
sys.argv = ["training", "evaluate", "--help"]
runpy.run_module("training", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_without_the_train_extra_zoo_works_and_training_names_the_extra(tmp_path):
    result = subprocess.run([sys.executable, "-c", WITHOUT_TRAIN_EXTRA], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr[-3000:]  # zoo worked; then ``python -m training`` stops
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("ModuleNotFoundError: training needs the 'train' extra, which is not installed (missing: "
                    "pytorch-lightning, jsonargparse[signatures], matplotlib, torchmetrics, PyYAML): "
                    "pip install 'pytorch-lightning' 'jsonargparse[signatures]' 'matplotlib' 'torchmetrics' 'PyYAML', "
                    "or install the wheel with its extra: "
                    "pip install 'dist/contrastive_zoo-VERSION-py3-none-any.whl[train]' (not on PyPI)"), \
        result.stderr[-3000:]
