"""Malformed config.json, truncated safetensors and wrong-shaped tensors: load_encoder raises ZooError, always."""

import json
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tests.helpers.zoo_exports import make_export, outputs
from zoo.errors import ZooError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("fuzz") / "exp", seed=0)


def copy_of(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "copy")


@pytest.mark.parametrize("text", [
    b"", b"\xff\xfe not utf-8", b"[1, 2]", b"null", b'{"format": "contrastive-zoo/encoder@1"}', b"{" * 5000,
])
def test_config_that_is_not_a_config(folder, tmp_path, text):
    bad = copy_of(folder, tmp_path)
    (bad / "config.json").write_bytes(text)
    with pytest.raises(ZooError):
        zoo.load_encoder(bad)


@pytest.mark.parametrize("path, value", [
    (("num_features",), "32"), (("num_features",), 0), (("input", "size"), [0, 32]), (("input", "size"), [32]),
    (("input", "channels"), 0), (("input", "mean"), [0.5, 0.5]), (("encoder", "name"), "amdimm"),
    (("encoder", "ndf"), "8"), (("encoder", "bogus"), 1), (("format",), "contrastive-zoo/encoder@9"),
    (("method",), []), (("input",), None), (("encoder", "ndf"), 10 ** 6),  # 10^6 filters: refused before allocating
])
def test_config_with_a_wrong_field(folder, tmp_path, path, value):
    bad = copy_of(folder, tmp_path)
    config = json.loads((bad / "config.json").read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooError):
        zoo.load_encoder(bad)


def test_random_byte_mutations_of_the_config(folder, tmp_path):
    """200 seeded single-byte mutations: each one loads the same encoder or raises ZooError, nothing else."""
    original = (folder / "config.json").read_bytes()
    expected = outputs(zoo.load_encoder(folder))
    rng = random.Random(0)
    bad = copy_of(folder, tmp_path)
    raised = 0
    for _ in range(200):
        data = bytearray(original)
        data[rng.randrange(len(data))] = rng.randrange(256)
        (bad / "config.json").write_bytes(bytes(data))
        try:
            encoder = zoo.load_encoder(bad)
        except ZooError:
            raised += 1
            continue
        assert encoder.num_features == 32 and outputs(encoder).shape == expected.shape
    assert raised > 50


@pytest.mark.parametrize("keep", [0, 1, 7, 8, 20, 200, 0.5, -1])
def test_truncated_safetensors(folder, tmp_path, keep):
    bad = copy_of(folder, tmp_path)
    data = (bad / "model.safetensors").read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    (bad / "model.safetensors").write_bytes(data[:cut])
    with pytest.raises(ZooError, match="safetensors"):
        zoo.load_encoder(bad)


def test_wrong_shaped_and_missing_tensors(folder, tmp_path):
    bad = copy_of(folder, tmp_path)
    state = load_file(bad / "model.safetensors")
    name = sorted(state)[0]
    float_name = next(k for k in sorted(state) if state[k].is_floating_point())
    for broken in ({**state, name: torch.zeros(3)}, {k: v for k, v in state.items() if k != name},
                   {**state, name: state[name].reshape(1, -1)},
                   {**state, float_name: state[float_name].to(torch.int64)}):  # an integer tensor in a float slot
        save_file(broken, bad / "model.safetensors")
        with pytest.raises(ZooError, match="strict load"):
            zoo.load_encoder(bad)


class _Marker:
    """Unpickling this writes a file: evidence that code from a downloaded file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_nothing_in_a_downloaded_folder_but_config_and_safetensors_is_read(folder, tmp_path):
    """A repo can carry Python files and pickles beside the weights; loading never imports or unpickles them."""
    bad = copy_of(folder, tmp_path)
    marker = tmp_path / "code-ran"
    (bad / "modeling.py").write_text(f"open({str(marker)!r}, 'w')\n")
    (bad / "__init__.py").write_text("from . import modeling\n")
    torch.save({"state_dict": _Marker(marker)}, bad / "pytorch_model.bin")
    torch.save(_Marker(marker), bad / "model.pt")
    assert torch.equal(outputs(zoo.load_encoder(bad)), outputs(zoo.load_encoder(folder)))
    assert not marker.exists()
