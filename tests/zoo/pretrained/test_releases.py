"""Release entries: ``zoo.load_encoder(NAME)`` downloads a publisher's checkpoint, checks it, converts and caches it.

Nothing here touches the network: a loopback server (``tests/helpers/release_server.py``) serves checkpoints built in each
release format's exact layout (``tests/helpers/release_layouts.py``) at the publisher's URL path, reached through
``ZOO_MIRROR``. The package's own entries are used as they are, except for what a synthetic file cannot share with
the real one: its digest (recomputed, of the same kind), its size (ResNet-18 or a small AMDIM/CPC network instead of
the released architecture) and so its feature count. ``ZOO_ONLINE_TESTS=1`` also downloads every real file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

import zoo
from tests.helpers.release_layouts import BUILDERS, checkpoint
from tests.helpers.release_server import ReleaseServer
from training.cli import main
from zoo.errors import ZooError
from zoo.pretrained.convert import FORMATS
from zoo.pretrained.download import Digest, file_digests
from zoo.pretrained.weights_registry import FORMAT, PACKAGE_REGISTRY, WeightsRegistry

PACKAGE = WeightsRegistry([PACKAGE_REGISTRY])
RELEASES = {n: e for n, e in PACKAGE.entries.items() if e.kind == "release"}
ONE_PER_FORMAT = {e.source["format"]: n for n, e in sorted(RELEASES.items(), reverse=True)}  # first name wins
REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def server(tmp_path, monkeypatch):
    srv = ReleaseServer()
    monkeypatch.setenv("ZOO_MIRROR", srv.url)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    for var in ("ZOO_OFFLINE", "HF_HUB_OFFLINE", "ZOO_KEEP_DOWNLOADS", "ZOO_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    yield srv
    srv.stop()


def serve(srv: ReleaseServer, tmp_path: Path, name: str, fmt_kwargs=None, **changes):
    """Serve a synthetic file for package entry ``name`` and write a registry holding that entry (its digest, of
    the publisher's kind, recomputed for the synthetic file); returns (registry path, reference, size, bytes)."""
    entry = RELEASES[name]
    ckpt, reference, size = checkpoint(entry.source["format"], **(fmt_kwargs or {}))
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    data = buffer.getvalue()
    srv.files[urlsplit(entry.source["url"]).path] = data
    raw = entry.to_json()
    raw.pop("encoder", None)  # the synthetic file is smaller than the release: its feature count is its own
    with torch.no_grad():
        raw["num_features"] = int(reference(torch.zeros(1, 3, size, size)).shape[1]) if entry.source["format"] \
            != "pl_bolts_cpc" else 2048
    if "digest" in entry.source:
        stated = Digest.parse(entry.source["digest"], name)
        actual = hashlib.new(stated.algorithm, data).hexdigest()
        raw["source"]["digest"] = f"{stated.algorithm}:{actual[:len(stated.value)]}"
    raw.update(changes)
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"format": FORMAT, "defaults": {}, "entries": {name: raw}}))
    return path, reference, size, data


def features(encoder, reference, size):
    torch.manual_seed(1)
    images = torch.rand(2, 3, size, size)
    x = zoo.eval_transform(encoder)(images)
    with torch.no_grad():
        return encoder(x), reference(x)


@pytest.mark.parametrize("fmt", sorted(ONE_PER_FORMAT))
def test_each_format_loads_by_name_then_from_the_cache_alone(server, tmp_path, fmt, capsys):
    name = ONE_PER_FORMAT[fmt]
    registry, reference, size, data = serve(server, tmp_path, name)
    encoder = zoo.load_encoder(name, registry=registry)
    got, want = features(encoder, reference, size)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    cert = encoder.zoo_config["conversion"]
    assert cert["source_url"] == RELEASES[name].source["url"] and cert["format"] == fmt
    assert cert["source_sha256"] == hashlib.sha256(data).hexdigest()
    assert cert["downloaded_from"].startswith(server.url) and cert["package_version"] == zoo.__version__
    assert encoder.zoo_config["license"] == RELEASES[name].license
    assert encoder.zoo_config["reported"]["value"] == RELEASES[name].reported["value"]
    card = zoo.get_card(name, registry=registry)
    assert cert["source_sha256"] in card and "keys dropped:" in card and RELEASES[name].source["url"] in card
    assert not any((tmp_path / "cache" / "downloads").rglob("*")), "the download is deleted after conversion"
    server.stop()  # a second load never touches the network
    again = zoo.load_encoder(name, registry=registry)
    assert torch.equal(features(again, reference, size)[0], got)
    assert server.gets(urlsplit(RELEASES[name].source["url"]).path) == 1
    assert (capsys.readouterr().err.count("forbids commercial use") == 1) == RELEASES[name].license.startswith("cc-by-nc")


