"""``python -m training check-recipe``: every recipe builds, steps, checkpoints, resumes, exports and loads at its
real input shape and encoder, on synthetic images (in this process: one test per recipe, imports shared)."""

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from training.cli import main
from training.plan.check_recipe import AboveParameterLimit, NotEnoughMemory, check_recipe
from training.plan.memory import available_memory, meminfo_bytes

ROOT = Path(__file__).resolve().parents[3]
RECIPES = sorted((ROOT / "training" / "recipes").glob("*/*.yaml"))
SMALL = ROOT / "training" / "recipes" / "yadim" / "fashion_mnist.yaml"


def test_every_recipe_is_checked():
    assert len(RECIPES) >= 29  # every method x dataset, and the examples


#: the five largest recipes: AMDIM's and YADIM's ImageNet recipes (AMDIM's 666 M-parameter encoder, 2 to 2.5
#: minutes each on one core, peak RssAnon about 12 GiB: bench/check_memory.py), CPC v2's (ResNet-161 on a 7x7
#: patch grid, 398 M) and AMDIM's and YADIM's STL-10 recipes (208 M). They form one pytest-xdist group (`make
#: test` runs `--dist loadgroup`): one worker checks them one after another, as the first work it is sent (the
#: scheduler sends the largest group first), while the other worker runs the rest, so no two of them share the
#: machine's memory
LARGE = {"amdim/imagenet", "yadim/imagenet", "cpc_v2/imagenet", "amdim/stl10", "yadim/stl10"}
LARGE_PARAMETERS = 150_000_000
#: a machine that should skip large recipes sets ZOO_CHECK_MAX_PARAMETERS (0 or unset: no limit); one without the
#: memory a recipe needs skips it with the reason, as check-recipe refuses it
MAX_PARAMETERS = int(os.environ.get("ZOO_CHECK_MAX_PARAMETERS", 0))


#: how long a recipe's test waits for memory that the machine has but other processes hold for now (the other
#: pytest-xdist worker's test)
MEMORY_WAIT_S = 300


def recipe_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def check_when_memory_allows(path: Path) -> dict:
    """``check_recipe``, waiting up to MEMORY_WAIT_S while the memory it needs is held by other processes; a
    machine with less memory in all raises NotEnoughMemory at once."""
    deadline = time.monotonic() + MEMORY_WAIT_S
    while True:
        try:
            return check_recipe(str(path), steps=1, max_parameters=MAX_PARAMETERS or None)
        except NotEnoughMemory as err:
            if err.need > (meminfo_bytes("MemTotal") or 0) or time.monotonic() > deadline:
                raise
            need = err.need
        while (available_memory() or 0) < need and time.monotonic() < deadline:
            time.sleep(2)


@pytest.mark.parametrize("path", [
    pytest.param(p, id=recipe_id(p), marks=[pytest.mark.slow] + ([pytest.mark.xdist_group("large_recipes")]
                                                                  if recipe_id(p) in LARGE else []))
    for p in RECIPES])
def test_recipe_passes_check(path):
    try:
        report = check_when_memory_allows(path)
    except (NotEnoughMemory, AboveParameterLimit) as err:  # a small machine, or one told to skip large recipes
        pytest.skip(str(err))
    assert (report["parameters"] > LARGE_PARAMETERS) == (recipe_id(path) in LARGE), (
        f"{recipe_id(path)} has {report['parameters']:,} parameters: LARGE must name exactly the recipes above "
        f"{LARGE_PARAMETERS:,}, so that no two of them run at once")
    recipe = yaml.safe_load(path.read_text())
    augment = recipe["model"].get("augment") or {}
    assert report["steps"] == 2 and report["resumed_from_step"] == 1
    assert math.isfinite(report["last_loss"])
    assert report["data"].startswith("synthetic")
    assert report["input_shape"][0] == len(augment["mean"])
    size = augment["size"]
    assert [size, size] in [s[-2:] for s in report["view_shapes"]] or "patch" in augment
    assert report["export"]["features"][0] == 2
    assert report["precision"] == "32-true" or report["precision"].startswith("bf16")


