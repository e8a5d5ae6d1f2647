"""Publish through the Hub STUB with the real huggingface_hub client, then download through a real olah mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.hub_servers import HubStub, OlahServer
from zoo.pretrained import local_hub

REPO = "org/tiny-encoder"
WEIGHTS = bytes(range(256)) * 40
OLD_CONFIG = b'{"arch": "resnet18", "dim": 16}\n'
NEW_CONFIG = b'{"arch": "resnet18", "dim": 32}\n'

pytestmark = pytest.mark.slow  # servers in other processes: left out of `make test-quick`


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Two ``upload_folder`` commits through the stub: both files, then a changed config.json only."""
    from huggingface_hub import HfApi

    base = tmp_path_factory.mktemp("hub")
    root, folder = base / "root", base / "upload"
    folder.mkdir()
    (folder / "config.json").write_bytes(OLD_CONFIG)
    (folder / "model.safetensors").write_bytes(WEIGHTS)
    with HubStub(root) as stub:
        api = HfApi(endpoint=stub.url, token="any")
        repo_url = api.create_repo(REPO, exist_ok=True)
        first = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="first")
        (folder / "model.safetensors").unlink()
        (folder / "config.json").write_bytes(NEW_CONFIG)
        api.create_repo(REPO, exist_ok=True)  # exists now: the stub answers 409, which exist_ok accepts
        second = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="second")
    return dict(root=root, stub=stub, repo_url=repo_url, first=first, second=second)


def test_upload_folder_commits_into_the_local_hub(published):
    root, first, second = published["root"], published["first"], published["second"]
    assert published["repo_url"].repo_id == REPO
    assert first.oid != second.oid
    assert second.oid == local_hub.resolve_revision(root, REPO)
    assert first.oid == local_hub.resolve_revision(root, REPO, first.oid)
    assert second.repo_url.repo_id == REPO and second.commit_url.endswith(f"/commit/{second.oid}")

    assert local_hub.read_file(root, REPO, first.oid, "config.json") == OLD_CONFIG
    assert local_hub.read_file(root, REPO, first.oid, "model.safetensors") == WEIGHTS
    assert local_hub.read_file(root, REPO, "main", "config.json") == NEW_CONFIG
    assert local_hub.read_file(root, REPO, "main", "model.safetensors") == WEIGHTS  # kept from the parent

    git_dir = local_hub.repo_path(root, REPO)
    parent = subprocess.run(["git", "rev-parse", f"{second.oid}^"], capture_output=True, text=True,
                            env={**os.environ, "GIT_DIR": str(git_dir)}, check=True).stdout.strip()
    assert parent == first.oid

    stub = published["stub"]
    assert stub.unknown == []
    preupload, commit = f"/api/models/{REPO}/preupload/main", f"/api/models/{REPO}/commit/main"
    assert stub.requests == [("POST", "/api/repos/create"), ("POST", preupload), ("POST", commit)] * 2


def test_stub_rejects_what_it_does_not_stub(tmp_path):
    import urllib.error
    import urllib.request

    with HubStub(tmp_path) as stub:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{stub.url}/api/whoami-v2", timeout=5)
        assert err.value.code == 404
        assert stub.unknown == [("GET", "/api/whoami-v2")]


DOWNLOAD = """
import json, sys
from huggingface_hub import hf_hub_download
repo, old = sys.argv[1], sys.argv[2]
print(json.dumps({
    "old_config": hf_hub_download(repo, "config.json", revision=old),
    "new_config": hf_hub_download(repo, "config.json", revision="main"),
    "new_weights": hf_hub_download(repo, "model.safetensors", revision="main"),
}))
"""


@pytest.mark.skipif(not OlahServer.available(), reason="olah (olah-cli) is not installed")
def test_olah_serves_every_revision_to_hf_hub_download(published, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    with OlahServer(published["root"], tmp_path / "olah") as olah:
        assert olah.endpoint == f"http://127.0.0.1:{olah.port}"
        # HF_ENDPOINT is read when huggingface_hub is imported, hence a fresh interpreter.
        env.update(HF_ENDPOINT=olah.endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
        proc = subprocess.run([sys.executable, "-c", DOWNLOAD, REPO, published["first"].oid], env=env,
                              capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = json.loads(proc.stdout.strip().splitlines()[-1])
    assert open(paths["old_config"], "rb").read() == OLD_CONFIG
    assert open(paths["new_config"], "rb").read() == NEW_CONFIG
    assert open(paths["new_weights"], "rb").read() == WEIGHTS
