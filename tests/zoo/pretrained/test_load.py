"""publish -> weights registry -> zoo.load_encoder, through a local directory hub and the package layout.

Everything here is offline: the local hub is git repositories in a temporary folder, registries are temporary
files. The Hugging Face Hub path (upload stub + olah) is in test_zoo_hub.py.
"""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tests.helpers.zoo_exports import make_export, outputs
from training.release.publish import publish
from zoo.errors import UnknownNameError, ZooError
from zoo.pretrained.weights_registry import WeightsRegistry


@pytest.fixture()
def hub(tmp_path):
    """A local hub with yadim.tiny published twice (seed 0 then seed 1); returns paths and both revisions."""
    reg = tmp_path / "registry.json"
    first = publish(str(make_export(tmp_path / "exp0", seed=0)), repo_id="zoo/yadim-tiny", to=str(tmp_path / "hub"),
                    registry=str(reg))
    old_registry = tmp_path / "registry-old.json"
    shutil.copy(reg, old_registry)
    second = publish(str(make_export(tmp_path / "exp1", seed=1)), repo_id="zoo/yadim-tiny", to=str(tmp_path / "hub"),
                     registry=str(reg))
    return dict(reg=reg, old_reg=old_registry, old=first["revision"], new=second["revision"], root=tmp_path)


def test_local_hub_round_trip_gives_identical_outputs_and_pins_revisions(hub):
    root = hub["root"]
    new = zoo.load_encoder("yadim.tiny", registry=hub["reg"])
    assert not new.training
    assert torch.equal(outputs(new), outputs(zoo.load_encoder(root / "exp1")))
    assert new.zoo_source["revision"] == hub["new"] != hub["old"]
    # the default alias names the same entry
    assert torch.equal(outputs(zoo.load_encoder("yadim", registry=hub["reg"])), outputs(new))
    # a registry pinned to the first commit still returns the first weights after the newer commit
    old = zoo.load_encoder("yadim.tiny", registry=hub["old_reg"])
    assert torch.equal(outputs(old), outputs(zoo.load_encoder(root / "exp0")))
    assert not torch.equal(outputs(old), outputs(new))


def test_pretrained_false_is_the_same_architecture_with_other_weights(hub):
    trained = zoo.load_encoder("yadim.tiny", registry=hub["reg"])
    random = zoo.load_encoder("yadim.tiny", pretrained=False, registry=hub["reg"])
    assert random.zoo_source["pretrained"] is False and trained.zoo_source["pretrained"] is True
    assert trained.state_dict().keys() == random.state_dict().keys()
    assert not torch.equal(outputs(trained), outputs(random))


def test_tampered_package_file_fails_the_sha256_check(tmp_path):
    reg = tmp_path / "weights" / "registry.json"
    publish(str(make_export(tmp_path / "exp", seed=0)), package=True, registry=str(reg))
    assert (tmp_path / "weights" / "yadim.tiny" / "model.safetensors").is_file()
    zoo.load_encoder("yadim.tiny", registry=reg)
    weights = tmp_path / "weights" / "yadim.tiny" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ZooError, match=r"model.safetensors has sha256 [0-9a-f]{64}, but the weights registry expects"):
        zoo.load_encoder("yadim.tiny", registry=reg)


