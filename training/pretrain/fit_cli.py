"""``python -m training fit``: LightningCLI with settings chosen from the hardware, quiet output and honest exits.

- ``ZooTrainer`` accepts ``precision: auto`` (the recipes' value; also what an absent precision means) and
  ``ZooCLI`` resolves it, and the module's ``channels_last: auto``, once at start from
  :func:`training.pretrain.hardware.probe`, prints the choice and the reason in one line, and records both in every
  checkpoint (``checkpoint["zoo_settings"]``), from where export copies them into ``config.json``.
- Messages a user cannot act on (Lightning's tips, dependency deprecation warnings) are silenced; progress is a
  line every few seconds with rate and ETA (:class:`training.pretrain.progress.ProgressLine`).
- Recipe values are checked before anything is built (``check_recipe_values``): a bad one is one line naming its
  key, its value and what is allowed.
- ``--ckpt_path last`` resumes the newest run of the recipe (``last_checkpoints``): each run logs into a new
  ``version_N`` folder, so the checkpoints to resume are in the folders of the runs before it. With none, it says
  so and stops rather than training from step 0.
- ``config.yaml`` and the checkpoints are written atomically; a full disk is one line (``resume.run_file``).
- SIGTERM and Ctrl-C end the process non-zero with one line naming the last checkpoint and the resume command.
"""

from __future__ import annotations

import logging
import shlex
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union, cast
from unittest import mock

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

from training.pretrain import hardware
from training.pretrain.data import VALUES as DATA_VALUES
from training.pretrain.module import VALUES as MODEL_VALUES
from training.pretrain.resume import disk_full, read_local_checkpoint, run_file
from zoo.build import check_method_values
from zoo.errors import RecipeMismatch, ZooError, first_line
from zoo.methods import resolve_method
from zoo.values import BadValue, check_values

if TYPE_CHECKING:
    from lightning_fabric.connector import _PRECISION_INPUT


class Interrupted(Exception):
    """Training was stopped by a signal; ``code`` is the process exit status (128 + signal number)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ZooTrainer(pl.Trainer):
    """Lightning's Trainer, with ``precision`` that also takes ``auto`` (resolved by ``ZooCLI`` before this runs).

    ``zoo_settings`` holds the resolved settings and their reasons; ``ResumableTraining`` writes them into every
    checkpoint.
    """

    def __init__(self, *, precision: Optional[Union[str, int]] = hardware.AUTO, **kwargs: Any) -> None:
        self.zoo_settings: Dict[str, Any] = {}
        if precision is None or str(precision) == hardware.AUTO:  # built outside ZooCLI: resolve here
            hw = hardware.probe()
            precision, reason = hardware.resolve_precision(precision, kwargs.get("accelerator"), hw)
            self.zoo_settings = {"precision": precision, "precision_reason": reason, "hardware": hw.to_dict()}
        # cast: the recipe's value is a plain str or int here, which Lightning checks against its Literal of
        # precisions when it builds the precision plugin (one ValueError listing the allowed values)
        super().__init__(precision=cast("_PRECISION_INPUT", precision), **kwargs)


def quiet() -> None:
    """Silence what a user cannot act on: Lightning's tips and notices, and third-party deprecation warnings."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda", "lightning_fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")
    # a resumed run logs into a new version_N folder: Lightning notes that the checkpoint folder changed
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from .*")
    warnings.filterwarnings("ignore", message=r".*(litlogger|tensorboardX|LitLogger|does not have many workers|"
                                              r"isinstance\(treespec, LeafSpec\)|is not supported by the model summary).*")


