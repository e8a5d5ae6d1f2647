"""Downstream evaluation on frozen features: weighted kNN and a linear probe, in one function for every caller.

``frozen_evaluation`` is the one path: the demo, ``ship_weights``, ``explore``, the benches and
``python -m training evaluate`` all call it, so the same encoder on the same data gives the same numbers
everywhere. Fine-tuning is the other evaluation (``finetune.finetune_evaluation``).

kNN follows the protocol peers report (Wu et al. 2018, used by lightly and solo-learn): cosine similarity to a
bank of labelled training features, the k nearest vote for their class with weight exp(sim / t).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from training.pretrain.loop_progress import LoopProgress, loop_size, tracked
from zoo.errors import ZooError


@torch.no_grad()
def extract_features(encode: Callable[[Tensor], Tensor], batches: Iterable[Tuple[Tensor, Tensor]],
                     device: torch.device | str = "cpu", what: str = "extracting features") -> Tuple[Tensor, Tensor]:
    """Run ``encode`` (preprocessing included) over (images, labels) batches; features and labels on CPU."""
    feats, labels = [], []
    for images, y in tracked(batches, what, loop_size(batches), "images", lambda batch: len(batch[0])):
        feats.append(encode(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(y))
    if not feats:
        raise ZooError("no batches to extract features from (empty dataset?)")
    return torch.cat(feats), torch.cat(labels).long()


@torch.no_grad()
def knn_scores(queries: Tensor, bank: Tensor, bank_labels: Tensor, num_classes: int, k: int = 200,
               temperature: float = 0.1, chunk: int = 1024, what: str = "kNN votes") -> Tensor:
    """Weighted kNN class votes (Q, num_classes) for ``queries`` (Q, D) against ``bank`` (N, D): the k most
    cosine-similar bank items vote for their class with weight exp(sim / temperature)."""
    if len(bank) == 0:
        raise ZooError("the kNN bank is empty")
    k = min(k, len(bank))
    bank = F.normalize(bank.float(), dim=1)
    votes = []
    for q in tracked(F.normalize(queries.float(), dim=1).split(chunk), what, len(queries), "queries", len):
        sim, idx = (q @ bank.t()).topk(k, dim=1)
        v = torch.zeros(len(q), num_classes)
        v.scatter_add_(1, bank_labels[idx], torch.exp(sim / temperature))
        votes.append(v)
    return torch.cat(votes)


def knn_predict(queries: Tensor, bank: Tensor, bank_labels: Tensor, num_classes: int, k: int = 200,
                temperature: float = 0.1, chunk: int = 1024) -> Tensor:
    """Weighted kNN class predictions for ``queries`` (Q, D) against ``bank`` (N, D)."""
    return knn_scores(queries, bank, bank_labels, num_classes, k, temperature, chunk).argmax(1)


def knn_accuracy(train: Tuple[Tensor, Tensor], test: Tuple[Tensor, Tensor], k: int = 200,
                 temperature: float = 0.1) -> float:
    num_classes = int(max(train[1].max(), test[1].max())) + 1
    pred = knn_predict(test[0], train[0], train[1], num_classes, k, temperature)
    return (pred == test[1]).float().mean().item()


def frozen_features(model: torch.nn.Module, preprocess: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``images -> model(preprocess(images))`` with the model in channels-last memory format (the same fp32
    numbers, about 2x faster convolutions on CPU); patch grids (6-D, CPC) pass through as they are."""
    model = model.eval().to(memory_format=torch.channels_last)

    def encode(images: Tensor) -> Tensor:
        x = preprocess(images)
        return model(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)

    return encode


def labelled_loaders(datamodule):
    """(labelled training loader, test loader): our datamodules' un-augmented ``knn_bank_dataloader``, or any
    LightningDataModule's ``train_dataloader`` / ``test_dataloader`` after its own ``setup``."""
    if hasattr(datamodule, "knn_bank_dataloader"):
        return datamodule.knn_bank_dataloader(), datamodule.test_dataloader()
    for stage in ("fit", "test"):
        if hasattr(datamodule, "setup"):
            datamodule.setup(stage)
    return datamodule.train_dataloader(), datamodule.test_dataloader()


def topk(scores: Tensor, labels: Tensor, num_classes: int) -> Dict[str, float]:
    """Top-1 (and top-5 above five classes) accuracy of class ``scores`` (N, C), from torchmetrics."""
    from torchmetrics.functional.classification import multiclass_accuracy

    out = {"top1": multiclass_accuracy(scores, labels, num_classes, average="micro", top_k=1).item()}
    if num_classes > 5:
        out["top5"] = multiclass_accuracy(scores, labels, num_classes, average="micro", top_k=5).item()
    return out


