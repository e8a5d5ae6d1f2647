"""The verdicts of ``explore``: the t quantile, the paired interval, the tables that print them, pinned settings,
and what a finished grid says.

Reference values: t quantiles from printed tables (and the closed forms for 1 and 2 degrees of freedom); the
intervals computed by hand in the comments.
"""

import math

import pytest

from tests.training.explore.test_explore import axis_tables, explore, write_grid
from training.cli import main
from training.explore import cell as cell_module
from training.explore.grid import load_grid
from training.explore.stats import Comparison, paired, t_quantile

#: (level, df, t) from the standard two-sided table of Student's t
TABLE = [(0.95, 1, 12.7062), (0.95, 2, 4.3027), (0.95, 3, 3.1824), (0.95, 4, 2.7764), (0.95, 5, 2.5706),
         (0.95, 10, 2.2281), (0.95, 30, 2.0423), (0.99, 2, 9.9248), (0.99, 9, 3.2498), (0.90, 4, 2.1318)]


@pytest.mark.parametrize("level, df, t", TABLE)
def test_t_quantile_matches_the_printed_table(level, df, t):
    assert t_quantile(level, df) == pytest.approx(t, abs=5e-5)


def test_t_quantile_closed_forms():
    # df 1 is Cauchy: t = tan(pi * level / 2); df 2: P(|T| <= t) = t / sqrt(2 + t^2), so t = level * sqrt(2 / (1 - level^2))
    assert t_quantile(0.95, 1) == pytest.approx(math.tan(math.pi * 0.95 / 2), rel=1e-12)
    assert t_quantile(0.95, 2) == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95 ** 2)), rel=1e-12)


def test_paired_interval_by_hand():
    # d = 0.02, 0.03, 0.04: mean 0.03, sd 0.01, half-width 4.302653 * 0.01 / sqrt(3) = 0.024841
    c = paired([0.02, 0.03, 0.04])
    assert (c.n, c.low, c.high) == (3, pytest.approx(0.005159, abs=1e-6), pytest.approx(0.054841, abs=1e-6))
    assert c.text() == "+0.0300 [+0.0052, +0.0548]: higher at 95%"
    # d = 0.01, -0.01, 0.02: mean 0.006667, sd 0.015275, half-width 0.037946 -> the interval holds 0
    assert paired([0.01, -0.01, 0.02]).text() == "+0.0067 [-0.0313, +0.0446]: no measurable difference at 95%"
    assert paired([-0.05, -0.04]).text() == "-0.0450 [-0.1085, +0.0185]: no measurable difference at 95%"
    assert paired([-0.05, -0.04, -0.06]).verdict == "lower at 95%"  # half-width 0.024841 < 0.05
    assert paired([0.01]) == Comparison(1, 0.01, None, None) and paired([0.01]).text() == "+0.0100 (one seed: no interval)"
    assert paired([]) is None


#: (kNN, linear) per configuration label and seed, made up so that one metric is measurable and one is not
SCORES = {("base", 0): (0.70, 0.80), ("base", 1): (0.72, 0.82), ("base", 2): (0.71, 0.81),
          ("similarity=cosine", 0): (0.74, 0.81), ("similarity=cosine", 1): (0.75, 0.81),
          ("similarity=cosine", 2): (0.76, 0.83)}


def fake_scores(grid, cell, run_dir):
    knn, linear = SCORES.get((cell.config.label, cell.seed), (0.5, 0.5))
    return {"knn": knn, "linear": linear, "knn_val": 0.0, "linear_val": 0.0, "global_step": 2, "n_bank": 64,
            "n_fit": 58, "n_val": 6, "n_test": 32, "fit_seconds": 1.0, "eval_seconds": 0.0, "precision": "32-true"}


