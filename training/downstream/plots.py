"""Pictures a person would rather look at than read: training curves of a run and test embeddings by class.

``python -m training plot RUN_DIR`` draws ``curves.png`` in the run's log folder from the ``metrics.csv`` that
Lightning's CSV logger writes (loss per logged step, online kNN / linear accuracy per epoch);
``python -m training evaluate ... --out X.json`` draws ``X.png``, a PCA projection of the test embeddings
coloured by class. matplotlib runs headless (Agg); files are written to a temporary name and renamed.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List

import torch
from torch import Tensor

from zoo.atomic import atomic_file
from zoo.errors import ZooError

CURVES = {"train_loss": "loss", "loss": "loss", "knn_acc": "accuracy", "linear_acc": "accuracy",
          "rankme": "rankme", "areq": "areq"}  # the label-free figures (OnlineSpectrum): a panel each, own scale


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_file(path) as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_embedding(features: Tensor, labels: Tensor, path: Path, title: str) -> Path:
    """A 2-D PCA of the L2-normalised ``features`` coloured by ``labels`` (at most 5000 points, seeded choice)."""
    plt = _figure()
    if len(features) > 5000:
        keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[:5000]
        features, labels = features[keep], labels[keep]
    unit = torch.nn.functional.normalize(features.float(), dim=1)  # the cosine geometry kNN votes in
    centred = unit - unit.mean(0)
    _, _, v = torch.pca_lowrank(centred, q=2, center=False)
    xy = (centred @ v[:, :2]).numpy()
    fig, ax = plt.subplots(figsize=(6, 6))
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels.numpy(), cmap="tab10", s=4, alpha=0.7)
    ax.legend(*scatter.legend_elements(), title="class", loc="best", fontsize=7)
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def read_metrics(csv_path: Path) -> Dict[str, List[tuple]]:
    """``metrics.csv`` -> {metric: [(step, value), ...]} for the curves we draw."""
    series: Dict[str, List[tuple]] = {}
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            for key in CURVES:
                if row.get(key) not in (None, ""):
                    series.setdefault(key, []).append((int(row.get("step") or 0), float(row[key])))
    return series


def plot_run(run_dir: str) -> str:
    """Draw the training curves of every ``metrics.csv`` under ``run_dir``; returns the PNG paths."""
    found = sorted(Path(run_dir).rglob("metrics.csv"))
    if not found:
        raise ZooError(f"no metrics.csv under {run_dir} (runs log with Lightning's CSVLogger)")
    plt = _figure()
    written = []
    for csv_path in found:
        series = read_metrics(csv_path)
        if not series:
            raise ZooError(f"{csv_path} has none of the logged metrics {sorted(CURVES)}")
        kinds = sorted({CURVES[k] for k in series})
        fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), squeeze=False)
        for ax, kind in zip(axes[0], kinds, strict=True):
            for key, points in series.items():
                if CURVES[key] == kind:
                    steps, values = zip(*points, strict=True)
                    ax.plot(steps, values, marker=None if kind == "loss" else "o", label=key)
            ax.set(xlabel="step", ylabel=kind, title=f"{csv_path.parent.name}: {kind}")
            ax.legend()
        try:
            written.append(str(_save(fig, csv_path.parent / "curves.png")))
        finally:
            plt.close(fig)
    return "\n".join(written)
