"""``python -m training check-recipe RECIPE.yaml [--steps N]``: a recipe builds, steps, resumes and exports.

The recipe goes through ``python -m training fit``'s own code path (``training.cli.lightning_cli``, ``ZooCLI``,
the recipe's model, optimizer, schedule and callbacks) with its real encoder and input shape, on one CPU process,
with three substitutions: the dataset is replaced by random uint8 images of the shape its datamodule yields
(:class:`training.pretrain.synthetic.SyntheticImages`), the batch is the smallest one the method accepts, and
the accelerator, device count and strategy are one CPU process. Then:

1. N optimizer steps, and the full checkpoint they leave (weights, optimizer state, loops, RNG state);
2. one more step resumed from that checkpoint with ``--ckpt_path`` (the resume path of ``fit``);
3. ``training.release.export.export_checkpoint`` of the resumed run's checkpoint (written without the optimizer's
   moments, which export never reads) into a temporary folder;
4. ``zoo.load_encoder`` of the export, which must record the resumed run's last step, its ``zoo.eval_transform``
   and a forward pass on a synthetic batch, which must equal the trained module's own evaluation forward.

Everything is written under a temporary directory that is removed afterwards; the exported config says the data
was synthetic. Each run's weights and optimizer state are freed as soon as it is done, so one process can check the
largest recipes one after another. The result (one JSON line on the command line) proves the recipe runs at its
real shapes; it says nothing about accuracy.
"""

from __future__ import annotations

import functools
import gc
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from training.plan.memory import release_free_heap
from training.pretrain.fit_cli import ZooCLI, latest_checkpoint
from training.pretrain.synthetic import SYNTHETIC_NOTE, SyntheticImages
from zoo.errors import ZooError, first_line

#: trainer settings replaced for the check: one CPU process, no model summary table
OVERRIDES = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "enable_model_summary": False}
#: what the check leaves out, as the JSON line reports it
SKIPPED = ["the real dataset (synthetic uint8 images of its shape)", "multi-device and multi-node strategies",
           "the model summary table", "online evaluation callbacks (kNN / linear accuracy on the synthetic images "
           "would mean nothing)",
           "the recipe's own checkpoint callbacks (one ModelCheckpoint writes last.ckpt once, after the first "
           "run; the resumed run's checkpoint, which is only exported, leaves out the optimizer's moments)"]
#: callbacks that only measure accuracy: dropped from the recipe's callbacks for the check
ONLINE_EVAL = ("training.pretrain.callbacks.OnlineKNN", "training.pretrain.callbacks.OnlineLinear")
#: the one checkpoint callback of the check: last.ckpt at the end of the first run (the recipes' per-epoch and
#: per-step callbacks would write the same multi-GB file up to three times a run)
CHECKPOINT = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
              "init_args": {"save_top_k": 0, "save_last": True, "enable_version_counter": False}}


#: peak memory of a check per byte of fp32 parameters: weights, gradients and Adam's two moments (4x), and the
#: activations at the smallest batch, plus the process itself. Measured (peak RssAnon, sampled every 0.1 s; the
#: memory-mapped checkpoint's pages are the kernel's to reclaim): AMDIM ImageNet 12.9 GiB for 2.48 GiB of
#: parameters (5.2x), CPC v2 ImageNet 10.7 GiB for 1.48 GiB (7.2x: 98 patches through a ResNet-161)
MEMORY_PER_PARAMETER_BYTE, MEMORY_BASE = 7, 1 << 30


class CheckFailed(ZooError):
    """A stage of the check failed; the message names the recipe and the stage."""


class NotEnoughMemory(CheckFailed):
    """The machine has too little memory available for this recipe's check; nothing was trained. ``need`` and
    ``have`` are the bytes the check needs and the bytes that were available."""

    def __init__(self, message: str, need: int = 0, have: int = 0) -> None:
        super().__init__(message)
        self.need, self.have = need, have


class AboveParameterLimit(CheckFailed):
    """The recipe's model has more parameters than the caller's ``max_parameters``; nothing was trained."""


def meminfo_bytes(field: str) -> Optional[int]:
    """A Linux ``/proc/meminfo`` field in bytes (``MemAvailable``, ``MemTotal`` ...), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> Optional[int]:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None where unknown."""
    return meminfo_bytes("MemAvailable")


