"""The command line as a user runs it: ``python -m training fit|export``, in subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "training" / "recipes" / "yadim" / "fashion_mnist.yaml"
TINY_ENCODER = json.dumps({"in_channels": 1, "image_size": 32, "ndf": 8, "n_rkhs": 32, "depth": 1})


def run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.slow
def test_fit_export_load_end_to_end(fmnist_dir, tmp_path):
    fit = run("fit", "--config", str(RECIPE), "--model.encoder", TINY_ENCODER,
              "--data.init_args.root", str(fmnist_dir), "--data.init_args.batch_size", "16",
              "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(tmp_path / "run"),
              "--trainer.enable_progress_bar", "false")
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpts = sorted((tmp_path / "run").rglob("last.ckpt"))
    assert len(ckpts) == 1
    metrics = (next((tmp_path / "run").rglob("metrics.csv"))).read_text()
    assert {"knn_acc", "rankme", "areq"} <= set(metrics.splitlines()[0].split(","))  # the recipe's online figures
    out = tmp_path / "exported"
    exp = run("export", "--ckpt", str(ckpts[0]), "--out", str(out), "--name", "yadim.tiny")
    assert exp.returncode == 0, exp.stderr[-3000:]
    assert exp.stdout.strip() == str(out)
    encoder = zoo.load_encoder(out)
    assert encoder.zoo_config["training"]["epochs"] == 2
    assert encoder.zoo_config["recipe"]["lightning_cli_config"]["trainer"]["max_epochs"] == 2
    assert encoder(torch.zeros(2, 1, 32, 32)).shape == (2, 32)


def write_recipe(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(RECIPE.read_text() + "\n" + text)
    return str(path)


def test_unknown_part_in_recipe_is_one_clear_error(tmp_path, fmnist_dir):
    recipe = write_recipe(tmp_path, "")
    result = run("fit", "--config", recipe, "--model.encoder", '{"name": "amdm"}',
                 "--data.init_args.root", str(fmnist_dir))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: unknown encoder 'amdm'; did you mean 'amdim'? (registered: amdim, cpc_resnet, resnet)")


def test_unknown_method_in_recipe(tmp_path, fmnist_dir):
    result = run("fit", "--config", str(RECIPE), "--model.method", "yadm", "--data.init_args.root", str(fmnist_dir))
    assert result.returncode == 2
    assert "error: unknown method 'yadm'; did you mean 'yadim'?" in result.stderr


def test_missing_dataset_directory(tmp_path):
    missing = tmp_path / "no-such-dir"
    result = run("fit", "--config", str(RECIPE), "--model.encoder", TINY_ENCODER,
                 "--data.init_args.root", str(missing), "--trainer.max_epochs", "1",
                 "--trainer.default_root_dir", str(tmp_path / "run"))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: Fashion-MNIST not found (looked in {missing}")


def test_export_of_a_non_checkpoint(tmp_path):
    bogus = tmp_path / "x.ckpt"
    bogus.write_bytes(b"\x00garbage")
    result = run("export", "--ckpt", str(bogus), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "is not a readable PyTorch checkpoint" in result.stderr
    assert not (tmp_path / "out").exists()


def test_import_zoo_does_not_import_lightning():
    code = "import sys, zoo; zoo.list_methods(); print(sorted(m for m in sys.modules if 'lightning' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_yaml_only_recipe_trains_and_exports(fmnist_dir, tmp_path):
    recipe = ROOT / "training" / "recipes" / "examples" / "simclr_aug_amdim_fashion_mnist.yaml"
    fit = run("fit", "--config", str(recipe), "--model.encoder",
              json.dumps({"name": "amdim", **json.loads(TINY_ENCODER)}), "--data.init_args.root", str(fmnist_dir),
              "--data.init_args.batch_size", "16", "--trainer.max_steps", "2", "--trainer.callbacks", "[]",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false")
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = next((tmp_path / "run").rglob("*.ckpt"))
    assert run("export", "--ckpt", str(ckpt), "--out", str(tmp_path / "out")).returncode == 0
    config = zoo.load_encoder(tmp_path / "out").zoo_config
    assert config["method"]["name"] == "simclr_aug_amdim"
    assert [config["method"][c]["name"] for c in zoo.CHARACTERISTICS] == ["simclr", "amdim", "last_map", "dot", "nce"]


def test_queue_not_divisible_by_batch_fails_before_training(fmnist_dir, tmp_path):
    recipe = ROOT / "training" / "recipes" / "moco_v2" / "fashion_mnist.yaml"
    result = run("fit", "--config", str(recipe), "--data.init_args.root", str(fmnist_dir),
                 "--data.init_args.batch_size", "24", "--trainer.default_root_dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "queue size 4096 is not divisible by the global batch 24" in result.stderr.strip().splitlines()[-1]
    assert not list((tmp_path / "run").rglob("*.ckpt"))
