"""``python -m training evaluate``: one frozen-feature path shared with the demo, no side effects unless asked,
baselines, and records that change the registry entry and its card together or not at all."""

import hashlib
import json
import os
from pathlib import Path

import pytest

import zoo
from tests.helpers.zoo_exports import make_export
from training.cli import main
from training.downstream.frozen import frozen_evaluation, frozen_features
from training.pretrain.data import FashionMNISTDataModule
from training.release import results


def test_demo_style_call_and_evaluate_command_give_identical_numbers(fmnist_dir, tmp_path):
    folder = make_export(tmp_path / "exp", seed=0)
    encoder = zoo.load_encoder(folder)
    dm = FashionMNISTDataModule(root=str(fmnist_dir))
    dm.setup()
    demo = frozen_evaluation(frozen_features(encoder, zoo.eval_transform(encoder)), dm)  # what demo.py calls
    for protocol in ("knn", "linear"):
        out = tmp_path / f"{protocol}.json"
        assert main(["evaluate", "--encoder", str(folder), "--data", "fashion_mnist", "--root", str(fmnist_dir),
                     "--protocol", protocol, "--out", str(out)]) == 0
        assert json.loads(out.read_text())["top1"] == demo[protocol]["top1"]


def package_files():
    root = Path(zoo.__file__).resolve().parent
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_evaluate_on_a_registry_name_leaves_the_package_unchanged(fmnist_dir, tmp_path, capsys):
    before = package_files()
    args = ["evaluate", "--encoder", "yadim.fashion_mnist", "--data", "fashion_mnist", "--root", str(fmnist_dir),
            "--k", "5"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["top1"] >= 0.0 and package_files() == before
    assert main([*args, "--record", str(Path(zoo.__file__).parent / "_weights" / "registry.json")]) == 2
    assert "inside the installed package" in capsys.readouterr().err and package_files() == before
    assert list(tmp_path.iterdir()) == [fmnist_dir]  # and nothing written beside the data either


def test_baselines_print_random_init_and_raw_pixel_rows(fmnist_dir, tmp_path, capsys):
    folder = make_export(tmp_path / "exp", seed=0)
    assert main(["evaluate", "--encoder", str(folder), "--data", "fashion_mnist", "--root", str(fmnist_dir),
                 "--protocol", "linear", "--baselines", "true", "--out", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    written = sorted(p.suffix for p in (tmp_path / "results").iterdir())  # --out DIR: the JSON and its PNG
    assert written == [".json", ".png"]
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| representation | protocol | dims | top-1 |")
    assert table[1].startswith("| raw pixels (normalised, flattened) | linear | 784 |")
    assert table[2].startswith("| random-init encoder (same architecture) | linear | 32 |")
    assert table[3].startswith(f"| {folder} (pretrained) | linear | 32 |")
    rows = json.loads(printed[printed.index("\n{") + 1:])["baselines"]
    assert [r["representation"] for r in rows][:2] == ["raw pixels (normalised, flattened)",
                                                       "random-init encoder (same architecture)"]


def published(tmp_path):
    from training.release.publish import publish

    reg = tmp_path / "weights" / "registry.json"
    publish(str(make_export(tmp_path / "exp", seed=0)), package=True, registry=str(reg))
    card = next((tmp_path / "weights").glob("*/README.md"))
    return reg, card


def files_in(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith(".lock"))


def test_a_failure_between_the_registry_and_the_card_changes_neither(fmnist_dir, tmp_path, monkeypatch):
    from training.evaluate_command import evaluate

    reg, card = published(tmp_path)
    before = {p: p.read_bytes() for p in (reg, card)}
    listing = files_in(tmp_path / "weights")
    real_replace = os.replace

    def crash_on_the_card(src, dst):
        if Path(dst).name == "README.md":
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(results.os, "replace", crash_on_the_card)
    with pytest.raises(zoo.ZooError, match="disk full \\(simulated\\); nothing was changed"):
        evaluate(encoder="yadim.tiny", data="fashion_mnist", root=str(fmnist_dir), registry=str(reg),
                 record=str(reg), k=5)
    assert {p: p.read_bytes() for p in (reg, card)} == before
    assert files_in(tmp_path / "weights") == listing  # no temporary file left behind
    monkeypatch.setattr(results.os, "replace", real_replace)
    result = evaluate(encoder="yadim.tiny", data="fashion_mnist", root=str(fmnist_dir), registry=str(reg),
                      record=str(reg), k=5)
    assert reg.read_bytes() != before[reg] and card.read_bytes() != before[card]
    assert f"{round(result['top1'], 4):.4f}" in card.read_text()


def test_bad_record_and_out_targets_give_one_error_line(fmnist_dir, tmp_path, capsys):
    folder = make_export(tmp_path / "exp", seed=0)
    other = make_export(tmp_path / "other", seed=1)
    assert main(["evaluate", "--encoder", str(folder), "--data", "fashion_mnist", "--record",
                 str(tmp_path / "missing.json")]) == 2
    assert "no such registry file or exported folder" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["evaluate", "--encoder", str(folder), "--data", "fashion_mnist", "--root", str(fmnist_dir),
                 "--k", "5", "--out", str(tmp_path / "a_file" / "r.json"), "--quiet", "true"]) == 2
    err = capsys.readouterr().err  # --quiet: without it each evaluation stage's final line comes first
    assert err.startswith("error: cannot write the results to") and err.count("\n") == 1
    with pytest.raises(zoo.ZooError, match="--record must be that folder"):
        results.record_result(str(folder), "x/knn", 0.5, None, record=str(other))
