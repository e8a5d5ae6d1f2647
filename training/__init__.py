"""Training for contrastive-zoo: one generic Lightning recipe for any method row, datamodules, export."""

import importlib.util

# import name -> requirement of the ``train`` extra (``pip install 'contrastive-zoo[train]'``); ``zoo`` alone needs
# none of them
TRAIN_EXTRA = {"pytorch_lightning": "pytorch-lightning", "jsonargparse": "jsonargparse[signatures]",
               "matplotlib": "matplotlib", "torchmetrics": "torchmetrics", "yaml": "PyYAML"}

_missing = [module for module in TRAIN_EXTRA if importlib.util.find_spec(module) is None]
if _missing:
    raise ModuleNotFoundError(
        f"training needs the 'train' extra, which is not installed (missing: "
        f"{', '.join(TRAIN_EXTRA[m] for m in _missing)}): pip install 'contrastive-zoo[train]'", name=_missing[0])
