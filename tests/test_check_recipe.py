"""``python -m training check-recipe``: every recipe builds, steps, checkpoints, resumes, exports and loads at its
real input shape and encoder, on synthetic images (in this process: one test per recipe, imports shared)."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training.check_recipe import AboveParameterLimit, NotEnoughMemory, check_recipe
from training.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "training" / "recipes").glob("*/*.yaml"))
SMALL = ROOT / "training" / "recipes" / "yadim" / "fashion_mnist.yaml"


def test_every_recipe_is_checked():
    assert len(RECIPES) >= 29  # every method x dataset, and the examples


#: AMDIM's and YADIM's ImageNet encoders (666 M parameters) take about 4 minutes and 17 GB each, CPC v2's ImageNet
#: ResNet-161 patch grid (398 M) minutes too: above this limit a recipe is checked only when
#: ZOO_CHECK_MAX_PARAMETERS allows it (0: no limit), to keep CI within 20 minutes; every other recipe is below it
MAX_PARAMETERS = int(os.environ.get("ZOO_CHECK_MAX_PARAMETERS", 300_000_000))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_passes_check(path):
    try:
        report = check_recipe(str(path), steps=1, max_parameters=MAX_PARAMETERS or None)
    except (NotEnoughMemory, AboveParameterLimit) as err:  # the two 666 M-parameter encoders; a small machine
        pytest.skip(str(err))
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


def test_a_recipe_too_large_for_the_machine_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import training.check_recipe as check

    monkeypatch.setattr(check, "available_memory", lambda: 1 << 30)  # 1 GiB: below the process's own base
    assert main(["check-recipe", str(SMALL)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: recipe {SMALL}: the check needs about 1 GiB of memory (")
    assert line.endswith("this machine has 1 GiB available; run it on a larger machine")


def test_a_model_above_the_parameter_limit_is_refused_before_training(capsys):
    assert main(["check-recipe", str(SMALL), "--max-parameters", "1000"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: recipe {re.escape(str(SMALL))}: [\d,]+ parameters, above the limit of 1,000 given "
                        r"to this check \(--max-parameters\); nothing was trained", line), line