def test_strict_load_rejects_a_mismatched_state_dict(tmp_path):
    folder = make_export(tmp_path / "exp", seed=0)
    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["ndf"] = 16  # the weights were saved for ndf=8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooError, match=r"does not match the encoder \(strict load\): .*wrong shapes"):
        zoo.load_encoder(folder)
    config["encoder"]["ndf"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    state = load_file(folder / "model.safetensors")
    save_file({**state, "extra.weight": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(ZooError, match=r"strict load\): unexpected \['extra.weight'\]"):
        zoo.load_encoder(folder)


def test_card_is_a_valid_hub_model_card_with_the_five_parts(hub):
    from huggingface_hub import ModelCard

    text = zoo.get_card("yadim.tiny", registry=hub["reg"])
    card = ModelCard(text)
    assert card.data.library_name == "contrastive-zoo" and card.data.license == "apache-2.0"
    assert card.data.datasets == ["zalando-datasets/fashion_mnist"]
    assert card.data.eval_results[0].metric_type == "accuracy" and card.data.eval_results[0].metric_value == 0.51
    assert "| (2) encoder | `amdim` |" in text and "Local directory hub" in text


def test_list_encoders_and_eval_transform_of_a_name(hub):
    from PIL import Image

    assert zoo.list_encoders(registry=hub["reg"]) == ["yadim", "yadim.tiny"]
    assert zoo.list_encoders("*.tiny", registry=hub["reg"]) == ["yadim.tiny"]
    by_name = zoo.eval_transform("yadim.tiny", registry=hub["reg"])
    encoder = zoo.load_encoder("yadim.tiny", registry=hub["reg"])
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(by_name(images), zoo.eval_transform(encoder)(images))
    # a torchvision-style transform: PIL image in, (C, H, W) out, equal to the batched path
    pil = Image.fromarray(images[0, 0].numpy(), mode="L")
    assert torch.allclose(by_name(pil), by_name(images)[0], atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    ("yadm", r"unknown pretrained encoder 'yadm'.*did you mean 'yadim'"),
    ("hf-hub:", "malformed id"),
    ("hf-hub:just-a-name", "not of the form ORG/NAME"),
    ("hf-hub:org/name@", r"nothing after '@'"),
    ("hf-hub:a/b/c", "not of the form ORG/NAME"),
    ("org/name", r"no such directory\); for a Hub repo write 'hf-hub:org/name'"),
])
def test_bad_names_and_ids_each_give_one_clear_error(hub, bad, message):
    with pytest.raises(ZooError, match=message):
        zoo.load_encoder(bad, registry=hub["reg"])


def test_unknown_name_error_is_also_a_key_error(hub):
    with pytest.raises(UnknownNameError):
        zoo.load_encoder("nope", registry=hub["reg"])


def test_missing_revision_and_revision_on_a_pinned_entry(hub):
    data = json.loads(hub["reg"].read_text())
    data["entries"]["yadim.tiny"]["source"]["revision"] = "0" * 40
    hub["reg"].write_text(json.dumps(data))
    with pytest.raises(ZooError, match=r"revision '0{40}' not found in zoo/yadim-tiny"):
        zoo.load_encoder("yadim.tiny", registry=hub["reg"])
    with pytest.raises(ZooError, match="pinned to revision"):
        zoo.load_encoder("yadim.tiny", revision=hub["old"], registry=hub["reg"])


def test_wrong_input_channels_or_size_is_a_clear_error(hub):
    encoder = zoo.load_encoder("yadim.tiny", registry=hub["reg"])
    with pytest.raises(ZooError, match="expects 1 input channel"):
        encoder(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ZooError, match="expects 32x32 inputs"):
        encoder(torch.zeros(2, 1, 28, 28))


def test_registry_refuses_a_name_defined_twice_and_malformed_files(hub, tmp_path):
    with pytest.raises(ZooError, match="defined in both"):
        WeightsRegistry([hub["reg"], hub["old_reg"]])
    with pytest.raises(ZooError, match="weights registry .*missing.json does not exist"):
        zoo.load_encoder("yadim", registry=tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ZooError, match="is not valid JSON"):
        zoo.load_encoder("yadim", registry=bad)
    data = json.loads(hub["reg"].read_text())
    del data["entries"]["yadim.tiny"]["sha256"]["model.safetensors"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ZooError, match="sha256 of model.safetensors is missing"):
        zoo.load_encoder("yadim", registry=bad)


def test_publish_refuses_bad_destinations_and_leaves_no_temporary_files(tmp_path):
    folder = make_export(tmp_path / "exp", seed=0)
    with pytest.raises(ZooError, match="choose one destination"):
        publish(str(folder), registry=str(tmp_path / "r.json"))
    with pytest.raises(ZooError, match="choose one destination"):
        publish(str(folder), repo_id="a/b", package=True, registry=str(tmp_path / "r.json"))
    with pytest.raises(ZooError, match="not of the form ORG/NAME"):
        publish(str(folder), repo_id="a", to=str(tmp_path / "hub"), registry=str(tmp_path / "r.json"))
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ZooError, match="not a readable safetensors file"):
        publish(str(folder), repo_id="a/b", to=str(tmp_path / "hub"), registry=str(tmp_path / "r.json"))
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "hub").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_publish_cli_prints_the_commit(tmp_path, capsys):
    from training.cli import main

    folder = make_export(tmp_path / "exp", seed=0)
    rc = main(["publish", str(folder), "--repo_id", "zoo/cli", "--to", str(tmp_path / "hub"),
               "--registry", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    revision = json.loads((tmp_path / "r.json").read_text())["entries"]["yadim.tiny"]["source"]["revision"]
    assert rc == 0 and revision in out
    assert main(["publish", str(tmp_path / "missing"), "--package", "true"]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_offline_with_nothing_cached_fails_fast_and_clearly(tmp_path):
    code = ("import time, zoo\nstart = time.perf_counter()\n"
            "try:\n    zoo.load_encoder('hf-hub:zoo/never-downloaded@main')\n"
            "except zoo.ZooError as err:\n    print(f'{time.perf_counter() - start:.3f}', err)\n")
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    seconds, _, message = proc.stdout.strip().partition(" ")
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message, proc.stderr
    assert float(seconds) < 2.0, f"the offline error took {seconds} s inside load_encoder"


@pytest.mark.slow
def test_concurrent_publishers_do_not_lose_registry_entries(hub, tmp_path):
    """Two processes recording 100 entries each into one registry file: all 200 survive (lock + atomic rename).
    Without the lock, read-modify-write races lost entries here (165 of 200 in one run)."""
    reg = tmp_path / "shared.json"
    entry = json.loads(hub["reg"].read_text())["entries"]["yadim.tiny"]
    code = ("import json, sys\nfrom zoo.pretrained.weights_registry import record_entry\nentry = json.loads(sys.argv[2])\n"
            "for i in range(100):\n    record_entry(sys.argv[1], f'{sys.argv[3]}.{i}', entry)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(reg), json.dumps(entry), prefix])
             for prefix in ("first", "second")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(WeightsRegistry([reg]).entries) == 200
