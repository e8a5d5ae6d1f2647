"""``python -m training explore GRID.yaml [--factorial] [--jobs | --collect | --cell ID]``.

Without options: validate every configuration, run the cells that have no result yet (one after the other, each
line saying cells done/total and the ETA), then write the report. Finished cells are never run again: an
interrupted grid resumes where it stopped, and a finished grid runs nothing. ``--jobs`` prints one command per
cell still to run (``--cell ID``), for a SLURM array or any scheduler; ``--collect`` then writes the report from
whatever results exist.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

from training.explore import cell as cells
from training.explore.grid import Cell, Grid, load_grid
from training.explore.report import write_report
from training.explore.validate import validate
from training.pretrain.fit_cli import Interrupted
from training.pretrain.progress import duration
from zoo.errors import ZooError


def folders(grid: Grid, args: SimpleNamespace):
    out = Path(args.out) if args.out else Path("bench") / "results" / f"explore_{grid.name}"
    runs = Path(args.runs) if args.runs else Path("runs") / "explore" / grid.name
    return out, runs


def pending(grid: Grid, out: Path, retry_failed: bool) -> List[Cell]:
    todo = []
    for cell in grid.cells:
        record = cells.read_result(out, cell)
        if record is None or (retry_failed and record.get("status") == "failed"):
            todo.append(cell)
    return todo


def cell_command(args: SimpleNamespace, cell_id: str) -> str:
    words = ["python", "-m", "training", "explore", args.grid]
    words += ["--factorial"] if args.factorial else []
    words += [w for flag in ("out", "runs") if getattr(args, flag) for w in (f"--{flag}", getattr(args, flag))]
    return shlex.join(words + ["--cell", cell_id])


def already_done(args: SimpleNamespace, grid: Grid, out: Path) -> str:
    """What a finished grid says instead of running: the results it keeps and the command that runs it afresh
    (committed results count as finished cells, so the plain command never repeats a measurement)."""
    fresh = Path("results") / f"explore_{grid.name}_rerun"
    words = ["python", "-m", "training", "explore", args.grid, *(["--factorial"] if args.factorial else []),
             "--out", str(fresh), "--runs", str(fresh / "runs")]
    return (f"every cell already has a result in {out}, so nothing runs and the report is rewritten from them; "
            f"to measure the grid again: {shlex.join(words)}")


def outcome(record: Dict[str, Any]) -> str:
    if record["status"] != "done":
        return f"failed: {record['error']}"
    return f"kNN {record['knn']:.4f}, linear {record['linear']:.4f}"


def run_grid(grid: Grid, todo: List[Cell], out: Path, runs: Path, done: int, args: SimpleNamespace) -> None:
    """Run ``todo`` in order; ``done`` cells of the grid already have results (for the progress count)."""
    total = len(grid.cells)
    recorded = [r["seconds"] for c in grid.cells if (r := cells.read_result(out, c)) and "seconds" in r]
    taken: List[float] = []
    for cell in todo:
        print(f"[{done + 1}/{total}] {cell.config.label}, seed {cell.seed}: running ({runs / cell.id / 'fit.log'})",
              flush=True)
        start = time.perf_counter()
        record = cells.run_cell(grid, cell, out, runs, cell_command(args, cell.id))
        taken.append(time.perf_counter() - start)
        done += 1
        left = total - done
        per_cell = sum(taken or recorded) / max(1, len(taken or recorded))
        eta = f"ETA {duration(per_cell * left)} ({left} left)" if left else "grid complete"
        print(f"[{done}/{total}] {cell.config.label}, seed {cell.seed}: {outcome(record)} "
              f"({duration(taken[-1])}); {eta}", flush=True)


def stop_on_sigterm(signum, frame) -> None:
    """SIGTERM ends the grid like Ctrl-C: the running cell's fit is stopped, nothing half-written is kept."""
    raise Interrupted("stopped by SIGTERM; finished cells are kept, run the same command to resume",
                      128 + signal.SIGTERM)


def explore(grid: str, *, factorial: bool = False, out: Optional[str] = None, runs: Optional[str] = None,
            jobs: bool = False, collect: bool = False, cell: Optional[str] = None, check: bool = False,
            retry_failed: bool = False) -> int:
    """Vary one characteristic at a time around a base method; fit and evaluate every cell; tables and plots per axis.

    Args:
        grid: a grid YAML, e.g. training/grids/paper_fmnist.yaml.
        factorial: every combination of the axes' alternatives.
        out: results folder (default bench/results/explore_<grid name>).
        runs: training folders (default runs/explore/<grid name>).
        jobs: print one command per cell still to run, run nothing.
        collect: write the report from the results there are.
        cell: run this one cell (an id from --jobs or the report).
        check: validate the grid and list its cells, run nothing.
        retry_failed: run failed cells again.
    """
    chosen = [name for name, value in (("--jobs", jobs), ("--collect", collect), ("--cell", cell),
                                       ("--check", check)) if value]
    if len(chosen) > 1:
        raise ZooError(f"{' and '.join(chosen)} do not go together: give one of --jobs, --collect, --cell, --check")
    args = SimpleNamespace(grid=grid, factorial=factorial, out=out, runs=runs, jobs=jobs, collect=collect,
                           cell=cell, check=check, retry_failed=retry_failed)
    spec = load_grid(args.grid, factorial=args.factorial or None)
    results, run_root = folders(spec, args)
    if args.collect:
        summary = write_report(spec, results)
        print(f"{summary['results']} of {len(spec.cells)} cells have results; report in {results}/README.md"
              + (f"; missing: {' '.join(summary['missing'])}" if summary["missing"] else ""))
        return 0
    configs = validate(spec)
    todo = pending(spec, results, args.retry_failed)
    done = len(spec.cells) - len(todo)
    if args.jobs:
        try:
            for item in todo:
                print(cell_command(args, item.id), flush=True)
        except BrokenPipeError:  # `--jobs | head`: the reader has what it wanted; no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.check:
        print(f"grid {spec.path}: {configs} configurations x {len(spec.seeds)} seeds = {len(spec.cells)} cells, "
              f"{len(todo)} to run; every configuration builds and scores a synthetic batch")
        for item in spec.cells:
            print(f"  {item.id}: {item.config.label}, seed {item.seed}" + ("" if item in todo else " (done)"))
        return 0
    if args.cell:
        picked = [c for c in spec.cells if c.id == args.cell]
        if not picked:
            raise ZooError(f"grid {spec.path} has no cell {args.cell!r}; `--check` lists them")
        todo = [c for c in todo if c.id == args.cell]
        if not todo:
            print(f"cell {args.cell} already has a result in {cells.result_path(results, picked[0])}; nothing to run")
            return 0
    print(f"explore {spec.name}: {configs} configurations x {len(spec.seeds)} seeds = {len(spec.cells)} cells "
          f"({spec.design.replace('_', '-')}); {done} done, {len(todo)} to run; "
          + (f"results in {results}" if todo else already_done(args, spec, results)), flush=True)
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        run_grid(spec, todo, results, run_root, done, args)
    except KeyboardInterrupt:
        raise Interrupted("stopped by Ctrl-C; finished cells are kept, run the same command to resume", 130) \
            from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not args.cell:
        summary = write_report(spec, results)
        print(f"report: {results}/README.md, {results}/results.csv and one PNG per axis"
              + (f" ({len(summary['missing'])} cells missing)" if summary["missing"] else ""))
    return 0
