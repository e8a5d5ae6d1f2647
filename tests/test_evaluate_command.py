"""``python -m training evaluate``: one frozen-feature path shared with the demo."""

import json

import zoo
from tests.zoo_exports import make_export
from training.cli import main
from training.downstream.frozen import evaluate_frozen, frozen_features
from training.pretrain.data import FashionMNISTDataModule


def test_demo_style_call_and_evaluate_command_give_identical_numbers(fmnist_dir, tmp_path):
    folder = make_export(tmp_path / "exp", seed=0)
    encoder = zoo.load_encoder(folder)
    dm = FashionMNISTDataModule(root=str(fmnist_dir))
    dm.setup()
    demo = evaluate_frozen(frozen_features(encoder, zoo.eval_transform(encoder)), dm)  # what demo.py calls
    for protocol in ("knn", "linear"):
        out = tmp_path / f"{protocol}.json"
        assert main(["evaluate", "--encoder", str(folder), "--data", "fashion_mnist", "--root", str(fmnist_dir),
                     "--protocol", protocol, "--out", str(out)]) == 0
        assert json.loads(out.read_text())["top1"] == demo[protocol]
