"""``python -m training explore``: grids validated before they run, resumed after interruptions, reported per axis.

Most tests replace a cell's fit and evaluation (``training.explore.cell.train_and_evaluate``) by a table of made-up
scores, so they exercise the runner itself: ordering, resume, atomic results, the report. One test runs a real
tiny cell end to end (fit subprocess, export, evaluation).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.cli import main
from training.explore import cell as cell_module
from training.explore.grid import load_grid

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "training" / "recipes" / "yadim" / "fashion_mnist.yaml"
#: made-up (kNN, linear) scores per configuration label; each seed adds 0.01 to both
SCORES = {"base": (0.70, 0.80), "similarity=cosine": (0.75, 0.805), "loss=plain": (0.702, 0.70)}
AXES = {"similarity": [{"label": "cosine", "name": "cosine", "temperature": 0.1}],
        "loss": [{"label": "plain", "tanh_clip": None, "score_penalty": 0.0}]}


def write_grid(tmp_path, fmnist_dir, axes=None, seeds=(0, 1), **extra):
    grid = {"name": "tiny", "recipe": str(RECIPE), "base": {"encoder": {"ndf": 8, "n_rkhs": 32}},
            "fit": {"data.init_args.root": str(fmnist_dir), "data.init_args.batch_size": 16},
            "budget": {"steps": 2}, "seeds": list(seeds), "evaluation": {"bank": 64, "test": 32, "seed": 0},
            "axes": axes or AXES, **extra}
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(grid))  # JSON is YAML
    return str(path)


class FakeCells:
    """Stands in for fit + export + evaluation; can crash on the n-th call."""

    def __init__(self, crash_at=None, crash=KeyboardInterrupt):
        self.calls, self.crash_at, self.crash = [], crash_at, crash

    def __call__(self, grid, cell, run_dir):
        assert list(run_dir.iterdir()) == [], "a cell must start from an empty run folder"
        self.calls.append(cell.id)
        if self.crash_at == len(self.calls):
            (run_dir / "checkpoints").mkdir()  # what a fit killed mid-way leaves behind
            raise self.crash()
        label = cell.config.label.split(", ")[-1] if "," in cell.config.label else cell.config.label
        knn, linear = SCORES.get(label, (0.5, 0.5))
        return {"knn": knn + 0.01 * cell.seed, "linear": linear + 0.01 * cell.seed, "knn_val": 0.0, "linear_val": 0.0,
                "global_step": 2, "n_bank": 64, "n_fit": 58, "n_val": 6, "n_test": 32, "fit_seconds": 0.0,
                "eval_seconds": 0.0}


@pytest.fixture
def fake(monkeypatch):
    def install(**kwargs):
        cells = FakeCells(**kwargs)
        monkeypatch.setattr(cell_module, "train_and_evaluate", cells)
        return cells
    return install


def explore(grid, tmp_path, *options, out="out"):
    return main(["explore", grid, "--out", str(tmp_path / out), "--runs", str(tmp_path / "runs"), *options])


def axis_tables(tmp_path, out="out"):
    return (tmp_path / out / "README.md").read_text().split("## Cells")[0].split("\n", 6)[-1]


def test_one_at_a_time_grid_writes_tables_plots_and_csv(tmp_path, fmnist_dir, fake):
    cells = fake()
    assert explore(write_grid(tmp_path, fmnist_dir), tmp_path) == 0
    assert len(cells.calls) == 6  # base, cosine, plain: 3 configurations x 2 seeds
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| **base** | `dot(scale_by_sqrt_dim=True)` | 2 | 0.7050 ± 0.0071 [0.7000–0.7100] | — | 0.8050 ± 0.0071 [0.8000–0.8100] | — |" \
        in readme
    # every seed adds the same 0.01 to every configuration: the paired differences do not vary, the intervals are
    # points and any difference is measurable (tests/training/explore/test_stats.py has seeds that disagree)
    assert "| cosine | `cosine(temperature=0.1)` | 2 | 0.7550 ± 0.0071 [0.7500–0.7600] | +0.0500 [+0.0500, +0.0500]: " \
           "higher at 95% | 0.8100 ± 0.0071 [0.8050–0.8150] | +0.0050 [+0.0050, +0.0050]: higher at 95% |" in readme
    assert "| plain | `nce(score_penalty=0.0, tanh_clip=None)` | 2 | 0.7070 ± 0.0071 [0.7020–0.7120] | +0.0020 [+0.0020, " \
           "+0.0020]: higher at 95% | 0.7050 ± 0.0071 [0.7000–0.7100] | -0.1000 [-0.1000, -0.1000]: lower at 95% |" \
        in readme
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("cell,config,label,seed,status,knn,linear")
    for axis in ("similarity", "loss"):
        assert (tmp_path / "out" / f"{axis}.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads(next((tmp_path / "out" / "cells").glob("similarity_cosine-*_s1.json")).read_text())
    assert record["parts"]["similarity"] == {"name": "cosine", "temperature": 0.1}
    assert record["fit_command"].startswith(f"python -m training fit --config {RECIPE} --model.encoder ")
    assert "--model.similarity '{\"name\": \"cosine\", \"temperature\": 0.1}' --seed_everything 1" in \
        record["fit_command"]


def test_factorial_two_by_two(tmp_path, fmnist_dir, fake):
    cells = fake()
    grid = write_grid(tmp_path, fmnist_dir, seeds=(0,))
    assert [c.label for c in load_grid(grid, factorial=True).configs] == [
        "base", "loss=plain", "similarity=cosine", "similarity=cosine, loss=plain"]
    assert explore(grid, tmp_path, "--factorial") == 0
    assert len(cells.calls) == 4
    assert "marginal over every configuration" in (tmp_path / "out" / "README.md").read_text()


def test_interrupted_between_cells_resumes_to_the_same_tables(tmp_path, fmnist_dir, fake, capsys):
    grid = write_grid(tmp_path, fmnist_dir)
    fake()
    assert explore(grid, tmp_path, out="reference") == 0
    crashed = fake(crash_at=3)
    assert explore(grid, tmp_path) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: stopped by Ctrl-C; finished cells are kept, run the same command to resume")
    assert len(list((tmp_path / "out" / "cells").glob("*.json"))) == 2
    resumed = fake()
    assert explore(grid, tmp_path) == 0
    assert resumed.calls == [c.id for c in load_grid(grid).cells][2:]
    assert crashed.calls[2] == resumed.calls[0]
    assert axis_tables(tmp_path) == axis_tables(tmp_path, "reference")


def test_cell_killed_mid_fit_runs_again_from_an_empty_folder(tmp_path, fmnist_dir, fake, capsys):
    grid = write_grid(tmp_path, fmnist_dir, seeds=(0,))
    fake(crash_at=2, crash=lambda: cell_module.CellKilled("the fit was stopped (exit -9); nothing recorded, run "
                                                          "the grid again to resume"))
    assert explore(grid, tmp_path) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: the fit was stopped (exit -9); nothing recorded, run the grid again to resume")
    cells = load_grid(grid).cells
    assert cell_module.read_result(tmp_path / "out", cells[1]) is None
    (tmp_path / "out" / "cells" / f".{cells[2].id}.json.x.tmp").write_text("{")  # a write cut short: ignored
    resumed = fake()
    assert explore(grid, tmp_path) == 0
    assert resumed.calls == [cells[1].id, cells[2].id]  # the fake asserts each starts from an empty folder


def test_finished_grid_runs_nothing_new(tmp_path, fmnist_dir, fake, capsys):
    grid = write_grid(tmp_path, fmnist_dir, seeds=(0,))
    fake()
    assert explore(grid, tmp_path) == 0
    before = (tmp_path / "out" / "results.csv").read_text()
    again = fake()
    capsys.readouterr()
    assert explore(grid, tmp_path) == 0
    assert again.calls == []
    assert "3 done, 0 to run" in capsys.readouterr().out
    assert (tmp_path / "out" / "results.csv").read_text() == before
    first = load_grid(grid).cells[0].id
    assert explore(grid, tmp_path, "--cell", first) == 0 and again.calls == []


@pytest.mark.parametrize("axes, reason", [
    ({"augment": [{"name": "amdm"}]}, "axes.augment[0]: unknown augmentation 'amdm'; did you mean 'amdim', 'yadim'? "
                                      "(registered: amdim, byol, cpc, moco_v2, simclr, swav, yadim)"),
    ({"loss": [{"tanh_clip": None}], "similarity": [{"name": "cosine", "temprature": 0.1}]},
     "axes.similarity[0]: similarity 'cosine' got unknown argument(s) ['temprature'] (did you mean "
     "'temperature'?); it accepts ['temperature']"),
    ({"encoder": [{"ndf": 4}, {"depth": 1, "ndff": 8}]}, "axes.encoder[1]: encoder 'amdim' got unknown argument(s) "
     "['ndff'] (did you mean 'ndf'?); it accepts ['in_channels', 'image_size', 'ndf', 'n_rkhs', 'depth', 'use_bn']"),
    ({"color": [{"name": "x"}]}, "axes.color: unknown characteristic; a method has ['augment', 'encoder', "
                                 "'extract', 'similarity', 'loss']"),
])
def test_bad_axis_is_refused_before_any_cell_runs(tmp_path, fmnist_dir, fake, capsys, axes, reason):
    cells = fake()
    grid = write_grid(tmp_path, fmnist_dir, axes=axes)
    assert explore(grid, tmp_path) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: grid {grid}: {reason}"]
    assert cells.calls == [] and not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_jobs_print_one_command_per_pending_cell_and_collect_reports(tmp_path, fmnist_dir, fake, capsys):
    grid = write_grid(tmp_path, fmnist_dir, seeds=(0,))
    cells = fake()
    assert explore(grid, tmp_path, "--jobs") == 0
    jobs = capsys.readouterr().out.strip().splitlines()
    ids = [c.id for c in load_grid(grid).cells]
    assert jobs == [f"python -m training explore {grid} --out {tmp_path / 'out'} --runs {tmp_path / 'runs'} "
                    f"--cell {i}" for i in ids]
    for job in jobs[:2]:  # two of three jobs ran, e.g. on a cluster
        assert main(job.split()[3:]) == 0
    assert cells.calls == ids[:2]
    capsys.readouterr()
    assert explore(grid, tmp_path, "--collect") == 0
    assert capsys.readouterr().out.strip() == (f"2 of 3 cells have results; report in {tmp_path / 'out'}/README.md; "
                                               f"missing: {ids[2]}")
    assert f"| {ids[2]} | missing |" in (tmp_path / "out" / "README.md").read_text()
    assert explore(grid, tmp_path, "--jobs") == 0
    assert capsys.readouterr().out.strip().splitlines() == jobs[2:]


def test_jobs_into_a_closed_pipe_exits_quietly(tmp_path, fmnist_dir):
    """``--jobs | head``: a reader that closed the pipe before the commands were written (``true`` reads nothing and
    exits at once, long before Python has started); the command still exits 0, without a BrokenPipeError traceback."""
    import subprocess
    import sys

    grid = write_grid(tmp_path, fmnist_dir)
    command = f"set -o pipefail; {sys.executable} -m training explore {grid} --out {tmp_path / 'out'} --jobs | true"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_one_real_tiny_cell_end_to_end(tmp_path, fmnist_dir):
    grid = write_grid(tmp_path, fmnist_dir, axes={"loss": [{"tanh_clip": None}]}, seeds=(0,),
                      settings={"trainer.precision": "32-true"})
    base = load_grid(grid).cells[0]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "training", "explore", grid, "--out", str(tmp_path / "out"), "--runs",
                           str(tmp_path / "runs"), "--cell", base.id], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = cell_module.read_result(tmp_path / "out", base)
    assert record["status"] == "done", record.get("error")
    assert record["global_step"] == 2 and (record["n_bank"], record["n_test"], record["n_fit"]) == (64, 32, 58)
    assert 0.0 <= record["knn"] <= 1.0 and 0.0 <= record["linear"] <= 1.0
    assert (record["precision"], record["channels_last"]) == ("32-true", True)  # what the fit resolved, recorded
    assert record["fit_command"] == cell_module.command(cell_module.fit_args(load_grid(grid), base,
                                                                             tmp_path / "runs" / base.id))
    assert (tmp_path / "runs" / base.id / "export" / "model.safetensors").is_file()
