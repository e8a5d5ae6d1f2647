"""``python -m training check-recipe RECIPE.yaml [--steps N]``: a recipe builds, steps, resumes and exports.

The recipe goes through ``python -m training fit``'s own code path (``training.cli.lightning_cli``, ``ZooCLI``,
the recipe's model, optimizer, schedule and callbacks) with its real encoder and input shape, on one CPU process,
with three substitutions: the dataset is replaced by random uint8 images of the shape its datamodule yields
(:class:`training.pretrain.synthetic.SyntheticImages`), the batch is the smallest one the method accepts, and
the accelerator, device count and strategy are one CPU process. Then:

0. the memory the check needs, counted on the meta device (``training.plan.memory``): a recipe the machine
   cannot hold is refused before anything is built at full size;
1. N optimizer steps, and the full checkpoint they leave (weights, optimizer state, loops, RNG state);
2. one more step resumed from that checkpoint with ``--ckpt_path`` (the resume path of ``fit``);
3. ``training.release.export.export_checkpoint`` of the resumed run's checkpoint (written without the optimizer's
   moments, which export never reads) into a temporary folder;
4. ``zoo.load_encoder`` of the export, which must record the resumed run's last step, its ``zoo.eval_transform``
   and a forward pass on a synthetic batch, which must equal the trained module's own evaluation forward (taken
   before the export, whose loads then do not meet the run's own copy of the weights).

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
from typing import Any, Dict, List, Optional, Tuple

import torch

from training.plan.memory import (
    AboveParameterLimit,
    NotEnoughMemory,
    refuse_if_too_large,
    release_free_heap,
)
from training.plan.recipe import OVERRIDES, CheckCLI, read_recipe
from training.pretrain.fit_cli import latest_checkpoint
from training.pretrain.synthetic import SYNTHETIC_NOTE
from zoo.errors import ZooError, first_line

#: what the check leaves out, as the JSON line reports it
SKIPPED = ["the real dataset (synthetic uint8 images of its shape)", "multi-device and multi-node strategies",
           "the model summary table", "online evaluation callbacks (kNN / linear accuracy on the synthetic images "
           "would mean nothing)",
           "the recipe's own checkpoint callbacks (one ModelCheckpoint writes last.ckpt once, after the first "
           "run; the resumed run's checkpoint, which is only exported, leaves out the optimizer's moments)"]

class CheckFailed(ZooError):
    """A stage of the check failed; the message names the recipe and the stage."""


def _fit(args: List[str], pretrain_batches: int, first: bool = True) -> CheckCLI:
    from training.pretrain.command_line import lightning_cli

    return lightning_cli(args, cli_class=functools.partial(CheckCLI, pretrain_batches=pretrain_batches,
                                                           first=first))


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



def check_recipe(recipe: str, steps: int = 1, max_parameters: Optional[int] = None) -> Dict[str, Any]:
    """Run the check on ``recipe`` with ``steps`` optimizer steps before the resumed one; returns the report.

    Before anything is built at full size, ``refuse_if_too_large`` counts the check's memory on the meta device:
    ``NotEnoughMemory`` where the machine has less available, ``AboveParameterLimit`` for a model with more
    parameters than ``max_parameters``.
    Raises ``ZooError`` (one line naming the recipe) for a bad input or a failed stage.
    """
    path = Path(recipe)
    read_recipe(path)
    if steps < 1:
        raise ZooError(f"--steps must be at least 1, got {steps}")
    start, stage, cpu = time.perf_counter(), "build", _cpu_seconds()
    try:
        with tempfile.TemporaryDirectory(prefix="check-recipe-") as tmp:
            base = ["fit", "--config", str(path), f"--trainer.default_root_dir={tmp}/run"]
            base += [f"--trainer.{key}={value}" for key, value in OVERRIDES.items()]
            stage = "memory"
            need = refuse_if_too_large(str(path), max_parameters)
            stage = "train"
            first = _fit(base + [f"--trainer.max_steps={steps}"], pretrain_batches=steps + 2)
            ckpt = _checkpoint(first)
            report = _describe(first, path, steps)
            report["memory_need_gib"] = {key: round(value / 2**30, 2) for key, value in need.to_dict().items()
                                         if key != "parameters"}
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
            # what the export must reproduce, taken before the run's weights go: the export and its loads hold
            # up to three copies of the encoder's weights, which should not meet a fourth
            images, expected = _eval_features(second)
            _release(second)
            del second
            stage = "export"
            from training.release.export import export_checkpoint

            folder = export_checkpoint(ckpt=str(resumed), out=f"{tmp}/export", name=f"check.{path.stem}",
                                       training={"data": SYNTHETIC_NOTE})
            stage = "load"
            report["export"] = _load_and_compare(folder, images, expected, steps + 1)
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


def _eval_features(cli: CheckCLI) -> Tuple[torch.Tensor, torch.Tensor]:
    """A synthetic batch of the recipe's images and the trained module's own evaluation features of it."""
    shape = cli.datamodule.image_shape
    images = torch.randint(0, 256, (2, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return images, cli.model.eval().encode_for_eval(images).float()


def _load_and_compare(folder: str, images: torch.Tensor, expected: torch.Tensor, step: int) -> Dict[str, Any]:
    """Load the export by path, check it records the resumed run's last ``step``, run its eval transform and
    forward on ``images``, and compare with the trained module's features of them, ``expected``."""
    import zoo

    encoder = zoo.load_encoder(folder)
    exported_step = (encoder.zoo_config.get("training") or {}).get("global_step")
    if exported_step != step:
        raise ZooError(f"the export records global step {exported_step}, not the resumed run's {step}")
    transform = zoo.eval_transform(encoder)
    with torch.no_grad():
        features = encoder(transform(images))
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


def check_recipe_command(recipe: str, *, steps: int = 1, max_parameters: Optional[int] = None) -> None:
    """Build, step, checkpoint, resume, export and load a recipe at its real shapes on synthetic images (CPU);
    prints the report as one JSON line.

    Args:
        recipe: a recipe YAML, e.g. training/recipes/simclr/imagenet.yaml.
        steps: optimizer steps before the resumed one.
        max_parameters: refuse, before training, a model with more parameters than this.
    """
    import contextlib
    import json
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        report = check_recipe(recipe, steps=steps, max_parameters=max_parameters)
    print(json.dumps(report), flush=True)
