"""The weights shipped inside the package: every entry loads offline, matches its sha256 and tells the truth."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.pretrained.licenses import PROJECT_LICENSE
from zoo.pretrained.weights_registry import PACKAGE_REGISTRY, WeightsRegistry

REGISTRY = WeightsRegistry([PACKAGE_REGISTRY])
ENTRIES = sorted(n for n, e in REGISTRY.entries.items() if e.kind == "package")  # release entries: test_releases
REPO_DIR = str(Path(__file__).resolve().parents[3])


def test_defaults_are_the_strongest_release_else_the_shipped_weights():
    """A method's bare name is its strongest released ImageNet encoder (by the top-1 its publisher reports); a
    method with no release (yadim) keeps its shipped Fashion-MNIST weights. CPC v2 has no ImageNet release that is
    still served: its default is the STL-10 one (96 px natural images, the closest to ImageNet of the two)."""
    assert set(REGISTRY.defaults) <= set(zoo.list_methods())
    for method, name in REGISTRY.defaults.items():
        entry = REGISTRY.get(name)
        assert entry.method == method
        releases = [e for e in REGISTRY.entries.values() if e.method == method and e.kind == "release"]
        imagenet = [e for e in releases if e.dataset == "imagenet"]
        if imagenet:
            assert entry is max(imagenet, key=lambda e: e.reported["value"])
        elif releases:
            assert (method, name) == ("cpc_v2", "cpc_v2.stl10")
        else:
            assert name == f"{method}.fashion_mnist"
    assert REGISTRY.defaults["yadim"] == "yadim.fashion_mnist"


def test_shipped_weights_stay_small():
    total = sum(f.stat().st_size for name in ENTRIES for f in REGISTRY.get(name).package_folder().iterdir())
    assert total <= 30 * 2**20, f"shipped weights take {total / 2**20:.1f} MiB (limit 30)"


@pytest.mark.parametrize("name", ENTRIES)
def test_every_shipped_entry_and_card_states_its_licence(name):
    import yaml

    entry = REGISTRY.get(name)
    assert entry.license == PROJECT_LICENSE, "weights trained by this project carry the project's licence"
    card = (entry.package_folder() / "README.md").read_text()
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == entry.license


@pytest.mark.parametrize("name", ENTRIES)
def test_shipped_entry_loads_and_its_card_says_where_and_how(name):
    entry = REGISTRY.get(name)
    assert entry.kind == "package", "no entry may point at a Hub repository that does not exist"
    encoder = zoo.load_encoder(name)
    assert not encoder.training and encoder.num_features == entry.num_features
    assert encoder.zoo_source["sha256"] == entry.sha256["model.safetensors"]
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        features = encoder(zoo.eval_transform(name)(images))
    assert features.shape == (2, entry.num_features) and torch.isfinite(features).all()
    card = zoo.get_card(name)
    assert "Shipped inside the contrastive-zoo package" in card and "not uploaded to the Hugging Face Hub" in card
    for fact in ("wall_seconds", "machine", f"training/recipes/{entry.method}/fashion_mnist.yaml", "epochs"):
        assert fact in card
    for value in entry.metrics.values():
        assert f"{value:.4f}" in card
    assert {"fashion_mnist/knn", "fashion_mnist/linear"} <= set(entry.metrics)


def test_torch_hub_and_load_encoder_agree_on_the_default_yadim():
    via_hub = torch.hub.load(REPO_DIR, "yadim", source="local")
    direct = zoo.load_encoder("yadim")
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    preprocess = zoo.eval_transform("yadim")
    with torch.no_grad():
        assert torch.equal(via_hub(preprocess(images)), direct(preprocess(images)))


@pytest.mark.slow
def test_fresh_process_loads_yadim_with_no_network():
    """HF_HUB_OFFLINE and an endpoint nobody listens on: the shipped weights need neither."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=os.devnull + "-nonexistent")
    code = "import zoo; e = zoo.load_encoder('yadim'); print(e.zoo_source['entry'], e.num_features)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["yadim.fashion_mnist", str(REGISTRY.get("yadim").num_features)]