def check_memory(module: Any) -> None:
    """Refuse, before the first step, a recipe whose check would not fit in this machine's memory."""
    params = sum(p.numel() for p in module.parameters())
    need, free = MEMORY_PER_PARAMETER_BYTE * 4 * params + MEMORY_BASE, available_memory()
    have = None if free is None else free + 4 * params  # the fp32 weights are built already
    if have is not None and need > have:
        raise NotEnoughMemory(f"the check needs about {need / 2**30:.0f} GiB of memory ({params / 1e6:.0f} M "
                              f"parameters: weights, gradients, optimizer state and activations), this machine has "
                              f"{have / 2**30:.0f} GiB available; run it on a larger machine", need=need, have=have)


def smallest_batch(module: Any, largest: int = 4096) -> int:
    """The smallest batch of at least 2 (batch norm needs two samples) that the method's extraction accepts,
    e.g. a divisor of a queue's length."""
    for batch in range(2, largest + 1):
        try:
            module.extract.check_batch_size(batch)
        except ZooError:
            continue
        return batch
    raise ZooError(f"no batch of 2 to {largest} images is accepted by the extraction {type(module.extract).__name__}")


class CheckCLI(ZooCLI):
    """``ZooCLI`` whose datamodule is replaced, once the recipe's classes are built, by synthetic images of the
    shape the recipe's datamodule yields, in the smallest batch the method accepts."""

    def __init__(self, *args: Any, pretrain_batches: int, max_parameters: Optional[int] = None,
                 first: bool = True, **kwargs: Any) -> None:
        self.pretrain_batches = pretrain_batches
        self.max_parameters = max_parameters
        self.first = first  # the resumed run: no memory check (the first run's held), no last.ckpt
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> Dict[str, set]:
        """Only ``fit``: the parsers of validate, test and predict would be built for nothing."""
        return {"fit": ZooCLI.subcommands()["fit"]}

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        trainer = (self.config[self.subcommand] if self.subcommand else self.config).trainer
        from jsonargparse import Namespace

        kept = [c for c in trainer.callbacks or [] if not str(getattr(c, "class_path", "")).endswith(
            ".ModelCheckpoint") and getattr(c, "class_path", None) not in ONLINE_EVAL]
        # the resumed run's checkpoint is written by check_recipe, without the optimizer moments: its callback (the
        # first run's, whose state the checkpoint holds) saves nothing
        init = {**CHECKPOINT["init_args"], "save_last": self.first}
        trainer.callbacks = kept + [Namespace(class_path=CHECKPOINT["class_path"], init_args=Namespace(**init))]

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        params = sum(p.numel() for p in self.model.parameters())
        try:
            if self.max_parameters and params > self.max_parameters:
                raise AboveParameterLimit(f"{params:,} parameters, above the limit of {self.max_parameters:,} given "
                                          "to this check (--max-parameters); nothing was trained")
            if self.first:  # the resumed run needs what the first run needed, which was checked; the first run's
                check_memory(self.model)  # checkpoint may still be dirty pages, which MemAvailable does not count
        except (AboveParameterLimit, NotEnoughMemory):
            # refused: the weights built to count them go now, not when the error's traceback is collected (a
            # caller that waits for memory, as the tests do, would otherwise wait on the model it was refused)
            self.model.to("meta")
            raise
        real = self.datamodule
        shape = getattr(real, "image_shape", None)
        if shape is None:
            raise ZooError(f"the datamodule {type(real).__name__} does not declare its image_shape (C, H, W), so "
                           "check-recipe cannot stand in for it")
        init = {"shape": list(shape), "pretrain_batches": self.pretrain_batches,
                "batch_size": smallest_batch(self.model), "seed": int(getattr(real, "seed", 0))}
        self.datamodule = SyntheticImages(**init)
        self.real_datamodule = type(real).__name__
        # the saved config.yaml (and the export's recipe record) then says the data was synthetic
        config = self.config[self.subcommand] if self.subcommand else self.config
        config.data = type(config.data)(class_path=f"{SyntheticImages.__module__}.SyntheticImages",
                                        init_args=type(config.data)(**init))


def _fit(args: List[str], pretrain_batches: int, max_parameters: Optional[int] = None,
         first: bool = True) -> CheckCLI:
    from training.cli import lightning_cli

    return lightning_cli(args, cli_class=functools.partial(CheckCLI, pretrain_batches=pretrain_batches,
                                                           max_parameters=max_parameters, first=first))