def test_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    registry, reference, size, data = serve(server, tmp_path, "moco_v2.imagenet")
    path = urlsplit(RELEASES["moco_v2.imagenet"].source["url"]).path
    server.drop_after = len(data) // 2
    with pytest.raises(ZooError, match=r"HTTP 503; .* bytes are kept in .*\.part and the next call resumes"):
        zoo.load_encoder("moco_v2.imagenet", registry=registry)
    kept = next((tmp_path / "cache" / "downloads").rglob("*.part")).stat().st_size
    assert 0 < kept <= len(data) // 2  # what arrived, up to the last whole chunk written
    server.status = None
    encoder = zoo.load_encoder("moco_v2.imagenet", registry=registry)
    assert server.requests[-1] == (path, f"bytes={kept}-")
    assert encoder.zoo_config["conversion"]["source_sha256"] == hashlib.sha256(data).hexdigest()
    got, want = features(encoder, reference, size)
    assert torch.allclose(got, want, atol=1e-5)


def test_a_digest_other_than_the_publishers_is_refused_and_nothing_is_kept(server, tmp_path):
    registry, _, _, data = serve(server, tmp_path, "moco_v2.imagenet")
    raw = json.loads(registry.read_text())
    raw["entries"]["moco_v2.imagenet"]["source"]["digest"] = "md5:00000000"
    registry.write_text(json.dumps(raw))
    actual = hashlib.md5(data).hexdigest()
    with pytest.raises(ZooError) as err:
        zoo.load_encoder("moco_v2.imagenet", registry=registry)
    assert str(err.value) == (f"moco_v2.imagenet: the file from {server.url}"
                              f"{urlsplit(RELEASES['moco_v2.imagenet'].source['url']).path} has md5 {actual}, but its "
                              "publisher states md5 prefix 00000000; it was deleted and nothing was cached")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix != ".lock"]


@pytest.mark.slow
def test_two_processes_loading_one_entry_download_it_once(server, tmp_path):
    registry, _, _, _ = serve(server, tmp_path, "swav.imagenet")
    server.delay_s = 1.0  # the first holds the lock while the second arrives
    code = (f"import zoo; e = zoo.load_encoder('swav.imagenet', registry={str(registry)!r}); "
            "print(e.zoo_config['conversion']['model_sha256'])")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0]
    assert server.gets(urlsplit(RELEASES["swav.imagenet"].source["url"]).path) == 1


class FullDisk(io.FileIO):
    """A file that takes 1000 bytes, then fails as a full disk does."""

    def write(self, data) -> int:
        if self.tell() + len(data) > 1000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_a_full_disk_while_downloading_is_one_line_and_leaves_nothing(server, tmp_path, monkeypatch):
    registry, _, _, _ = serve(server, tmp_path, "simclr.imagenet")
    monkeypatch.setattr("zoo.pretrained.download.open", lambda path, mode: FullDisk(path, "a"), raising=False)
    with pytest.raises(ZooError, match=r"^no space left on the device of .* while downloading "
                                       r"model_final_checkpoint_phase799.torch from http://127.0.0.1:\d+/vissl/"):
        zoo.load_encoder("simclr.imagenet", registry=registry)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_a_full_disk_while_converting_is_one_line_and_caches_nothing(server, tmp_path, monkeypatch):
    registry, reference, size, _ = serve(server, tmp_path, "byol.imagenet")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", full)
    with pytest.raises(ZooError, match=r"^no space left on the device of .*releases while converting byol.imagenet; "
                                       r"nothing was cached \(the checked download stays in .*\): free some space"):
        zoo.load_encoder("byol.imagenet", registry=registry)
    assert not list((tmp_path / "cache" / "releases").iterdir())  # no folder, no staging copy
    monkeypatch.undo()
    monkeypatch.setenv("ZOO_MIRROR", server.url)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    server.stop()  # the checked download is converted without fetching it again
    assert torch.allclose(*features(zoo.load_encoder("byol.imagenet", registry=registry), reference, size),
                          atol=1e-5)


