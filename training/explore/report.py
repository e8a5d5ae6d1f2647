"""The grid's results a reader can check: a CSV of every cell, and per axis a Markdown table and a plot.

Per alternative: the mean, standard deviation and range (min-max) over seeds of kNN and linear-probe top-1, and
the difference to the base with its 95% interval and verdict, from the paired t-interval over seeds of
``training.explore.stats`` (the rule is printed above the tables). With one seed there is no interval, and the
table says so. Under the one-at-a-time design an alternative's row is its own configuration; under the factorial
design it is the marginal over every configuration holding that alternative, paired with the base on the same
seed and the same choices on the other axes.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from training.explore.cell import read_result
from training.explore.grid import Config, Grid
from training.explore.stats import LEVEL, RULE, Comparison, paired
from zoo.atomic import atomic_write_text, temp_file_beside
from zoo.methods import resolve_method
from zoo.spec import CHARACTERISTIC_TITLES, CHARACTERISTICS, Part

METRICS = (("knn", "kNN"), ("linear", "linear"))
CSV_FIELDS = ("cell", "config", "label", "seed", "status", "knn", "linear", "knn_val", "linear_val", "global_step",
              "n_bank", "n_test", "fit_seconds", "eval_seconds", "seconds", "error", "fit_command")


def summary(values: List[float]) -> Optional[Dict[str, float]]:
    if not values:
        return None
    return {"n": len(values), "mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def members(grid: Grid, axis: str, index: int) -> List[Config]:
    """The configurations an axis' alternative ``index`` (0 = base) stands for in that axis' table."""
    out = []
    for config in grid.configs:
        choices = dict(config.choices)
        if choices[axis] != index:
            continue
        if grid.design == "factorial" or all(i == 0 for a, i in choices.items() if a != axis):
            out.append(config)
    return out


def comparison(base: Dict[Tuple, float], alt: Dict[Tuple, float]) -> Optional[Comparison]:
    """The paired comparison of two rows' values keyed by (other axes' choices, seed); None without a pair."""
    return paired([alt[key] - base[key] for key in alt if key in base])


def pair_key(axis: str, record: Dict[str, Any]) -> Tuple:
    """What pairs a cell with the base's: its seed and its choices on every axis but ``axis``."""
    return (record["seed"], *sorted((a, i) for a, i in record["choices"].items() if a != axis))


def base_mark(row: Dict[str, Any], sep: str) -> str:
    """" (base)" after the base's label, unless the label already says it (one-at-a-time grids call it "base")."""
    return f"{sep}(base)" if row["base"] and row["label"] != "base" else ""


