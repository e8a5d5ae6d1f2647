"""``evaluate --protocol rankme|areq``: the label-free figures of ``training.downstream.spectrum`` on a dataset.

RankMe and alpha-ReQ need no labels, so unlike knn/linear/finetune they run on any image folder, class folders
or a flat folder of images alike. Which images are embedded:

- a named dataset (fashion_mnist, cifar10, stl10): its test split, or its whole training split with
  ``split="train"``: the datamodule's own loaders, the ones ``frozen_evaluation`` reads, so the same encoder on
  the same split has the same features under every protocol;
- a folder: every image file under it at any depth, listed and decoded exactly as ``embed`` does
  (``training.downstream.embed.list_images`` and its dataset over ``zoo.images.read_image``). A folder has no
  split to choose: to measure one split of a labelled folder, pass that split's folder (``DIR/test``).

Features are fp32 from the encoder in eval mode after its own eval transform, the numbers the other protocols
read (``embed``'s bf16 default would move the figures slightly). The result carries the figure, the number of
images N and dims D (RankMe grows with N: compare figures over the same images) and the settings: RankMe's eps,
alpha-ReQ's requested and fitted rank range and the fit's r2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import Tensor

import zoo
from training.downstream.datasets import DATASETS, datamodule_for
from training.downstream.frozen import extract_features, frozen_features
from training.downstream.spectrum import ALPHA_K_MAX, ALPHA_K_MIN, RANKME_EPS, alpha_req_fit, rankme
from zoo.errors import ZooError

SPECTRUM_PROTOCOLS = ("rankme", "areq")
SPLITS = ("test", "train")


def spectrum_features(model: zoo.Encoder, data: str, *, root: Optional[str] = None, download: bool = False,
                      split: Optional[str] = None, batch_size: int = 256,
                      skip_unreadable: bool = False) -> Dict[str, Any]:
    """``{"features": (N, D) tensor, "images": what was embedded, "skipped_unreadable": count or None}``."""
    if batch_size < 1:
        raise ZooError(f"batch_size must be positive, got {batch_size}")
    if data in DATASETS:
        chosen = split or "test"
        if chosen not in SPLITS:
            raise ZooError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
        dm = datamodule_for(data, root, download, model)  # its own eval batch size, as knn and linear read it
        loader = dm.test_dataloader() if chosen == "test" else dm.knn_bank_dataloader()
        encode = frozen_features(model, zoo.eval_transform(model))
        features, _ = extract_features(encode, loader, what=f"features of the {chosen} split")
        return {"features": features, "images": f"the {chosen} split", "skipped_unreadable": None}
    if split is not None:
        raise ZooError(f"--split applies to the named datasets ({', '.join(DATASETS)}); for a folder pass the "
                       f"split's own folder as --data (e.g. {Path(data) / split})")
    return folder_features(model, Path(data).expanduser(), batch_size, skip_unreadable)


@torch.no_grad()
def folder_features(model: zoo.Encoder, folder: Path, batch_size: int, skip_unreadable: bool) -> Dict[str, Any]:
    """fp32 features of every image under ``folder`` (``embed``'s listing and decoding), in listing order."""
    from training.downstream.embed import SKIP_OPTION, ImageFiles, list_images

    if not folder.is_dir():
        raise ZooError(f"{folder} is not a dataset name ({', '.join(DATASETS)}) nor an image folder")
    files = list_images(folder)
    channels = 1 if model.zoo_config["input"]["channels"] == 1 else 3
    images = ImageFiles(folder, files, zoo.eval_transform(model), channels)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, collate_fn=list)
    encode = frozen_features(model, lambda x: x)  # the dataset already applied the eval transform
    rows, skipped = [], []
    for batch in loader:
        bad = [(files[row], why) for row, x, why in batch if x is None]
        if bad and not skip_unreadable:
            raise ZooError(f"cannot decode image {folder / bad[0][0]}: {bad[0][1]}; pass {SKIP_OPTION} to leave "
                           "unreadable files out")
        skipped += bad
        good = [x for _, x, _ in batch if x is not None]
        if good:
            rows.append(encode(torch.stack(good)).float().flatten(1))
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s) under {folder}, the first: {skipped[0][0]} "
              f"({skipped[0][1]})", file=sys.stderr, flush=True)
    if not rows:
        raise ZooError(f"none of the {len(files)} images under {folder} can be decoded")
    return {"features": torch.cat(rows), "images": "every image under the folder",
            "skipped_unreadable": len(skipped) if skip_unreadable else None}


def spectrum_figure(features: Tensor, protocol: str) -> Dict[str, Any]:
    """``{protocol: figure, "n", "dims", "settings"}`` for ``rankme`` or ``areq`` of an (N, D) feature matrix;
    alpha-ReQ on too few images or dims for its fit is one ZooError line (``spectrum.alpha_req_fit``'s)."""
    n, dims = int(features.shape[0]), int(features.shape[1])
    if protocol == "rankme":
        return {"rankme": rankme(features), "n": n, "dims": dims,
                "settings": {"eps": RANKME_EPS, "centred": False, "max": min(n, dims)}}
    if protocol == "areq":
        fit = alpha_req_fit(features)
        return {"areq": fit.alpha, "n": n, "dims": dims,
                "settings": {"fit_ranks": [ALPHA_K_MIN, ALPHA_K_MAX], "fitted_ranks": [fit.k_min, fit.k_max],
                             "weights": "1/k", "centred": True, "r2": fit.r2}}
    raise ZooError(f"label-free protocols are {', '.join(SPECTRUM_PROTOCOLS)}, not {protocol!r}")


def spectrum_evaluation(model: zoo.Encoder, data: str, protocol: str, *, root: Optional[str] = None,
                        download: bool = False, split: Optional[str] = None, batch_size: int = 256,
                        skip_unreadable: bool = False) -> Dict[str, Any]:
    """One label-free protocol's row of ``evaluate``'s result: the figure, N, D, the settings and the images."""
    start = time.perf_counter()
    if protocol not in SPECTRUM_PROTOCOLS:  # before embedding anything
        raise ZooError(f"label-free protocols are {', '.join(SPECTRUM_PROTOCOLS)}, not {protocol!r}")
    got = spectrum_features(model, data, root=root, download=download, split=split, batch_size=batch_size,
                            skip_unreadable=skip_unreadable)
    result = {"protocol": protocol, **spectrum_figure(got["features"], protocol), "images": got["images"]}
    if got["skipped_unreadable"] is not None:
        result["skipped_unreadable"] = got["skipped_unreadable"]
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def check_spectrum_options(protocol: str, split: Optional[str], baselines: bool, record: bool) -> None:
    """``evaluate``'s options that only some protocols take, refused before any encoder is loaded."""
    if protocol not in SPECTRUM_PROTOCOLS:
        if split is not None:
            raise ZooError("--split applies to rankme and areq; knn, linear and finetune fit on the training split "
                           "and test on the test split")
        return
    if baselines:
        raise ZooError("--baselines compares accuracies (knn, linear, finetune), not rankme or areq")
    if record and split not in (None, "test"):
        raise ZooError(f"--record keeps test-split figures (as a card states its results); leave --split at test, "
                       f"not {split!r}")
