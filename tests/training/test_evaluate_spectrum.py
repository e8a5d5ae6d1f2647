"""``python -m training evaluate --protocol rankme|areq``: the label-free figures on any image folder and on the
named datasets' splits, recorded only when asked, and rendered on cards as what they are (not accuracies)."""

import json

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

import zoo
from tests.helpers.zoo_exports import make_export
from training.cli import main
from training.downstream.spectrum import alpha_req, alpha_req_fit
from training.pretrain.data import FashionMNISTDataModule
from zoo.images import read_image
from zoo.pretrained.weights_registry import PACKAGE_REGISTRY, WeightsRegistry


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("spectrum") / "tiny", seed=0)  # grey 32x32 input, 32 dims


def flat_folder(root, n=40):
    """``n`` RGB PNGs of assorted sizes directly in ``root`` (no class folders) and a text file that is none."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    for i in range(n):
        h, w = rng.integers(20, 50, 2)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    (root / "notes.txt").write_text("not an image")
    return sorted(root.glob("*.png"))


def one_by_one(encoder, paths):
    """Each image read and encoded alone (fp32), rows in path order: the reference the command must match."""
    preprocess = zoo.eval_transform(encoder)
    with torch.no_grad():
        return torch.cat([encoder(preprocess(read_image(p, 1)).unsqueeze(0)).float() for p in paths]).double()


def rankme_by_hand(features):
    s = np.linalg.svd(features.numpy(), compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


def run(args, capsys):
    rc = main(["evaluate", *args])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def test_a_flat_unlabelled_folder_gives_both_figures_of_its_images(export, tmp_path, capsys):
    paths = flat_folder(tmp_path / "flat")
    before = sorted(p.name for p in export.iterdir())
    reference = one_by_one(zoo.load_encoder(export), paths)
    rankme = run(["--encoder", str(export), "--data", str(tmp_path / "flat"), "--protocol", "rankme",
                  "--batch-size", "16"], capsys)
    assert (rankme["n"], rankme["dims"], rankme["data"], rankme["protocol"]) == (40, 32, "folder:flat", "rankme")
    assert rankme["rankme"] == pytest.approx(rankme_by_hand(reference), rel=1e-5)
    assert rankme["settings"] == {"eps": 1e-7, "centred": False, "max": 32}
    assert rankme["command"] == (f"python -m training evaluate --encoder {export} --data {tmp_path / 'flat'} "
                                 "--protocol rankme --batch-size 16")  # no kNN, probe or fine-tuning options
    out = tmp_path / "areq.json"
    areq = run(["--encoder", str(export), "--data", str(tmp_path / "flat"), "--protocol", "areq", "--out", str(out)],
               capsys)
    assert areq["areq"] == pytest.approx(alpha_req(reference), rel=1e-5) and areq["n"] == 40
    assert areq["settings"]["fit_ranks"] == [6, 100] and areq["settings"]["fitted_ranks"] == [6, alpha_req_fit(reference.float()).k_max]
    assert json.loads(out.read_text())["areq"] == areq["areq"] and not out.with_suffix(".png").exists()
    assert sorted(p.name for p in export.iterdir()) == before  # nothing recorded without --record
    assert "rankme" not in json.dumps(json.loads((export / "config.json").read_text())["metrics"])


def test_a_named_dataset_gives_the_figures_of_its_test_split_or_the_split_stated(export, fmnist_dir, capsys):
    encoder = zoo.load_encoder(export)
    dm = FashionMNISTDataModule(root=str(fmnist_dir))
    for split, images in (("test", dm.split("test").images), ("train", dm.split("train").images)):
        with torch.no_grad():
            reference = encoder(zoo.eval_transform(encoder)(images)).double()
        args = ["--encoder", str(export), "--data", "fashion_mnist", "--root", str(fmnist_dir), "--protocol",
                "rankme", *(["--split", split] if split == "train" else [])]
        result = run(args, capsys)
        assert result["n"] == len(images) == {"test": 40, "train": 96}[split]
        assert result["rankme"] == pytest.approx(rankme_by_hand(reference), rel=1e-5)
        assert result["images"] == f"the {split} split"


def test_record_writes_the_figure_and_its_command_into_the_card_as_no_accuracy(tmp_path, capsys):
    folder = make_export(tmp_path / "exp", seed=0)
    flat_folder(tmp_path / "flat")
    for protocol in ("rankme", "areq"):
        result = run(["--encoder", str(folder), "--data", str(tmp_path / "flat"), "--protocol", protocol,
                      "--record", str(folder)], capsys)
        config = json.loads((folder / "config.json").read_text())
        assert config["metrics"][f"folder:flat/{protocol}"] == round(result[protocol], 4)
        assert config["metric_commands"][f"folder:flat/{protocol}"] == result["command"]
    card = (folder / "README.md").read_text()
    results = ModelCard(card, ignore_metadata_errors=False).data.eval_results  # the Hub's own parser
    kinds = {r.metric_type: (r.task_type, r.metric_name) for r in results}
    assert kinds["rankme"][0] == kinds["alpha-req"][0] == "image-feature-extraction"
    assert kinds["rankme"][1].startswith("RankMe") and kinds["alpha-req"][1].startswith("alpha-ReQ")
    assert kinds["accuracy"][0] == "image-classification"  # the export's kNN figure stays an accuracy
    rows = [line for line in card.splitlines() if line.startswith("| folder:flat")]
    assert len(rows) == 2 and not any("accuracy" in row for row in rows)
    rankme = config["metrics"]["folder:flat/rankme"]
    assert any(f"| RankMe (effective rank; Garrido et al. 2023) | {rankme:.4f} |" in row for row in rows)


def test_every_shipped_card_carries_both_figures_measured_by_the_command():
    registry = WeightsRegistry([PACKAGE_REGISTRY])
    shipped = [e for e in registry.entries.values() if e.kind == "package"]
    assert len(shipped) == 7
    for entry in shipped:
        card = (entry.package_folder() / "README.md").read_text(encoding="utf-8")
        results = ModelCard(card, ignore_metadata_errors=False).data.eval_results
        figures = {r.metric_type: r.metric_value for r in results if r.task_type == "image-feature-extraction"}
        assert figures == {"rankme": entry.metrics["fashion_mnist/rankme"],
                           "alpha-req": entry.metrics["fashion_mnist/areq"]}, entry.name
        assert 1 <= figures["rankme"] <= entry.num_features and figures["alpha-req"] > 0
        for protocol in ("rankme", "areq"):
            command = (f"python -m training evaluate --encoder {entry.name} --data fashion_mnist "
                       f"--protocol {protocol}")
            assert entry.metric_commands[f"fashion_mnist/{protocol}"] == command and f"`{command}`" in card


def test_unreadable_images_and_options_a_protocol_does_not_take_give_one_error_line(export, tmp_path, capsys):
    flat_folder(tmp_path / "flat", n=12)
    (tmp_path / "flat" / "broken.png").write_bytes(b"not a png")
    base = ["evaluate", "--encoder", str(export), "--data", str(tmp_path / "flat"), "--protocol", "rankme"]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot decode image {tmp_path / 'flat' / 'broken.png'}") and err.count("\n") == 1
    assert "--skip-unreadable true" in err
    result = run([*base[1:], "--skip-unreadable", "true"], capsys)
    assert result["n"] == 12 and result["skipped_unreadable"] == 1
    refusals = [
        (["--split", "train"], "--split applies to the named datasets"),
        (["--baselines", "true"], "--baselines compares accuracies"),
        (["--record", str(export), "--split", "train"], "--record keeps test-split figures"),
        (["--protocol", "knn", "--split", "train"], "--split applies to rankme and areq"),
        (["--protocol", "rank"], "unknown protocol 'rank'; use one of knn, linear, finetune, rankme, areq"),
    ]
    for extra, message in refusals:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    tiny = tmp_path / "three"
    flat_folder(tiny, n=3)
    assert main(["evaluate", "--encoder", str(export), "--data", str(tiny), "--protocol", "areq"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
