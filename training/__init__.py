"""Training for contrastive-zoo: one generic Lightning recipe for any method row, datamodules, export."""

import importlib.util

# import name -> requirement of the ``train`` extra (``make install``, or a built wheel installed as
# ``WHEEL[train]``; the package is not on PyPI); ``zoo`` alone needs none of them
TRAIN_EXTRA = {"pytorch_lightning": "pytorch-lightning", "jsonargparse": "jsonargparse[signatures]",
               "matplotlib": "matplotlib", "torchmetrics": "torchmetrics", "yaml": "PyYAML"}

_missing = [module for module in TRAIN_EXTRA if importlib.util.find_spec(module) is None]
if _missing:
    raise ModuleNotFoundError(
        f"training needs the 'train' extra, which is not installed (missing: "
        f"{', '.join(TRAIN_EXTRA[m] for m in _missing)}): pip install "
        f"{' '.join(repr(TRAIN_EXTRA[m]) for m in _missing)}, or install the wheel with its extra: "
        "pip install 'dist/contrastive_zoo-VERSION-py3-none-any.whl[train]' (not on PyPI)", name=_missing[0])
