"""Fine-tuning an encoder with a linear classification head: all of it, its last modules, or none of it.

The head gets ``lr``, the encoder its own ``encoder_lr``; ``train_last`` says how much of the encoder trains
(``-1`` all, ``0`` none: the encoder stays frozen in eval mode, ``N`` its last N stages in forward order). The epoch
whose validation accuracy is best is kept (selection on the validation split, never on test).
``finetune_evaluation`` is the evaluation built on it (beside ``frozen.frozen_evaluation``): a labelled datamodule
in, test top-1/top-5 out.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from training.downstream.frozen import labelled_loaders, split_indices, topk
from training.pretrain.loop_progress import LoopProgress, loop_size, tracked
from zoo.errors import ZooError
from zoo.parts.encoders.base import Encoder


def stages(encoder: torch.nn.Module, sample: Tensor) -> List[torch.nn.Module]:
    """The encoder's top-level modules with parameters, in the order its forward pass runs them (modules the
    pooled representation does not use, such as AMDIM's extra map embeddings, are left out). An encoder with one
    such module (a wrapped torchvision network) is described by that module's children instead."""
    def executed(parent: torch.nn.Module) -> List[torch.nn.Module]:
        order: List[torch.nn.Module] = []
        hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod) if mod not in order else None)
                 for m in parent.children() if any(True for _ in m.parameters())]
        try:
            with torch.no_grad():
                encoder.eval()(sample)
        finally:
            for h in hooks:
                h.remove()
        return order

    modules = executed(encoder)
    return executed(modules[0]) if len(modules) == 1 else modules


def trainable_modules(encoder: torch.nn.Module, train_last: int, sample: Tensor) -> List[torch.nn.Module]:
    """The encoder modules that fine-tuning updates (``-1``: the whole encoder; ``N``: the last N stages)."""
    if train_last == -1:
        return [encoder]
    if train_last == 0:
        return []
    found = stages(encoder, sample)
    if train_last < -1 or train_last > len(found):
        raise ZooError(f"train_last must be -1 (all), 0 (frozen) or 1..{len(found)} (the encoder runs "
                       f"{len(found)} stages with parameters), got {train_last}")
    return found[len(found) - train_last:]


class Classifier(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module, num_features: int, num_classes: int,
                 preprocess: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.encoder, self.head, self.preprocess = encoder, torch.nn.Linear(num_features, num_classes), preprocess

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(self.preprocess(images)))


def finetune(encoder: Encoder, preprocess: Callable[[Tensor], Tensor], num_classes: int,
             train: Tuple[Tensor, Tensor], val: Tuple[Tensor, Tensor], *, epochs: int = 1, batch_size: int = 256,
             lr: float = 1e-3, encoder_lr: float = 1e-4, train_last: int = -1, weight_decay: float = 1e-4,
             seed: int = 0) -> Tuple[Classifier, Dict[str, object]]:
    """Train ``encoder`` + a linear head on uint8 ``train`` images; returns the best-on-``val`` model (eval mode)."""
    if epochs < 1:
        raise ZooError(f"fine-tuning needs epochs >= 1, got {epochs}")
    torch.manual_seed(seed)
    model = Classifier(encoder, int(encoder.num_features), num_classes, preprocess)
    for p in encoder.parameters():
        p.requires_grad_(False)
    trained = trainable_modules(encoder, train_last, preprocess(train[0][:2]))
    encoder_params = [p for m in trained for p in m.parameters()]
    for p in encoder_params:
        p.requires_grad_(True)
    groups = [{"params": list(model.head.parameters()), "lr": lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=weight_decay)
    x, y = train
    steps = epochs * max(1, len(x) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed)
    history: List[Dict[str, object]] = []
    best_acc, best_state = -1.0, {}  # set by the first epoch (epochs >= 1), then by each better one
    starts = range(0, len(x) - batch_size + 1 if len(x) >= batch_size else 1, batch_size)
    progress = LoopProgress("fine-tuning", epochs * len(starts))
    for epoch in range(epochs):
        progress.detail = f"epoch {epoch + 1}/{epochs}"
        _set_train_mode(model, trained)
        order = torch.randperm(len(x), generator=gen)
        for start in starts:
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            progress.update()
        val_acc = accuracy(model, val)
        history.append({"epoch": epoch + 1, "val_top1": val_acc, "last_loss": float(loss.detach())})
        if epoch == 0 or val_acc > best_acc:
            best_acc, best_state = val_acc, copy.deepcopy(model.state_dict())
    progress.finish(f"best val top-1 {best_acc:.4f}")
    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), {"val_top1": best_acc, "history": history, "trained_modules": len(trained)}


def _set_train_mode(model: Classifier, trained: List[torch.nn.Module]) -> None:
    """Only modules that train use batch statistics; a frozen encoder keeps its running statistics."""
    model.eval()
    model.head.train()
    for module in trained:
        module.train()


@torch.no_grad()
def predict(model: torch.nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).float() for i in range(0, len(images), batch_size)])


def accuracy(model: torch.nn.Module, data: Tuple[Tensor, Tensor]) -> float:
    return (predict(model, data[0]).argmax(1) == data[1]).float().mean().item()


def load_images(loader, what: str = "loading images") -> Tuple[Tensor, Tensor]:
    """Every (images, labels) batch of ``loader`` in two tensors (fine-tuning draws its own batches)."""
    images, labels = [], []
    for x, y in tracked(loader, what, loop_size(loader), "images", lambda batch: len(batch[0])):
        images.append(x)
        labels.append(torch.as_tensor(y))
    if not images:
        raise ZooError("the dataset split is empty")
    return torch.cat(images), torch.cat(labels).long()


def finetune_evaluation(encoder: Encoder, preprocess: Callable[[Tensor], Tensor], datamodule, *,
                        epochs: int = 1, lr: float = 1e-3, encoder_lr: float = 1e-4, train_last: int = -1,
                        batch_size: int = 256, val_fraction: float = 0.1, seed: int = 0) -> Dict[str, Any]:
    """Fine-tune ``encoder`` (with ``preprocess``, its eval transform) and a linear head on the datamodule's
    labelled training split, keep the epoch best on a seeded validation carve (``split_indices``, as the frozen
    evaluation carves it), and score it once on the test split: ``top1`` (``top5`` above five classes),
    ``val_top1``, the per-epoch ``history``, the split sizes and ``seconds``."""
    train_loader, test_loader = labelled_loaders(datamodule)
    train_x, train_y = load_images(train_loader, "loading the training split")
    test_x, test_y = load_images(test_loader, "loading the test split")
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    if len(torch.unique(train_y)) < 2:
        raise ZooError(f"the training split has a single class ({int(train_y[0])}); classification needs two")
    fit_idx, val_idx = split_indices(len(train_x), val_fraction, seed)
    start = time.perf_counter()
    model, info = finetune(encoder, preprocess, num_classes, (train_x[fit_idx], train_y[fit_idx]),
                           (train_x[val_idx], train_y[val_idx]), epochs=epochs, batch_size=batch_size, lr=lr,
                           encoder_lr=encoder_lr, train_last=train_last, seed=seed)
    return {"num_classes": num_classes, "n_fit": len(fit_idx), "n_val": len(val_idx), "n_test": len(test_x),
            "val_top1": info["val_top1"], "history": info["history"], "train_last": train_last, "epochs": epochs,
            **topk(predict(model, test_x), test_y, num_classes), "seconds": round(time.perf_counter() - start, 2)}