@pytest.mark.slow
@pytest.mark.xdist_group("large_recipes")
def test_the_large_recipes_share_one_worker(request):
    """Under `make test` (`--dist loadgroup`) pytest-xdist reads a test's group from a suffix it adds to the node
    id; pytest 9.2's node ids dropped that suffix without a word (pytest-dev/pytest-xdist#1386), and two of the
    largest checks then ran at once and one skipped for memory in CI."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs under pytest-xdist with --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@large_recipes"), request.node.nodeid


def test_the_check_leaves_no_run_behind():
    """When the check returns, its trainers, modules and optimizers are gone (jsonargparse keeps its last parser,
    which holds the CLI, in a context variable): one process can check the largest recipes one after another."""
    import gc

    import pytorch_lightning as pl

    def alive(kind):
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, kind)}

    kinds = (pl.Trainer, pl.LightningModule, torch.optim.Optimizer)
    before = {kind: alive(kind) for kind in kinds}
    check_recipe(str(SMALL), steps=1)
    left = {kind.__name__: len(alive(kind) - before[kind]) for kind in kinds}
    assert left == {"Trainer": 0, "LightningModule": 0, "Optimizer": 0}


def test_command_line_prints_one_json_line(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "training", "check-recipe", str(SMALL), "--steps", "2"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["recipe"] == str(SMALL) and report["steps"] == 3 and report["resumed_from_step"] == 2
    assert report["input_shape"] == [1, 28, 28] and report["views_per_image"] == 2
    for key in ("parameters", "seconds", "peak_rss_mb", "last_loss", "skipped"):
        assert key in report
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def bad_normalisation(tmp_path):
    recipe = yaml.safe_load(SMALL.read_text())
    recipe["model"]["augment"].update(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    path = tmp_path / "grey_with_rgb_stats.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


NORMALISATION = ("normalisation has 3 mean and 3 std values but the encoder 'amdim' takes 1 input channel(s); "
                 "give one mean and one std per channel")


def test_mismatched_normalisation_is_one_line(tmp_path, capsys):
    path = bad_normalisation(tmp_path)
    assert main(["check-recipe", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == f"error: recipe {path}: {NORMALISATION}"
    assert captured.out == ""


def test_fit_refuses_mismatched_normalisation(tmp_path, capsys):
    path = bad_normalisation(tmp_path)
    assert main(["fit", "--config", str(path), "--trainer.default_root_dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: recipe {path}: {NORMALISATION}"
    assert not (tmp_path / "run").exists()


def test_missing_file_and_not_a_recipe(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["check-recipe", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: recipe {missing} does not exist"
    other = tmp_path / "list.yaml"
    other.write_text("- just\n- a list\n")
    assert main(["check-recipe", str(other)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {other} is not a recipe: a recipe is a YAML mapping with model, data and trainer sections")


def test_a_recipe_too_large_for_the_machine_is_refused_before_training(capsys, monkeypatch):
    import training.plan.check_recipe as check
    import training.plan.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 30)  # 1 GiB: below the process's own base

    def never(*args, **kwargs):
        raise AssertionError("the recipe was built at full size before it was refused")

    monkeypatch.setattr(check, "_fit", never)
    with pytest.raises(NotEnoughMemory) as refused:
        check_recipe(str(SMALL))
    assert refused.value.have == 1 << 30 and refused.value.need > 1 << 30
    assert main(["check-recipe", str(SMALL)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: recipe {re.escape(str(SMALL))}: the check needs about 2\.0 GiB of memory \(1 M "
                        r"parameters: 0\.0 GiB weights and buffers, 0\.0 GiB gradients, 0\.0 GiB optimizer state, "
                        r"0\.0 GiB activations, 2\.0 GiB process and allocator\), this machine has 1\.0 GiB "
                        r"available; run it on a larger machine", line), line


def test_a_checkpoint_torch_cannot_map_is_one_line_before_anything_is_built(tmp_path, capsys):
    """Lightning's look at a resumed checkpoint's hyper-parameters goes through the resume path's reader, so a
    file it cannot memory-map (the legacy non-zip format) gets that reader's one line, before the model is built."""
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"hyper_parameters": {}, "state_dict": {}}, legacy, _use_new_zipfile_serialization=False)
    run = tmp_path / "run"
    args = ["fit", "--config", str(SMALL), "--trainer.default_root_dir", str(run), "--ckpt_path", str(legacy)]
    assert main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot resume from {legacy}: not a readable checkpoint (loaded with "
                           "weights_only=True): "), line
    assert not run.exists()


def test_resuming_never_reads_a_checkpoint_whole(monkeypatch):
    """Every read of a checkpoint during the check, Lightning's look at its hyper-parameters included, is
    memory-mapped: a plain torch.load of AMDIM ImageNet's checkpoint holds 7.4 GiB to read a few strings."""
    reads = []
    load = torch.load

    def spy(f, *args, **kwargs):
        reads.append((Path(str(f)).name, kwargs.get("mmap")))
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    check_recipe(str(SMALL), steps=1)
    checkpoints = [read for read in reads if read[0].endswith(".ckpt")]
    assert len(checkpoints) >= 2 and all(mmap for _, mmap in checkpoints), reads


def test_a_model_above_the_parameter_limit_is_refused_before_training(capsys):
    assert main(["check-recipe", str(SMALL), "--max-parameters", "1000"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: recipe {re.escape(str(SMALL))}: [\d,]+ parameters, above the limit of 1,000 given "
                        r"to this check \(--max-parameters\); nothing was trained", line), line