def test_404_is_one_line_and_redirects_are_followed(server, tmp_path):
    registry, reference, size, data = serve(server, tmp_path, "amdim.imagenet")
    path = urlsplit(RELEASES["amdim.imagenet"].source["url"]).path
    server.files.pop(path)
    with pytest.raises(ZooError, match=rf"^amdim_ndf320_rkhs2560_rd10.pth: {server.url}{path} answered 404 Not Found"):
        zoo.load_encoder("amdim.imagenet", registry=registry)
    server.redirects[path] = "/moved/amdim.pth"
    server.files["/moved/amdim.pth"] = data
    encoder = zoo.load_encoder("amdim.imagenet", registry=registry)
    assert torch.allclose(*features(encoder, reference, size), atol=1e-5)


@pytest.mark.parametrize("variable", ["ZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_an_uncached_entry_says_how_to_fetch_it_and_a_cached_one_loads(server, tmp_path, monkeypatch,
                                                                                variable, capsys):
    registry, reference, size, data = serve(server, tmp_path, "moco_v2.imagenet")
    monkeypatch.setenv(variable, "1")
    url = RELEASES["moco_v2.imagenet"].source["url"]
    with pytest.raises(ZooError) as err:
        zoo.load_encoder("moco_v2.imagenet", registry=registry)
    assert str(err.value) == (f"moco_v2.imagenet is not in the zoo cache ({tmp_path / 'cache' / 'releases'}"
                              f"/moco_v2.imagenet) and {variable}=1 forbids the network: fetch {url} by hand, then "
                              "run `python -m training import-legacy FILE --release moco_v2.imagenet`")
    assert server.requests == []
    fetched = tmp_path / "moco_v2_800ep_pretrain.pth.tar"  # what the user fetched by hand
    fetched.write_bytes(data)
    assert main(["import-legacy", str(fetched), "--release", "moco_v2.imagenet", "--registry", str(registry)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cache" / "releases" / "moco_v2.imagenet")
    encoder = zoo.load_encoder("moco_v2.imagenet", registry=registry)
    assert torch.allclose(*features(encoder, reference, size), atol=1e-5) and server.requests == []
    assert fetched.exists(), "a hand-fetched file is the user's: it is not deleted"


def test_a_tampered_cache_is_caught(server, tmp_path):
    registry, *_ = serve(server, tmp_path, "moco_v2.imagenet")
    zoo.load_encoder("moco_v2.imagenet", registry=registry)
    weights = tmp_path / "cache" / "releases" / "moco_v2.imagenet" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ZooError, match=r"moco_v2.imagenet: the cached model.safetensors has sha256 [0-9a-f]{64}, but "
                                       r"its conversion certificate records [0-9a-f]{64}; .* delete "):
        zoo.load_encoder("moco_v2.imagenet", registry=registry)


def test_a_file_that_is_not_the_stated_encoder_is_refused(server, tmp_path):
    registry, *_ = serve(server, tmp_path, "simclr.imagenet", encoder=RELEASES["simclr.imagenet"].encoder)
    with pytest.raises(ZooError, match=r"holds the encoder .*'arch': 'resnet18'.*, but its release entry states "
                                       r".*'arch': 'resnet50'"):
        zoo.load_encoder("simclr.imagenet", registry=registry)
    assert not (tmp_path / "cache" / "releases" / "simclr.imagenet").exists()


def test_a_users_registry_adds_release_entries_and_the_listing_shows_them(server, tmp_path, monkeypatch, capsys):
    registry, reference, size, _ = serve(server, tmp_path, "swav.imagenet.lightly")
    raw = json.loads(registry.read_text())
    mine = raw["entries"].pop("swav.imagenet.lightly")
    mine["source"]["url"] = "https://files.example.org/lab/swav-lightly.ckpt"
    server.files["/lab/swav-lightly.ckpt"] = server.files.pop(urlsplit(RELEASES["swav.imagenet.lightly"]
                                                                      .source["url"]).path)
    raw["entries"]["swav.imagenet.mylab"] = mine
    registry.write_text(json.dumps(raw))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))  # layered on the package registry
    assert main(["releases", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(RELEASES) | {"swav.imagenet.mylab"} == set(rows)
    assert rows["swav.imagenet.mylab"]["cached"] is False and rows["moco_v2.imagenet"]["digest"] == "md5 prefix"
    assert 90e6 < rows["moco_v2.imagenet"]["size_bytes"] < 100e6  # a ResNet-50 trunk in float32, counted
    encoder = zoo.load_encoder("swav.imagenet.mylab")
    assert torch.allclose(*features(encoder, reference, size), atol=1e-5)
    assert main(["releases"]) == 0
    table = capsys.readouterr().out
    assert "swav.imagenet.mylab" in table and "moco_v2.imagenet " in table and f"cache: {tmp_path / 'cache'}" in table


def test_without_weights_a_release_builds_its_stated_architecture_without_a_download(server, tmp_path):
    encoder = zoo.load_encoder("moco_v2.imagenet", pretrained=False)
    assert encoder.num_features == 2048 and encoder.zoo_source["pretrained"] is False and server.requests == []
    assert zoo.eval_transform("moco_v2.imagenet").size == (224, 224) and server.requests == []


def test_the_package_release_entries_are_complete_and_cited():
    methods_with_a_release = {e.method for e in RELEASES.values()}
    assert methods_with_a_release == set(zoo.list_methods()) - {"yadim"}
    for name, entry in RELEASES.items():
        assert name.startswith(f"{entry.method}.{entry.dataset}"), name
        assert entry.source["url"].startswith("https://") and entry.source["format"] in FORMATS
        assert entry.source["cited"] and entry.reported["source"] and entry.reported["protocol"]
        assert entry.license in ("mit", "apache-2.0", "cc-by-nc-4.0")
        assert entry.source["format"] in BUILDERS, "every release format has an end-to-end test above"
    assert {n: e.source["digest"] for n, e in RELEASES.items() if "digest" in e.source} == {
        "moco_v2.imagenet": "md5:a04e12f8", "moco_v2.imagenet.200ep": "md5:59fd9945",
        "moco_v2.imagenet.moco_v1": "md5:b251726a", "moco_v2.imagenet.mmselfsup": "sha256:b6d23c86",
        "simclr.imagenet.mmselfsup": "sha256:85fcc4de", "byol.imagenet": "sha256:de817331",
        "swav.imagenet.mmselfsup": "sha256:5b3fc7fc"}
    for entry in RELEASES.values():  # an OpenMMLab file name ends with its sha256 prefix
        if entry.source["format"] == "mmselfsup":
            assert entry.source["url"].endswith(f"-{entry.source['digest'].split(':')[1]}.pth")


@pytest.mark.skipif(os.environ.get("ZOO_ONLINE_TESTS") != "1",
                    reason="downloads every release (GBs) from its publisher; set ZOO_ONLINE_TESTS=1 to run it")
@pytest.mark.parametrize("name", sorted(RELEASES))
def test_online_each_release_downloads_and_matches_its_publishers_digest(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_MIRROR", raising=False)
    monkeypatch.setenv("ZOO_KEEP_DOWNLOADS", "1")
    encoder = zoo.load_encoder(name, progress=False)
    cert = encoder.zoo_config["conversion"]
    kept = next(p for p in (tmp_path / "cache" / "downloads").rglob("*") if p.is_file())
    assert file_digests(kept)["sha256"] == cert["source_sha256"]
    assert encoder.num_features == RELEASES[name].num_features


def test_the_docs_list_the_release_entries_as_the_registry_has_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "empty"))  # sizes as counted, not as one machine cached them
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    assert main(["releases", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    page = (REPO / "docs" / "releases.md").read_text()
    block = page.split("<!-- release-table:", 1)[1].split("\n", 1)[1].split("<!-- /release-table -->")[0]
    assert block.strip() == table, \
        "docs/releases.md's release table is stale: paste `python -m training releases --markdown`"


def test_the_progress_bar_shows_only_when_asked_or_on_a_terminal(server, tmp_path, capsys, monkeypatch):
    registry, *_ = serve(server, tmp_path, "simclr.imagenet.lightly")
    zoo.load_encoder("simclr.imagenet.lightly", registry=registry)  # stderr is no terminal under pytest
    assert "%|" not in capsys.readouterr().err
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache2"))
    zoo.load_encoder("simclr.imagenet.lightly", registry=registry, progress=True)
    bar = capsys.readouterr().err
    assert "epoch=99-step=500400.ckpt" in bar and "100%|" in bar


def test_an_unwritable_cache_is_one_line(server, tmp_path, monkeypatch):
    registry, *_ = serve(server, tmp_path, "moco_v2.imagenet")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "file" / "cache"))  # a path under a file: never creatable
    with pytest.raises(ZooError, match=r"^cannot create .*/file/cache/locks in the zoo cache \(Not a directory\); "
                                       r"point ZOO_CACHE at a writable folder$"):
        zoo.load_encoder("moco_v2.imagenet", registry=registry)