def frozen_evaluation(encode: Callable[[Tensor], Tensor], datamodule, protocols: Sequence[str] = ("knn", "linear"),
                      *, k: int = 200, temperature: float = 0.1, val_fraction: float = 0.1,
                      seed: int = 0) -> Dict[str, Any]:
    """The one frozen-feature evaluation: kNN and/or a linear probe on ``encode``'s features of a datamodule.

    Features of the labelled training split and of the test split are extracted once. One seeded carve
    (``split_indices(n, val_fraction, seed)``) splits the training features into fit and val: val is all that
    model selection looks at (the probe's weight decay; the kNN val score is reported, nothing is chosen with
    it); the kNN bank for the test queries is the whole training split. Returns ``dims``, ``num_classes``,
    ``n_fit``/``n_val``/``n_test``, the test features and labels (``test_features``), and per protocol a dict
    with ``top1`` (``top5`` above five classes), ``val_top1`` and, for the probe, ``weight_decay``.
    """
    unknown = [p for p in protocols if p not in ("knn", "linear")]
    if unknown:
        raise ZooError(f"frozen-feature protocols are knn and linear, not {', '.join(unknown)}")
    train_loader, test_loader = labelled_loaders(datamodule)
    train = extract_features(encode, train_loader, what="features of the training split")
    test = extract_features(encode, test_loader, what="features of the test split")
    num_classes = int(max(train[1].max(), test[1].max())) + 1
    if len(torch.unique(train[1])) < 2:
        raise ZooError(f"the training split has a single class ({int(train[1][0])}); classification needs two")
    fit_idx, val_idx = split_indices(len(train[0]), val_fraction, seed)
    fit, val = (train[0][fit_idx], train[1][fit_idx]), (train[0][val_idx], train[1][val_idx])
    result: Dict[str, Any] = {"dims": int(train[0].shape[1]), "num_classes": num_classes, "n_fit": len(fit_idx),
                              "n_val": len(val_idx), "n_test": len(test[0]), "test_features": test}
    if "knn" in protocols:
        val_scores = knn_scores(val[0], fit[0], fit[1], num_classes, k, temperature, what="kNN votes (val)")
        scores = knn_scores(test[0], train[0], train[1], num_classes, k, temperature, what="kNN votes (test)")
        result["knn"] = {**topk(scores, test[1], num_classes),
                         "val_top1": topk(val_scores, val[1], num_classes)["top1"], "k": k, "temperature": temperature}
    if "linear" in protocols:
        probe = fit_linear_probe(fit, val, num_classes, seed=seed)
        result["linear"] = {**topk(probe["predict"](test[0]), test[1], num_classes), "val_top1": probe["val_acc"],
                            "weight_decay": probe["weight_decay"]}
    return result


def split_indices(n: int, val_fraction: float, seed: int) -> Tuple[Tensor, Tensor]:
    """(fit, val) indices of a training split of ``n`` items: a seeded permutation, val first."""
    if not 0 < val_fraction < 1:
        raise ZooError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(n * val_fraction))
    if n - n_val < 1:
        raise ZooError(f"a training split of {n} images is too small to carve a validation split from")
    return perm[n_val:], perm[:n_val]


class LinearProbe(TypedDict):
    """What ``fit_linear_probe`` returns: the chosen probe and how it was chosen."""

    predict: Callable[[Tensor], Tensor]  # features -> logits, standardised as the probe was fitted
    val_acc: float
    weight_decay: float


def fit_linear_probe(fit: Tuple[Tensor, Tensor], val: Tuple[Tensor, Tensor], num_classes: int,
                     weight_decays: Iterable[float] = (0.0, 1e-4, 1e-3), max_iter: int = 100,
                     seed: int = 0) -> LinearProbe:
    """Fit one logistic regression per weight decay on ``fit``, keep the best on ``val``.

    Features are standardised with the mean/std of all training features (fit and val: no labels involved).
    Returns ``predict`` (features -> logits), ``val_acc`` and the chosen ``weight_decay``.
    """
    if len(torch.unique(fit[1])) < 2:
        raise ZooError("a linear probe needs at least two classes in the training labels")
    both = torch.cat([fit[0], val[0]])
    mean, std = both.mean(0), both.std(0).clamp_min(1e-6)
    x_fit, x_val = (fit[0] - mean) / std, (val[0] - mean) / std
    decays, evals = list(weight_decays), max_iter * 5 // 4  # L-BFGS's default max_eval per fit
    best: Optional[Tuple[float, float, torch.nn.Linear]] = None
    progress = LoopProgress("linear probe, L-BFGS loss evaluations (at most)", len(decays) * evals, "evals")
    for i, wd in enumerate(decays):
        progress.detail = f"weight decay {wd:g} ({i + 1}/{len(decays)})"
        model = _fit_logistic(x_fit, fit[1], num_classes, wd, max_iter, seed, progress.update)
        progress.update(0, done=(i + 1) * evals)  # a fit that converged early leaves its budget unused
        with torch.no_grad():
            val_acc = (model(x_val).argmax(1) == val[1]).float().mean().item()
        if best is None or val_acc > best[0]:
            best = (val_acc, wd, model)
    if best is None:
        raise ZooError("a linear probe needs at least one weight decay to try")
    val_acc, wd, model = best
    progress.finish(f"weight decay {wd:g} chosen (val top-1 {val_acc:.4f})")

    @torch.no_grad()
    def predict(features: Tensor) -> Tensor:
        return model((features - mean) / std)

    return {"predict": predict, "val_acc": val_acc, "weight_decay": wd}


def _fit_logistic(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int,
                  seed: int = 0, on_eval: Callable[[], object] = lambda: None) -> torch.nn.Linear:
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        on_eval()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + weight_decay * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return model.eval()
