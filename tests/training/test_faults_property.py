"""Drawn bad input (hypothesis): whatever values a recipe holds and whatever names a user types, a command either
works or ends with ONE line on stderr and exit code 2, and nothing outside the run's own folder changes.

Each example runs the real command line in a fresh workspace: ``data/`` (the input, never to be touched), and
``run/`` (the only place a command may write). The package's own files are watched too.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from tests.helpers.data import make_fashion_mnist
from tests.helpers.zoo_exports import make_checkpoint
from tests.training.pretrain.test_faults_fit import fit_args
from training.cli import main
from training.pretrain import hardware
from zoo.pretrained.weights_registry import PACKAGE_DIR

FP32_CPU = hardware.Hardware(cpu="AMD EPYC 7B13", cpu_bf16=False, cuda=False, cuda_bf16=False)
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture],
                phases=[Phase.explicit, Phase.generate])  # no shrinking: a failing example is printed as drawn


def snapshot(*folders: Path) -> dict:
    """Every file under ``folders`` with its sha256 (and every folder), to compare before and after."""
    state = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return state


def one_line_or_success(code: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        return
    assert code == 2, f"exit {code}, stderr:\n{err[-3000:]}"
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, f"not one error line:\n{err[-3000:]}"


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 3),
                    st.sampled_from(["abc", "", "1e-3", "-", "[0.1]"]))
scales = st.one_of(st.none(), st.lists(st.floats(-0.5, 1.5, allow_nan=False, width=32), max_size=3),
                   st.sampled_from(["abc", "[]", "{}"]))


@settings(max_examples=12, **SETTINGS)
@given(batch_size=st.one_of(st.integers(-2, 6), st.sampled_from(["x", "2.5", ""])), lr=numbers,
       temperature=numbers, crop_scale=scales)
def test_fit_with_drawn_recipe_values_works_or_says_one_line(batch_size, lr, temperature, crop_scale, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(hardware, "probe", lambda: FP32_CPU)
    package = snapshot(PACKAGE_DIR)
    with tempfile.TemporaryDirectory() as work:
        data, run = make_fashion_mnist(Path(work) / "data"), Path(work) / "run"
        before = snapshot(data)
        capsys.readouterr()
        values = ["--data.init_args.batch_size", str(batch_size), "--model.lr", json.dumps(lr),
                  "--model.similarity.temperature", json.dumps(temperature),
                  "--model.augment.crop_scale", json.dumps(crop_scale)]
        code = main(fit_args(run, data, *values, "--trainer.max_steps", "1"))
        one_line_or_success(code, capsys.readouterr().err)
        assert snapshot(data) == before
    assert snapshot(PACKAGE_DIR) == package


names = st.text(alphabet="ab._-/ ~\\:", min_size=0, max_size=12)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@settings(max_examples=40, **SETTINGS)
@given(name=names, out=names)
def test_export_with_drawn_names_works_or_says_one_line_and_stays_in_its_folder(name, out, checkpoint, capsys):
    package = snapshot(PACKAGE_DIR)
    with tempfile.TemporaryDirectory() as work:
        run = Path(work) / "run"
        run.mkdir()
        assume((run / out).resolve().is_relative_to(run.resolve()))  # --out is where the user asks to write
        (Path(work) / "neighbour").mkdir()
        (Path(work) / "neighbour" / "keep.txt").write_text("mine")
        outside = snapshot(Path(work) / "neighbour")
        capsys.readouterr()
        code = main(["export", "--ckpt", str(checkpoint), "--out", str(run / out), "--name", name])
        one_line_or_success(code, capsys.readouterr().err)
        assert snapshot(Path(work) / "neighbour") == outside
        assert sorted(p.name for p in Path(work).iterdir()) == ["neighbour", "run"]
    assert snapshot(PACKAGE_DIR) == package