def _checkpoint(cli: CheckCLI) -> Path:
    """The last.ckpt the check's ModelCheckpoint wrote at the end of the first run."""
    found = latest_checkpoint(cli.trainer)
    if found is None:
        raise ZooError(f"the run ended at step {cli.trainer.global_step} without writing a checkpoint")
    return found


def _drop_training_state(cli: CheckCLI) -> None:
    """Free a finished run's optimizer state and gradients, keeping its weights."""
    for optimizer in cli.trainer.optimizers:
        optimizer.state.clear()
    cli.model.zero_grad(set_to_none=True)
    gc.collect()


def _release(cli: CheckCLI) -> None:
    """Free a finished run's weights and optimizer state now: Lightning's objects keep each other referenced past
    the run, and a second copy of a large encoder's weights and Adam state would double the check's memory.
    Moving the module to the meta device gives it new parameter objects; the old ones, with their data, stay in
    the optimizer's param groups, which are cleared first."""
    _drop_training_state(cli)
    for optimizer in cli.trainer.optimizers:
        optimizer.param_groups.clear()
    cli.model.to("meta")
    gc.collect()
    release_free_heap()


def _read_recipe(path: Path) -> None:
    """One clear line for a path that is not a recipe (before Lightning's parser prints its usage)."""
    import yaml

    if not path.is_file():
        raise ZooError(f"recipe {path} does not exist")
    try:
        text = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ZooError(f"{path} is not a recipe: not YAML ({first_line(err)})") from None
    if not isinstance(text, dict) or not isinstance(text.get("model"), dict) or "data" not in text:
        raise ZooError(f"{path} is not a recipe: a recipe is a YAML mapping with model, data and trainer sections")


