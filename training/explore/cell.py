"""One cell: an ordinary ``python -m training fit`` in a subprocess, export, frozen evaluation, one result file.

The fit command is recorded exactly as it ran, so anyone can repeat a cell by hand from the results table. A
cell starts from an empty run folder (a cell killed mid-way leaves no result and is simply run again); its
result is written with ``zoo.atomic`` (temporary file, then rename), so a result file is complete or absent.
A fit that exits with an error (e.g. a loss that became NaN) is a result too: the cell is recorded as failed,
with the error's line, and ``--retry-failed`` runs it again.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from training.explore.grid import Cell, Grid
from zoo.atomic import atomic_write_text
from zoo.errors import ZooError
from zoo.spec import CHARACTERISTICS

FORMAT = "contrastive-zoo explore cell 1"
#: the one checkpoint of a cell: last.ckpt when training ends (a killed cell restarts, it does not resume)
CHECKPOINT = [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
               "init_args": {"save_top_k": 0, "save_last": True, "enable_version_counter": False}}]


class CellFailed(Exception):
    """The cell's fit or evaluation ended with an error: a result to record, not a reason to stop the grid."""


class CellKilled(ZooError):
    """The cell's fit was killed by a signal: nothing is recorded and the grid stops (run it again to resume)."""


def option(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def fit_args(grid: Grid, cell: Cell, run_dir: Path) -> List[str]:
    """The arguments after ``python -m training``: the recipe, the parts that differ from it, seed and budget."""
    args = ["fit", "--config", str(grid.recipe)]
    if grid.method != (grid.recipe_data.get("model") or {}).get("method"):
        args += ["--model.method", str(grid.method)]
    for c in CHARACTERISTICS:
        mapping = cell.config.mapping(c)
        if mapping != grid.recipe_model[c]:
            args += [f"--model.{c}", json.dumps(mapping)]
    args += ["--seed_everything", str(cell.seed), "--data.init_args.seed", str(cell.seed)]
    if "steps" in grid.budget:
        args += ["--trainer.max_steps", str(grid.budget["steps"]), "--trainer.max_epochs", "-1"]
    else:
        minutes, seconds = divmod(grid.budget["seconds"], 60)
        hours, minutes = divmod(minutes, 60)
        args += ["--trainer.max_time", f"00:{hours:02d}:{minutes:02d}:{seconds:02d}", "--trainer.max_epochs", "100000"]
    for key, value in {**grid.fit, **grid.settings}.items():
        args += [f"--{key}", option(value)]
    args += ["--trainer.default_root_dir", str(run_dir), "--trainer.callbacks", json.dumps(CHECKPOINT)]
    return args


def command(args: List[str]) -> str:
    return shlex.join(["python", "-m", "training", *args])


def train(args: List[str], run_dir: Path) -> float:
    """Run the fit subprocess with its output in ``run_dir/fit.log``; seconds taken. Stops the child when this
    process is stopped."""
    start = time.perf_counter()
    with open(run_dir / "fit.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "training", *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            code = child.wait()
        except BaseException:
            child.terminate()
            child.wait()
            raise
    if code < 0 or code in (128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGKILL):
        raise CellKilled(f"the fit was stopped (exit {code}); nothing recorded, run the grid again to resume")
    if code != 0:
        lines = [line for line in (run_dir / "fit.log").read_text(errors="replace").splitlines() if line.strip()]
        raise CellFailed(f"fit exited {code}: {lines[-1].strip() if lines else 'no output'}")
    return time.perf_counter() - start


def train_and_evaluate(grid: Grid, cell: Cell, run_dir: Path) -> Dict[str, Any]:
    """Fit, export and evaluate one cell; the measured numbers."""
    from training.explore.evaluation import evaluate_export
    from training.release.export import export_checkpoint

    args = fit_args(grid, cell, run_dir)
    fit_seconds = train(args, run_dir)
    found = sorted(run_dir.rglob("last.ckpt"))  # under the logger's version folder when the recipe logs
    if len(found) != 1:
        raise CellFailed(f"fit ended with {len(found)} last.ckpt files under {run_dir}; expected one")
    ckpt = found[0]
    folder = export_checkpoint(ckpt=str(ckpt), out=str(run_dir / "export"), name=f"explore.{cell.id}", overwrite=True)
    scores = evaluate_export(folder, grid.recipe_data.get("data") or {}, grid.fit, grid.evaluation)
    return {**scores, "fit_seconds": round(fit_seconds, 1), "export": folder}


def result_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / f"{cell.id}.json"


def run_cell(grid: Grid, cell: Cell, out: Path, runs: Path, cell_command: str) -> Dict[str, Any]:
    """Run one cell from an empty run folder and write its result atomically; returns the result.
    ``cell_command`` is the ``explore ... --cell ID`` line that repeats it, recorded with it."""
    from training.release.export import machine
    from zoo.methods import resolve_method

    run_dir = runs / cell.id
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    args = fit_args(grid, cell, run_dir)
    overrides: Dict[str, Any] = {c: cell.config.mapping(c) for c in CHARACTERISTICS}  # as resolve_method's **overrides
    record: Dict[str, Any] = {
        "format": FORMAT, "grid": grid.name, "cell": cell.id, "config": cell.config.key, "label": cell.config.label,
        "choices": dict(cell.config.choices), "seed": cell.seed, "budget": grid.budget, "evaluation": grid.evaluation,
        "overrides": overrides,
        "parts": {c: p.to_dict() for c, p in resolve_method(grid.method, **overrides).parts().items()},
        "method": grid.method, "fit_command": command(args), "cell_command": cell_command,
        "run_dir": str(run_dir), "machine": machine(),
    }
    start = time.perf_counter()
    try:
        record.update(status="done", error=None, **train_and_evaluate(grid, cell, run_dir))
    except CellFailed as err:
        record.update(status="failed", error=str(err))
    record["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(result_path(out, cell), json.dumps(record, indent=2) + "\n")
    return record


def read_result(out: Path, cell: Cell) -> Dict[str, Any] | None:
    """The cell's recorded result, or None when it has none (never run, or killed before it finished)."""
    path = result_path(out, cell)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("format") == FORMAT and record.get("cell") == cell.id else None