def axis_rows(grid: Grid, axis: str, results: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for index, label in enumerate(grid.labels(axis)):
        cells = [results[f"{c.key}_s{s}"] for c in members(grid, axis, index) for s in grid.seeds
                 if f"{c.key}_s{s}" in results]
        done = [r for r in cells if r.get("status") == "done"]
        part = part_text(grid, members(grid, axis, index)[0], axis)
        rows.append({"label": label, "base": index == 0, "part": part,
                     "failed": [r["error"] for r in cells if r.get("status") == "failed"],
                     **{m: summary([float(r[m]) for r in done]) for m, _ in METRICS},
                     "values": {m: [float(r[m]) for r in done] for m, _ in METRICS},
                     "paired": {m: {pair_key(axis, r): float(r[m]) for r in done} for m, _ in METRICS}})
    for row in rows:
        for m, _ in METRICS:
            row[f"compare_{m}"] = None if row["base"] else comparison(rows[0]["paired"][m], row["paired"][m])
            row[f"delta_{m}"] = "—" if row["base"] else (c.text() if (c := row[f"compare_{m}"]) else "n/a")
    return rows


def part_text(grid: Grid, config: Config, axis: str) -> str:
    """The part as it trained (row part with the overrides), less the dataset knowledge every alternative carries."""
    overrides: Dict[str, Any] = {c: config.mapping(c) for c in CHARACTERISTICS}  # as resolve_method's **overrides
    part = resolve_method(grid.method, **overrides).parts()[axis]
    hidden = grid.carry.get(axis, ())
    return str(Part(part.name, tuple((k, v) for k, v in part.args if k not in hidden)))


def cell_text(s: Optional[Dict[str, float]]) -> str:
    if s is None:
        return "—"
    return f"{s['mean']:.4f} ± {s['std']:.4f} [{s['min']:.4f}–{s['max']:.4f}]"


def axis_table(rows: List[Dict[str, Any]]) -> str:
    ci = f"Δ {{}} vs base [{LEVEL:.0%} interval]: verdict"
    lines = [f"| alternative | part | seeds | kNN mean ± std [min–max] | {ci.format('kNN')} | linear mean ± std "
             f"[min–max] | {ci.format('linear')} |", "|---|---|---:|---|---|---|---|"]
    for r in rows:
        name = f"**{r['label']}{base_mark(r, ' ')}**" if r["base"] else r["label"]
        n = (r["knn"] or {}).get("n", 0)
        failed = f" ({len(r['failed'])} failed: {r['failed'][0]})" if r["failed"] else ""
        lines.append(f"| {name}{failed} | `{r['part']}` | {n} | {cell_text(r['knn'])} | {r['delta_knn']} | "
                     f"{cell_text(r['linear'])} | {r['delta_linear']} |")
    return "\n".join(lines)


def plot_axis(grid: Grid, axis: str, rows: List[Dict[str, Any]], path: Path) -> None:
    """Per metric: every seed's score, the mean with its min-max bar, the base's range as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, len(METRICS), figsize=(max(7.0, 1.6 * len(rows) * len(METRICS)), 4.2))
    for panel, (metric, title) in zip(panels, METRICS, strict=True):
        base = rows[0][metric]
        if base is not None:
            panel.axhspan(base["min"], base["max"], color="C1", alpha=0.15, label="base seed range")
        for x, row in enumerate(rows):
            s, colour = row[metric], "C1" if row["base"] else "C0"
            if s is None:
                continue
            panel.scatter([x] * len(row["values"][metric]), row["values"][metric], color="0.5", s=12, zorder=2)
            panel.errorbar([x], [s["mean"]], yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], fmt="o",
                           color=colour, capsize=4, zorder=3)
        panel.set_xticks(range(len(rows)))
        panel.set_xticklabels([r["label"] + base_mark(r, "\n") for r in rows],
                              rotation=30, ha="right", fontsize=8)
        panel.set_title(f"{title} top-1 (mean, min-max over seeds)")
        panel.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{grid.name}: {CHARACTERISTIC_TITLES[axis]} ({len(grid.seeds)} seeds, {budget_text(grid)})")
    fig.tight_layout()
    fd, tmp = temp_file_beside(path, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


def budget_text(grid: Grid) -> str:
    return f"{grid.budget['steps']} steps" if "steps" in grid.budget else f"{grid.budget['seconds']} s"


def eval_text(grid: Grid, results: Dict[str, Dict[str, Any]]) -> str:
    ev = grid.evaluation
    done = [r for r in results.values() if r.get("status") == "done"]
    bank = f"{done[0]['n_bank']} (fit {done[0]['n_fit']}, val {done[0]['n_val']})" if done else ev["bank"] or "all"
    test = done[0]["n_test"] if done else ev["test"] or "all"
    subsets = f"fixed subsets drawn with seed {ev['seed']}" if ev["bank"] or ev["test"] else "the whole splits"
    return (f"kNN (k=200, cosine, exp(sim/0.1) votes) and a linear probe on frozen features; {bank} labelled "
            f"training images, {test} test images ({subsets}; the same for every cell)")


def provenance(results: Dict[str, Dict[str, Any]]) -> str:
    """Where and in which precision the cells ran, with counts: a grid whose cells mix machines says so."""
    counts: Dict[Tuple[str, str], int] = {}
    for r in results.values():
        key = (str(r.get("machine") or "not recorded"), str(r.get("precision") or "not recorded"))
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{machine}, precision {precision} ({n} cells)" for (machine, precision), n
                     in sorted(counts.items())) or "n/a"


def markdown(grid: Grid, results: Dict[str, Dict[str, Any]], missing: List[str]) -> str:
    failed = sum(r.get("status") == "failed" for r in results.values())
    lines = [f"# explore: {grid.name}", "",
             f"Grid `{grid.path}`: base = recipe `{grid.recipe}`" + (f", method `{grid.method}`" if grid.method else "")
             + f"; design {grid.design.replace('_', '-')}; seeds {grid.seeds}; budget {budget_text(grid)} per cell.",
             f"Evaluation: {eval_text(grid, results)}.",
             f"Cells: {len(results) - failed} done, {failed} failed, {len(missing)} missing"
             + (f" ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})" if missing else "") + ".",
             f"Machines: {provenance(results)}.", "",
             "Mean ± std over seeds, [min–max]. Δ = the mean over seeds of the alternative's score minus the base's "
             f"on the same seed. Verdict rule: {RULE} (`training/explore/stats.py`)."
             + (" Factorial design: each row is the marginal over every configuration holding that alternative."
                if grid.design == "factorial" else ""), ""]
    for axis in grid.axes:
        lines += [f"## {axis}: {CHARACTERISTIC_TITLES[axis]}", "", axis_table(axis_rows(grid, axis, results)), "",
                  f"![{axis}]({axis}.png)", ""]
    lines += ["## Cells", "", "Each cell re-runs by hand with its fit command (then `python -m training export --ckpt "
              "RUN/checkpoints/last.ckpt --out RUN/export` and `python -m training evaluate --encoder RUN/export "
              "...` on the whole splits), or with fit, export and this evaluation together: `python -m training "
              f"explore {grid.path} --cell CELL`.", "", "| cell | status | kNN | linear | steps | s | fit command |",
              "|---|---|---:|---:|---:|---:|---|"]
    for cell in grid.cells:
        r = results.get(cell.id)
        if r is None:
            lines.append(f"| {cell.id} | missing | | | | | |")
            continue
        scores = [f"{r[m]:.4f}" if r.get("status") == "done" else "" for m, _ in METRICS]
        lines.append(f"| {cell.id} | {r['status']} | {scores[0]} | {scores[1]} | {r.get('global_step') or ''} | "
                     f"{r.get('seconds', '')} | `{r['fit_command']}` |")
    return "\n".join(lines) + "\n"


def csv_text(grid: Grid, results: Dict[str, Dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS) + list(grid.axes), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for cell in grid.cells:
        if cell.id in results:
            r = results[cell.id]
            writer.writerow({**r, **{a: grid.labels(a)[i] for a, i in r["choices"].items()}})
    return buffer.getvalue()


def write_report(grid: Grid, out: Path) -> Dict[str, Any]:
    """Regenerate ``results.csv``, ``README.md`` and ``<axis>.png`` in ``out`` from the cells' result files."""
    results = {cell.id: r for cell in grid.cells if (r := read_result(out, cell)) is not None}
    missing = [cell.id for cell in grid.cells if cell.id not in results]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.csv", csv_text(grid, results))
    atomic_write_text(out / "README.md", markdown(grid, results, missing))
    for axis in grid.axes:
        plot_axis(grid, axis, axis_rows(grid, axis, results), out / f"{axis}.png")
    return {"results": len(results), "missing": missing, "out": str(out)}