def test_axis_table_prints_interval_and_verdict_per_metric(tmp_path, fmnist_dir, monkeypatch):
    monkeypatch.setattr(cell_module, "train_and_evaluate", fake_scores)
    axes = {"similarity": [{"label": "cosine", "name": "cosine", "temperature": 0.1}]}
    assert explore(write_grid(tmp_path, fmnist_dir, axes=axes, seeds=(0, 1, 2)), tmp_path) == 0
    # kNN d = 0.04, 0.03, 0.05: [+0.0152, +0.0648]; linear d = 0.01, -0.01, 0.02: [-0.0313, +0.0446] (by hand above)
    assert ("| cosine | `cosine(temperature=0.1)` | 3 | 0.7500 ± 0.0100 [0.7400–0.7600] | +0.0400 [+0.0152, +0.0648]: "
            "higher at 95% | 0.8167 ± 0.0115 [0.8100–0.8300] | +0.0067 [-0.0313, +0.0446]: no measurable difference "
            "at 95% |") in axis_tables(tmp_path)
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Verdict rule: paired by seed, d = alternative − base; 95% t-interval" in readme
    assert ", precision 32-true (6 cells)." in readme


def test_factorial_pairs_the_same_seed_and_the_same_other_choices(tmp_path, fmnist_dir, monkeypatch):
    def interacting(grid, cell, run_dir):  # kNN = 0.5 + 0.1 cos + 0.04 cos*plain + 0.01 seed
        choices = dict(cell.config.choices)
        knn = 0.5 + 0.1 * choices["similarity"] + 0.04 * choices["similarity"] * choices["loss"] + 0.01 * cell.seed
        return {**fake_scores(grid, cell, run_dir), "knn": knn}

    monkeypatch.setattr(cell_module, "train_and_evaluate", interacting)
    assert explore(write_grid(tmp_path, fmnist_dir, seeds=(0, 1)), tmp_path, "--factorial") == 0
    # similarity pairs: d = 0.10 (loss base, seeds 0, 1), 0.14 (loss plain, seeds 0, 1): mean 0.12, sd 0.023094,
    # half-width 3.182446 * 0.023094 / 2 = 0.036748. Pairing across seeds or loss choices would give other values.
    assert "| 4 | 0.6250 ± 0.0238 [0.6000–0.6500] | +0.1200 [+0.0833, +0.1567]: higher at 95% |" in axis_tables(tmp_path)


def test_settings_pin_precision_outside_the_cell_ids(tmp_path, fmnist_dir, capsys):
    plain = load_grid(write_grid(tmp_path, fmnist_dir))
    pinned = load_grid(write_grid(tmp_path, fmnist_dir, settings={"trainer.precision": "32-true"}))
    assert [c.id for c in pinned.cells] == [c.id for c in plain.cells]
    args = cell_module.fit_args(pinned, pinned.cells[0], tmp_path / "run")
    assert args[args.index("--trainer.precision") + 1] == "32-true"
    assert "--trainer.precision" not in cell_module.fit_args(plain, plain.cells[0], tmp_path / "run")
    grid = write_grid(tmp_path, fmnist_dir, settings={"trainer.max_steps": 5})
    assert main(["explore", grid, "--check"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: grid {grid}: settings: pins only ['trainer.precision', 'model.channels_last'] (other fit options go "
        "in fit:), got {'trainer.max_steps': 5}")


def test_finished_grid_says_so_and_reruns_into_a_fresh_folder(tmp_path, fmnist_dir, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cell_module, "train_and_evaluate", lambda g, c, r: calls.append(c.id) or fake_scores(g, c, r))
    axes = {"similarity": [{"label": "cosine", "name": "cosine", "temperature": 0.1}]}
    grid = write_grid(tmp_path, fmnist_dir, axes=axes, seeds=(0, 1, 2))
    monkeypatch.chdir(tmp_path)
    assert explore(grid, tmp_path) == 0 and len(calls) == 6
    capsys.readouterr()
    assert explore(grid, tmp_path) == 0 and len(calls) == 6
    first = capsys.readouterr().out.splitlines()[0]
    rerun = (f"python -m training explore {grid} --out results/explore_tiny_rerun --runs "
             "results/explore_tiny_rerun/runs")
    assert first == (f"explore tiny: 2 configurations x 3 seeds = 6 cells (one-at-a-time); 6 done, 0 to run; every "
                     f"cell already has a result in {tmp_path / 'out'}, so nothing runs and the report is rewritten "
                     f"from them; to measure the grid again: {rerun}")
    assert main(rerun.split()[3:]) == 0 and len(calls) == 12  # every cell measured again, in the fresh folder
    assert sorted(p.name for p in (tmp_path / "results" / "explore_tiny_rerun" / "cells").iterdir()) == \
        sorted(p.name for p in (tmp_path / "out" / "cells").iterdir())
