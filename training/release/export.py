"""Export the encoder of a Lightning checkpoint as a Hub-style folder (safetensors + config.json + card)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional

import torch

import zoo
from training.pretrain.hardware import cpu_name
from zoo.atomic import write_error
from zoo.build import build_encoder
from zoo.checkpoint_file import UnreadableCheckpoint, read_checkpoint_file
from zoo.errors import ZooError
from zoo.methods import resolve_method
from zoo.pretrained.export_folder import exported_config, write_export
from zoo.pretrained.exported import load_state_strict
from zoo.spec import CHARACTERISTICS


def read_checkpoint(path: str | Path) -> Dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True`` (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"checkpoint {path} does not exist")
    try:
        ckpt = read_checkpoint_file(path, mmap=True)  # tensors paged in as read
    except UnreadableCheckpoint as err:
        raise ZooError(f"{path} is not a readable PyTorch checkpoint (loaded with weights_only=True): "
                       f"{err.reason}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ZooError(f"{path} is not a contrastive-zoo training checkpoint (no state_dict/hyper_parameters)")
    return ckpt


def machine() -> str:
    """The machine a run used, in words: CPU model, core count, torch version (and GPU when there is one)."""
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu_name()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def run_config(ckpt: Path, checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The full LightningCLI config of the run (``config.yaml`` beside the checkpoints folder) when present,
    else the module and datamodule hyper-parameters stored in the checkpoint."""
    saved = ckpt.resolve().parent.parent / "config.yaml"
    if saved.is_file():
        import yaml

        try:
            return {"lightning_cli_config": yaml.safe_load(saved.read_text())}
        except yaml.YAMLError:
            pass
    return {"model": dict(checkpoint["hyper_parameters"]),
            "data": dict(checkpoint.get("datamodule_hyper_parameters") or {})}


def epochs_trained(checkpoint: Mapping[str, Any]) -> int:
    """Whole epochs behind a checkpoint, wherever it was saved (mid-epoch, epoch end or train end, where
    Lightning's ``epoch`` field means three different things): the fit loop's count of processed epochs."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(checkpoint.get("epoch", -1)) + 1


def settings_of(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The hardware-dependent settings the run used (precision, channels_last, their reasons, the machine)."""
    settings = checkpoint.get("zoo_settings")
    return {"settings": dict(settings)} if isinstance(settings, Mapping) else {}


def encoder_from_checkpoint(ckpt: Mapping[str, Any]):
    hp = dict(ckpt["hyper_parameters"])
    method = resolve_method(hp.get("method"), name=hp.get("name"), **{c: hp.get(c) for c in CHARACTERISTICS})
    encoder = build_encoder(method.encoder)
    state = {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    load_state_strict(encoder, state, "checkpoint encoder weights")
    return method, encoder.eval()


def export_checkpoint(*, ckpt: str, out: str, name: Optional[str] = None, dataset: Optional[str] = None,
                      overwrite: bool = False, metrics: Optional[Dict[str, float]] = None,
                      training: Optional[Dict[str, Any]] = None,
                      metric_commands: Optional[Dict[str, str]] = None, format: str = "zoo") -> Any:
    """Export a checkpoint's encoder to a folder loadable by ``zoo.load_encoder`` (``format="zoo"``), or a ResNet
    encoder to torchvision or timm (``training.release.interop``).

    Args:
        ckpt: path to a Lightning checkpoint written by ``python -m training fit``; with ``--format torchvision``
            or ``timm`` also anything ``zoo.load_encoder`` takes (an exported folder, a registry name).
        out: folder to create (written atomically); a single file for ``--format torchvision``.
        name: entry name to record, e.g. ``yadim.fashion_mnist``.
        dataset: pre-training dataset name for the card.
        overwrite: replace ``out`` if it exists.
        metrics: measured metrics to record, e.g. ``{"fashion_mnist/knn": 0.85}``.
        training: facts about the run to record on the card, e.g. ``{"wall_seconds": 296}``.
        metric_commands: how each metric was measured, e.g. ``{"fashion_mnist/knn": "python -m ..."}``.
        format: ``zoo`` (an exported folder), ``torchvision`` (a state dict file for ``torchvision.models.resnetN``)
            or ``timm`` (a folder in timm's Hugging Face Hub layout).
    """
    with write_errors(out):
        if format != "zoo":
            return export_other_library(ckpt, out, format, overwrite=overwrite)
        checkpoint = read_checkpoint(ckpt)
        method, encoder = encoder_from_checkpoint(checkpoint)
        run = {"epochs": epochs_trained(checkpoint), "global_step": checkpoint.get("global_step"),
               **settings_of(checkpoint), **dict(training or {})}
        folder = write_export(out, method, encoder, name=name, dataset=dataset,
                              recipe=run_config(Path(ckpt), checkpoint), training=run, metrics=metrics,
                              metric_commands=metric_commands, overwrite=overwrite)
    return str(folder)


@contextmanager
def write_errors(out: str) -> Iterator[None]:
    """A write that fails (full disk, read-only folder) is one line: every export is staged beside ``out`` and
    renamed into place, so nothing was written (and an export being replaced is intact)."""
    try:
        yield
    except OSError as err:
        raise write_error(err, f"cannot export to {out}", Path(out).parent, "nothing was written") from None


def export_other_library(source: str, out: str, format: str, overwrite: bool = False) -> Dict[str, Any]:
    """``export --format torchvision|timm``: the encoder of a training checkpoint, an exported folder or a registry
    entry, written for another library (see ``training.release.interop``)."""
    from training.release.interop import check_exportable, export_interop

    if format not in ("torchvision", "timm"):
        check_exportable({}, {}, format)  # one line naming the formats
    if Path(source).is_file():
        method, encoder = encoder_from_checkpoint(read_checkpoint(source))
        config = exported_config(method, encoder, name=None, dataset=None, recipe={}, training={})
    else:
        encoder = zoo.load_encoder(source)
        config = encoder.zoo_config
    return export_interop(encoder, config, out, format, overwrite=overwrite)