class ZooCLI(LightningCLI):
    """LightningCLI that resolves the hardware-dependent settings, reports progress and turns signals into exits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        quiet()
        given = kwargs.get("args")
        self._argv = [str(a) for a in (given if isinstance(given, (list, tuple)) else sys.argv[1:])]
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_recipe_values(config, self.recipe_name())
        hw = hardware.probe()
        precision, reason = hardware.resolve_precision(config.trainer.precision, config.trainer.accelerator, hw)
        config.trainer.precision = precision
        model = config.model
        requested = model.get("channels_last", hardware.AUTO) if hasattr(model, "get") else hardware.AUTO
        channels_last, cl_reason = hardware.resolve_channels_last(requested)
        if hasattr(model, "channels_last"):
            model.channels_last = channels_last
        self._settings = {"precision": precision, "precision_reason": reason, "channels_last": channels_last,
                          "channels_last_reason": cl_reason, "hardware": hw.to_dict()}
        print(f"precision {precision} ({reason}); channels_last {str(channels_last).lower()} ({cl_reason})",
              flush=True)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except RecipeMismatch as err:  # settings that contradict each other: say which recipe holds them
            raise RecipeMismatch(f"recipe {self.recipe_name()}: {err}") from None

    def recipe_name(self) -> str:
        """The ``--config`` file(s) this run was given, as written on the command line."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        paths = [str(p) for p in (config.get("config") or [])]
        return ", ".join(paths) or "(command-line arguments)"

    def _parse_ckpt_path(self) -> None:
        """Lightning reads a resumed checkpoint's hyper-parameters with a plain ``torch.load``, which reads every
        tensor in it: for a 666 M-parameter AMDIM with Adam, 7.4 GiB held only to look at a few strings. Here the
        same code reads it through the resume path's own reader (``read_local_checkpoint``: memory-mapped, so the
        tensors are never paged in, and one clear error for a file it cannot read)."""
        import torch

        load = torch.load

        def read(f: Any, map_location: Optional[Any] = None, weights_only: Optional[bool] = None) -> Any:
            return read_local_checkpoint(f, map_location, load=load)

        with mock.patch.object(torch, "load", read):
            super()._parse_ckpt_path()

    def before_fit(self) -> None:
        """``--ckpt_path last``: the newest ``last.ckpt`` of the recipe's earlier runs, or one line saying there is
        none (rather than Lightning's warning and a run from step 0)."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        found, searched = last_checkpoints(self.trainer)
        if searched is None:  # a remote folder: Lightning's own search
            return
        if not found:
            raise ZooError(f"--ckpt_path last: no last.ckpt of an earlier run of recipe {self.recipe_name()} in "
                           f"{', '.join(searched)}; nothing to resume: start the run without --ckpt_path")
        newest = max(found, key=lambda p: p.stat().st_mtime)
        print(f"resuming from {newest}", flush=True)
        config["ckpt_path"] = str(newest)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if not isinstance(trainer, ZooTrainer):  # the attribute ResumableTraining copies into every checkpoint
            raise ZooError(f"ZooCLI needs trainer_class=ZooTrainer (it carries zoo_settings), not "
                           f"{type(trainer).__name__}")
        settings = getattr(self, "_settings", None)
        if settings is not None:
            trainer.zoo_settings = settings
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores Ctrl-C while it shuts down; put it back after
        try:
            super()._run_subcommand(subcommand)
        except KeyboardInterrupt:  # raised before Lightning's own handler is in place (setup, data loading)
            raise Interrupted(self._resume_hint("Ctrl-C"), 128 + signal.SIGINT) from None
        except ZooError:
            raise
        except Exception as err:  # a full disk where no file of ours was being written (e.g. a logger's file)
            if disk_full(err):
                then = "resume with --ckpt_path last" if latest_checkpoint(self.trainer) else "run again"
                raise ZooError(f"no space left on the device while training ({first_line(err)}): free some space, "
                               f"then {then}") from None
            raise
        except SystemExit as stop:  # Lightning: SIGTERMException(SystemExit) on SIGTERM; sys.exit(1) after Ctrl-C
            if self.trainer.received_sigterm:
                raise Interrupted(self._resume_hint("SIGTERM"), 128 + signal.SIGTERM) from None
            if self.trainer.interrupted:
                raise Interrupted(self._resume_hint("Ctrl-C"), 128 + signal.SIGINT) from None
            raise stop
        finally:
            if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and sigint is not None:
                signal.signal(signal.SIGINT, sigint)

    def _resume_hint(self, what: str) -> str:
        last = latest_checkpoint(self.trainer)
        argv, skip = [], False
        for arg in self._argv:  # the same command, less any --ckpt_path it already had
            if skip or arg == "--ckpt_path":
                skip = not skip
                continue
            if not arg.startswith("--ckpt_path="):
                argv.append(shlex.quote(arg))
        command = "python -m training " + " ".join(argv or ["fit", "--config", "RECIPE.yaml"])
        if last is None:
            return f"stopped by {what} before any checkpoint was written; nothing to resume, run again: {command}"
        return (f"stopped by {what}; last checkpoint {last} (step {last_step(last)}); resume with: "
                f"{command} --ckpt_path {last}")


def latest_checkpoint(trainer: pl.Trainer) -> Optional[Path]:
    """The newest of the checkpoint files any ModelCheckpoint of ``trainer`` wrote and the one the run resumed from
    (newer than the best checkpoint Lightning carries over from the resumed run until this run writes its own),
    or None."""
    values = [getattr(callback, attr, "") for callback in trainer.checkpoint_callbacks
              for attr in ("last_model_path", "best_model_path")]
    paths = [Path(value) for value in values + [trainer.ckpt_path] if value and Path(value).is_file()]
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def last_checkpoints(trainer: pl.Trainer) -> Tuple[List[Path], Optional[List[str]]]:
    """The ``last*.ckpt`` files of earlier runs that ``--ckpt_path last`` chooses from, and the folders searched
    (None when one is remote). A checkpoint callback that names its ``dirpath`` keeps its files there; otherwise
    Lightning puts them in ``LOGGER_ROOT/VERSION/checkpoints`` (a new version for each run, so the earlier runs'
    are its siblings), or ``default_root_dir/checkpoints`` without a logger."""
    places: List[Tuple[Path, str]] = []
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            place = (Path(str(callback.dirpath)), "")
        elif trainer.loggers:
            logger = trainer.loggers[0]
            place = (Path(logger.save_dir or trainer.default_root_dir) / str(logger.name or ""), "*/checkpoints")
        else:
            place = (Path(trainer.default_root_dir) / "checkpoints", "")
        if place not in places:
            places.append(place)
    if any("://" in str(folder) for folder, _ in places):
        return [], None
    found = [p for folder, sub in places for p in folder.glob(f"{sub}/last*.ckpt".lstrip("/")) if p.is_file()]
    return found, [str(folder / sub) if sub else str(folder) for folder, sub in places]


def check_recipe_values(config: Any, recipe: str) -> None:
    """The recipe's values, checked before anything is built: the module's settings (``model.lr`` ...), the
    datamodule's (``data.init_args.batch_size`` ...) and the method's part arguments (``model.similarity.temperature``,
    ``model.augment.crop_scale`` ...). A bad one raises ``BadValue``: ``recipe PATH: KEY is VALUE; it must be ...``."""
    model, data = as_dict(config.get("model")), as_dict((config.get("data") or {}).get("init_args"))
    try:
        check_values(model, MODEL_VALUES.get, prefix="model.")
        check_values(data, DATA_VALUES.get, prefix="data.init_args.")
        parts = {c: model.get(c) for c in ("augment", "encoder", "extract", "similarity", "loss")}
        check_method_values(resolve_method(model.get("method"), name=model.get("name"), **parts), prefix="model.")
    except BadValue as err:
        raise BadValue(f"recipe {recipe}: {err}") from None


def as_dict(section: Any) -> Dict[str, Any]:
    """A parsed config section (a jsonargparse Namespace, a dict, or None) as a dict."""
    return section.as_dict() if hasattr(section, "as_dict") else dict(section or {})


class AtomicSaveConfig(SaveConfigCallback):
    """Lightning's ``config.yaml`` writer, writing through ``resume.run_file``: a full disk leaves no empty or
    partial ``config.yaml`` and is one line."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        with mock.patch.object(self.parser, "save", self._save):
            super().setup(trainer, pl_module, stage)

    def _save(self, config: Any, path: str, *, overwrite: bool = False, multifile: bool = False, **dump: Any) -> None:
        text = self.parser.dump(config, **dump)
        with run_file(path, then="run again", mode="w") as handle:
            handle.write(text)


def last_step(path: Path) -> Any:
    try:
        return read_local_checkpoint(path, map_location="cpu").get("global_step", "?")
    except Exception:  # the hint must not fail: the step is only a convenience
        return "?"
