"""The repository's ``cards/`` folder: one card per weights registry entry, generated, never edited by hand.

``python -m training cards`` renders them (``training.release.cards_command``); these tests fail when the folder
is stale, when a shipped entry's card is not the one published in the package, and when a release entry's card
before the download says anything the conversion then contradicts.
"""

import difflib
import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch
from huggingface_hub import ModelCard

from tests.helpers.release_layouts import checkpoint
from training.cli import main
from training.release.cards_command import COMMAND, cards, rendered
from zoo.errors import ZooError
from zoo.pretrained.cards import shipped_prose, template_text
from zoo.pretrained.download import file_digests
from zoo.pretrained.exported import CARD, CONFIG
from zoo.pretrained.release_card import AFTER_DOWNLOAD, release_card
from zoo.pretrained.releases import install_release, release_folder
from zoo.pretrained.weights_registry import FORMAT, PACKAGE_REGISTRY, WeightsRegistry

REPO = Path(__file__).resolve().parents[3]
PACKAGE = WeightsRegistry([PACKAGE_REGISTRY])


def test_cards_folder_holds_exactly_the_generated_cards():
    want = rendered()
    assert sorted(want) == sorted([f"{n}.md" for n in PACKAGE.entries] + ["README.md"])
    assert len([e for e in PACKAGE.entries.values() if e.kind == "release"]) == 25
    have = sorted(p.name for p in (REPO / "cards").iterdir())
    assert have == sorted(want), f"cards/ does not match the registry: run `{COMMAND}`"
    for name, text in want.items():
        assert (REPO / "cards" / name).read_text(encoding="utf-8") == text, f"cards/{name} is stale: run `{COMMAND}`"


@pytest.mark.parametrize("name", sorted(n for n, e in PACKAGE.entries.items() if e.kind == "package"))
def test_shipped_entry_card_is_the_published_readme_with_its_prose(name):
    card = (REPO / "cards" / f"{name}.md").read_text(encoding="utf-8")
    assert card == (PACKAGE.entries[name].package_folder() / CARD).read_text(encoding="utf-8")
    prose = (template_text(f"entries/{name}.md") or "").strip()
    assert prose and prose in card
    assert "model-index:" in card and PACKAGE.entries[name].sha256["model.safetensors"] in card


def test_check_names_every_stale_missing_and_orphaned_card_then_the_command_repairs(tmp_path, capsys):
    out = tmp_path / "cards"
    shutil.copytree(REPO / "cards", out)
    (out / "yadim.fashion_mnist.md").write_text("edited by hand\n")
    (out / "swav.imagenet.md").unlink()
    (out / "gone.entry.md").write_text("an entry no longer in the registry\n")
    with pytest.raises(ZooError, match=r"out of date \(differs from the generator: yadim.fashion_mnist.md; missing: "
                                       r"swav.imagenet.md; no registry entry: gone.entry.md\): run `python -m "
                                       r"training cards`"):
        cards(check=True, out=str(out))
    assert main(["cards", "--check", "--out", str(out)]) == 2
    assert "is out of date (differs from the generator: yadim.fashion_mnist.md;" in capsys.readouterr().err
    assert main(["cards", "--out", str(out)]) == 0
    assert "2 written, 1 removed, 33 in all" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (REPO / "cards").iterdir())
    for p in out.iterdir():
        assert p.read_bytes() == (REPO / "cards" / p.name).read_bytes()
    assert main(["cards", "--check", "--out", str(out)]) == 0


def test_release_cards_state_no_machine_path_or_invented_digest():
    for name, entry in PACKAGE.entries.items():
        if entry.kind != "release":
            continue
        card = (REPO / "cards" / f"{name}.md").read_text(encoding="utf-8")
        assert f'zoo.load_encoder("{name}")' in card and entry.source["url"] in card
        assert f"sha256 `({AFTER_DOWNLOAD})`" in card and f"source file sha256: `({AFTER_DOWNLOAD})`" in card
        results = ModelCard(card, ignore_metadata_errors=False).data.eval_results  # the Hub's own parser
        assert [(r.metric_value, r.verified) for r in results] == [(entry.reported["value"], False)], name
        for leak in (str(REPO), str(Path.home()), "/tmp", "converting-"):
            assert leak not in card, (name, leak)


# one name per shape of entry: the encoder stated (ResNet, SwAV's small crops) or read from the file (AMDIM, CPC)
@pytest.mark.parametrize("name", ["moco_v2.imagenet", "swav.imagenet", "amdim.imagenet", "cpc_v2.stl10"])
def test_release_card_before_the_download_is_the_conversions_but_for_what_the_file_tells(name, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    real = PACKAGE.entries[name]
    ckpt, reference, size = checkpoint(real.source["format"])
    file = tmp_path / unquote(Path(urlsplit(real.source["url"]).path).name)  # named as a download is
    torch.save(ckpt, file)
    raw = real.to_json()
    raw["source"].pop("digest", None)  # the synthetic file is not the publisher's
    raw.pop("encoder", None)
    if real.source["format"] != "pl_bolts_cpc":
        with torch.no_grad():
            raw["num_features"] = int(reference(torch.zeros(1, 3, size, size)).shape[1])
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"format": FORMAT, "defaults": {}, "entries": {name: raw}}))
    entry = WeightsRegistry([registry]).entries[name]
    cert = install_release(entry, file, downloaded_from="a local file")
    converted = (release_folder(entry) / CARD).read_text(encoding="utf-8")
    assert f"sha256 `{cert['model_sha256']}`" in converted and f'zoo.load_encoder("{name}")' in converted
    assert cert["source_sha256"] == file_digests(file, ("sha256",))["sha256"]
    # as the package's entry does for the real file, state the synthetic file's input (its CPC grid is smaller)
    # and, where the package's entry states one, its encoder
    config = json.loads((release_folder(entry) / CONFIG).read_text())
    raw["input"] = config["input"]
    if real.encoder:
        raw["encoder"] = config["encoder"]
    registry.write_text(json.dumps({"format": FORMAT, "defaults": {}, "entries": {name: raw}}))
    entry = WeightsRegistry([registry]).entries[name]
    before = release_card(entry).splitlines()
    after = converted.splitlines()
    differ = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    changed = [(before[i1:i2], after[j1:j2]) for tag, i1, i2, j1, j2 in differ.get_opcodes() if tag != "equal"]
    assert changed, "the conversion knows more than the entry"
    for said, converted_lines in changed:
        assert said and all(AFTER_DOWNLOAD in line for line in said), (said, converted_lines)
    assert sum(AFTER_DOWNLOAD in line for line in before) >= 8


def test_entry_prose_applies_only_inside_the_package(tmp_path):
    folder = PACKAGE.entries["yadim.fashion_mnist"].package_folder()
    assert shipped_prose("yadim.fashion_mnist", folder).startswith("The zoo's default encoder")
    assert shipped_prose("yadim.fashion_mnist", tmp_path / "yadim.fashion_mnist") == ""
    assert shipped_prose("no-such-entry", folder.parent / "no-such-entry") == ""