def check_recipe(recipe: str, steps: int = 1, max_parameters: Optional[int] = None) -> Dict[str, Any]:
    """Run the check on ``recipe`` with ``steps`` optimizer steps before the resumed one; returns the report.

    ``max_parameters``: refuse (``AboveParameterLimit``), right after building, a model larger than this.
    Raises ``ZooError`` (one line naming the recipe) for a bad input or a failed stage.
    """
    path = Path(recipe)
    _read_recipe(path)
    if steps < 1:
        raise ZooError(f"--steps must be at least 1, got {steps}")
    start, stage, cpu = time.perf_counter(), "build", _cpu_seconds()
    try:
        with tempfile.TemporaryDirectory(prefix="check-recipe-") as tmp:
            base = ["fit", "--config", str(path), f"--trainer.default_root_dir={tmp}/run"]
            base += [f"--trainer.{key}={value}" for key, value in OVERRIDES.items()]
            stage = "train"
            first = _fit(base + [f"--trainer.max_steps={steps}"], pretrain_batches=steps + 2,
                         max_parameters=max_parameters)
            ckpt = _checkpoint(first)
            report = _describe(first, path, steps)
            _release(first)
            del first
            stage = "resume"
            second = _fit(base + [f"--trainer.max_steps={steps + 1}", "--ckpt_path", str(ckpt)], steps + 2,
                          first=False)
            if second.trainer.global_step != steps + 1:
                raise ZooError(f"resumed from step {steps} but ended at step {second.trainer.global_step}, "
                               f"not {steps + 1}")
            loss = float(second.model._loss)
            if not torch.isfinite(torch.tensor(loss)):
                raise ZooError(f"the resumed step's loss is {loss}")
            # export reads the weights only: the resumed run's checkpoint is written without Adam's or LARS's
            # moments (two thirds of a 666 M-parameter AMDIM's 8 GB), through the same save path as any checkpoint
            _drop_training_state(second)
            # in the resumed run's folder, where export finds that run's config.yaml
            resumed = Path(second.trainer.log_dir or f"{tmp}/run") / "checkpoints" / "resumed.ckpt"
            resumed.parent.mkdir(parents=True, exist_ok=True)
            second.trainer.save_checkpoint(resumed, weights_only=False)
            stage = "export"
            from training.release.export import export_checkpoint

            folder = export_checkpoint(ckpt=str(resumed), out=f"{tmp}/export", name=f"check.{path.stem}",
                                       training={"data": SYNTHETIC_NOTE})
            stage = "load"
            report["export"] = _load_and_compare(folder, second, steps + 1)
            _release(second)
    except NotEnoughMemory as err:
        raise NotEnoughMemory(f"recipe {path}: {err}", need=err.need, have=err.have) from None
    except AboveParameterLimit as err:
        raise AboveParameterLimit(f"recipe {path}: {err}") from None
    except ZooError as err:
        message = str(err) if str(err).startswith(f"recipe {path}") else f"recipe {path}: {stage}: {err}"
        raise CheckFailed(message) from err
    except Exception as err:  # a crash inside the recipe's parts: one line naming the stage, the cause chained
        raise CheckFailed(f"recipe {path}: {stage} failed: {type(err).__name__}: {first_line(err)}") from err
    report.update(steps=steps + 1, resumed_from_step=steps, last_loss=round(loss, 6),
                  seconds=round(time.perf_counter() - start, 1), cpu_seconds=round(_cpu_seconds() - cpu, 1),
                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return report


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _describe(cli: CheckCLI, path: Path, steps: int) -> Dict[str, Any]:
    """What was built: the input, the views of one image, the parameter counts, the settings chosen."""
    module, data = cli.model, cli.datamodule
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        views = module.augment(torch.zeros(1, *data.image_shape, dtype=torch.uint8))
    shapes = [list(v.shape[1:]) for v in views]
    settings = getattr(cli.trainer, "zoo_settings", {})
    return {"recipe": str(path), "method": module.method.name, "data": f"synthetic, in place of {cli.real_datamodule}",
            "input_shape": list(data.image_shape), "batch_size": data.batch_size, "views_per_image": len(views),
            "view_shapes": [s for i, s in enumerate(shapes) if s not in shapes[:i]],
            "parameters": sum(p.numel() for p in module.parameters()),
            "encoder_parameters": sum(p.numel() for p in module.encoder.parameters()),
            "optimizer": module.hparams.optimizer, "precision": settings.get("precision"),
            "channels_last": settings.get("channels_last"), "overrides": dict(OVERRIDES), "skipped": list(SKIPPED)}


def _load_and_compare(folder: str, cli: CheckCLI, step: int) -> Dict[str, Any]:
    """Load the export by path, check it records the resumed run's last ``step``, run its eval transform and
    forward on a synthetic batch, and compare with the trained module's own evaluation forward."""
    import zoo

    encoder = zoo.load_encoder(folder)
    exported_step = (encoder.zoo_config.get("training") or {}).get("global_step")
    if exported_step != step:
        raise ZooError(f"the export records global step {exported_step}, not the resumed run's {step}")
    transform = zoo.eval_transform(encoder)
    shape = cli.datamodule.image_shape
    images = torch.randint(0, 256, (2, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    module = cli.model.eval()
    with torch.no_grad():
        features = encoder(transform(images))
        expected = module.encode_for_eval(images).float()
    if features.shape != (2, encoder.num_features) or not torch.isfinite(features).all():
        raise ZooError(f"the exported encoder gave {tuple(features.shape)} features (finite: "
                       f"{bool(torch.isfinite(features).all())}), expected (2, {encoder.num_features})")
    # relative to the largest feature: two steps at a recipe's full learning rate can leave features far from 1,
    # and the module's channels-last convolutions round differently from the export's
    scale = max(1.0, float(expected.abs().max()))
    gap = float((features - expected).abs().max()) / scale
    if gap > 1e-3:
        raise ZooError(f"the exported encoder's features differ from the trained module's by {gap:.3g} of the "
                       f"largest feature ({scale:.3g})")
    return {"features": list(features.shape), "max_relative_diff_vs_module": gap}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """``python -m training check-recipe RECIPE.yaml [--steps N]``; training output goes to stderr."""
    import argparse
    import contextlib
    import sys

    parser = argparse.ArgumentParser(prog="python -m training check-recipe",
                                     description="Build, step, checkpoint, resume, export and load a recipe at its "
                                                 "real shapes on synthetic images (CPU).")
    parser.add_argument("recipe", help="a recipe YAML, e.g. training/recipes/simclr/imagenet.yaml")
    parser.add_argument("--steps", type=int, default=1, help="optimizer steps before the resumed one (default 1)")
    parser.add_argument("--max-parameters", type=int, default=None,
                        help="refuse, before training, a model with more parameters than this")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):
        return check_recipe(args.recipe, steps=args.steps, max_parameters=args.max_parameters)
