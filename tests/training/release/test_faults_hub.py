"""Faults on the way to and from hubs, and in the small loaders (issue 26, items 6, 7, 9, 11, 12).

Files follow the umask; an unreachable Hugging Face Hub fails fast in one line; revisions cannot climb out of a
path; a full disk or a read-only folder during ``export`` or a local-hub ``publish`` is one line and leaves the disk
as it was; non-finite weights, damaged cards and incomplete configs are refused in one line.

How faults are made: full disks by an injected ``OSError(errno.ENOSPC)`` (safetensors' ``save_file``), or, for git,
by a ``subprocess.run`` that answers a ``hash-object`` as git does on a full disk (exit 128, git's message) and
leaves a temporary object file behind, as git dying mid-write does; read-only folders by an ``os.mkdir`` that
raises ``PermissionError(errno.EACCES)`` under the hub (tests run as root, which permission bits do not stop).
Unreachable Hubs are real sockets on 127.0.0.1: one that accepts and never answers (``SilentServer``) and a port
where nothing listens (refused); huggingface_hub reads ``HF_ENDPOINT`` at import, so those loads run in fresh
processes.
"""

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tests.helpers.hub_servers import SilentServer, free_port
from tests.helpers.zoo_exports import make_checkpoint, make_export
from training.cli import main
from zoo.atomic import atomic_write_text
from zoo.errors import ZooError
from zoo.pretrained import local_hub

ROOT_DIR = str(Path(__file__).resolve().parents[3])
REPO = "zoo/yadim-tiny"


# ---------------------------------------------------------------------------------------------------------- umask
@pytest.fixture
def umask():
    """Set the process umask for one test (``umask(0o022)``), restoring the old one afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def modes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}


def test_files_written_by_export_publish_and_the_registry_follow_the_umask(tmp_path, umask):
    export, hub, registry = tmp_path / "export", tmp_path / "hub", tmp_path / "registry.json"
    ckpt = make_checkpoint(tmp_path / "tiny.ckpt")
    assert main(["export", "--ckpt", str(ckpt), "--out", str(export), "--name", "yadim.tiny"]) == 0
    for message in ("first", "second"):  # a new repository, then a commit to an existing one
        assert main(["publish", str(export), "--repo-id", REPO, "--to", str(hub), "--registry", str(registry),
                     "--message", message]) == 0
    assert set(modes(export).values()) == {0o755, 0o644}
    assert modes(export)["."] == 0o755 and modes(export)["model.safetensors"] == 0o644
    assert stat.S_IMODE(registry.stat().st_mode) == 0o644
    hub_modes = modes(hub)  # git's own files vary (objects 0444, hook samples 0755): readable by all, writable by one
    assert {p: m for p, m in hub_modes.items() if m & 0o066 != 0o044} == {}
    assert {m for p, m in hub_modes.items() if (hub / p).is_dir()} == {0o755}


def test_atomic_writes_get_the_umask_of_a_new_file_or_the_mode_of_the_file_they_replace(tmp_path, umask):
    umask(0o002)  # a team's umask: group-writable
    atomic_write_text(tmp_path / "new.json", "{}\n")
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o664
    kept = tmp_path / "kept.json"
    kept.write_text("old\n")
    kept.chmod(0o640)
    atomic_write_text(kept, "new\n")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "new\n"


# ------------------------------------------------------------------------------------------------ unreachable Hub
@pytest.fixture
def unreachable(request):
    """The URL of an unreachable endpoint, and what our error says about it: one that never answers, or a refused
    port."""
    if request.param == "silent":
        with SilentServer() as server:
            yield server.url, "no answer within 3 s"
    else:
        yield f"http://127.0.0.1:{free_port()}", "[Errno 111] Connection refused"


LOAD_SCRIPT = """
import sys, time
import huggingface_hub.file_download, zoo
start = time.perf_counter()
try:
    zoo.load_encoder("hf-hub:zoo/never-cached")
except zoo.ZooError as err:
    print(f"{time.perf_counter() - start:.2f}")
    print(err)
"""


@pytest.mark.parametrize("unreachable", ["silent", "refused"], indirect=True)
def test_an_unreachable_hub_fails_within_seconds_in_one_line(unreachable, tmp_path):
    url, reason = unreachable
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HF_")}, "HF_ENDPOINT": url,
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, "-c", LOAD_SCRIPT], env=env, cwd=ROOT_DIR, capture_output=True, text=True,
                          timeout=120)  # (huggingface_hub alone took minutes)
    seconds, message = proc.stdout.strip().splitlines()
    assert message == (f"cannot reach {url} ({reason}) to download config.json of zoo/never-cached@main, and it is "
                       f"not in the Hugging Face cache ({tmp_path / 'hf-home' / 'hub'}): check the network and "
                       "HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to work from the cache without waiting for the network")
    assert float(seconds) < 5


@pytest.mark.parametrize("unreachable", ["silent", "refused"], indirect=True)
def test_publishing_to_an_unreachable_hub_is_one_line_and_records_nothing(unreachable, tmp_path, monkeypatch,
                                                                          capsys):
    from huggingface_hub import constants

    url, reason = unreachable
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)  # what huggingface_hub read from HF_ENDPOINT at its import
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    export, registry = make_export(tmp_path / "export"), tmp_path / "registry.json"
    assert main(["publish", str(export), "--repo-id", REPO, "--registry", str(registry)]) == 2
    assert capsys.readouterr().err == (f"error: cannot reach {url} ({reason}) to publish {REPO}; nothing was "
                                       "published: check the network and HF_ENDPOINT\n")
    assert not registry.exists()


# ------------------------------------------------------------------------------------------------------ revisions
@pytest.mark.parametrize("spec, revision, bad", [
    ("hf-hub:zoo/x@../../../etc", None, "../../../etc"),
    ("hf-hub:zoo/x@main/../../x", None, "main/../../x"),
    ("hf-hub:zoo/x", "../x", "../x"),
    ("hf-hub:zoo/x@--output=x", None, "--output=x"),
])
def test_a_revision_that_is_not_a_branch_tag_or_sha_is_refused_before_any_path_is_built(
        spec, revision, bad, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # nothing may reach a network whatever happens
    with pytest.raises(ZooError) as err:
        zoo.load_encoder(spec, revision=revision)
    assert str(err.value) == (f"revision {bad!r} is not a branch, tag or commit sha (names of letters, digits, '.', "
                              "'_', '+', '-', joined by '/', with no '..'); give one such as 'main' or 'v1.0'")


def test_a_local_hub_refuses_a_revision_that_is_not_a_branch_tag_or_sha(tmp_path):
    local_hub.commit_files(tmp_path / "hub", REPO, {"README.md": b"card\n"}, "first")
    with pytest.raises(ZooError, match=r"^revision '--all' is not a branch, tag or commit sha "):
        local_hub.read_file(tmp_path / "hub", REPO, "--all", "README.md")
    assert local_hub.read_file(tmp_path / "hub", REPO, "main", "README.md") == b"card\n"


# ---------------------------------------------------------------------------------------------- full disks, export
def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (with its bytes) and every folder: what a failed command must leave as it was."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_export_is_one_line_and_keeps_the_old_export(tmp_path, monkeypatch, capsys):
    ckpt, out = make_checkpoint(tmp_path / "tiny.ckpt"), tmp_path / "out" / "enc"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    before = snapshot(tmp_path / "out")
    capsys.readouterr()
    monkeypatch.setattr("safetensors.torch.save_file", no_space)
    for target, extra in ((out, ["--overwrite", "true"]), (tmp_path / "out" / "fresh", [])):
        assert main(["export", "--ckpt", str(ckpt), "--out", str(target), *extra]) == 2
        assert capsys.readouterr().err == (f"error: cannot export to {target}: no space left on the device of "
                                           f"{tmp_path / 'out'}; nothing was written: free some space and try again\n")
        assert snapshot(tmp_path / "out") == before  # the old export intact, no fresh one, no staging folder


# --------------------------------------------------------------------------------- full disks, read-only local hub
def publish_args(export, hub, registry):
    return ["publish", str(export), "--repo-id", REPO, "--to", str(hub), "--registry", str(registry)]


def git_on_a_full_disk(monkeypatch):
    """``subprocess.run`` as seen by git commands: the second ``hash-object`` (the weights) fails as git does on a
    full disk, leaving its temporary object file where it was writing; everything else runs for real."""
    real_run, calls = subprocess.run, []

    def run(args, **kwargs):
        if args[:2] == ["git", "hash-object"]:
            calls.append(args)
            if len(calls) == 2:
                env = kwargs["env"]
                objects = Path(env.get("GIT_OBJECT_DIRECTORY") or Path(env["GIT_DIR"]) / "objects")
                (objects / "5e").mkdir(parents=True, exist_ok=True)
                (objects / "5e" / "tmp_obj_Q7Ab1c").write_bytes(b"x\x01half an object")
                return subprocess.CompletedProcess(args, 128, b"", b"error: unable to write loose object file: No "
                                                   b"space left on device\nfatal: Unable to add stdin to database\n")
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)


def read_only_hub(monkeypatch, hub):
    """``os.mkdir`` refuses under ``hub`` as a read-only folder does (root ignores permission bits)."""
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).parent.is_dir() and Path(path).resolve().is_relative_to(hub.resolve()):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)  # (a missing parent fails first, as it does for real)

    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("repository", ["new", "existing"])
def test_a_full_disk_during_a_local_hub_commit_leaves_no_repository_and_no_objects(repository, tmp_path,
                                                                                    monkeypatch, capsys):
    export, hub, registry = make_export(tmp_path / "export"), tmp_path / "hub", tmp_path / "registry.json"
    if repository == "existing":
        assert main(publish_args(export, hub, registry)) == 0
        export = make_export(tmp_path / "export2", seed=1)  # other weights: new objects to write
    before, registry_before = snapshot(hub), snapshot(tmp_path / "registry.json")
    capsys.readouterr()
    git_on_a_full_disk(monkeypatch)
    assert main(publish_args(export, hub, registry)) == 2
    assert snapshot(hub) == before  # no empty repository, no object, no temporary file
    assert not hub.exists() or repository == "existing"
    assert snapshot(tmp_path / "registry.json") == registry_before
    assert capsys.readouterr().err == (f"error: cannot publish {REPO} into the local hub {hub}: git hash-object "
                                       "failed: error: unable to write loose object file: No space left on device; "
                                       "nothing was changed\n")


@pytest.mark.parametrize("repository", ["new", "existing"])
def test_a_read_only_local_hub_is_one_line_and_unchanged(repository, tmp_path, monkeypatch, capsys):
    export, hub, registry = make_export(tmp_path / "export"), tmp_path / "hub", tmp_path / "registry.json"
    hub.mkdir()
    if repository == "existing":
        assert main(publish_args(export, hub, registry)) == 0
    before, registry_before = snapshot(hub), snapshot(registry)
    capsys.readouterr()
    read_only_hub(monkeypatch, hub)
    assert main(publish_args(export, hub, registry)) == 2
    folder = hub / "models" / "zoo" if repository == "existing" else hub  # where the first folder is made
    assert capsys.readouterr().err == (f"error: cannot publish {REPO} into the local hub {hub}: {folder} is not "
                                       "writable (Permission denied); nothing was changed: check its permissions or "
                                       "write elsewhere\n")
    assert snapshot(hub) == before and snapshot(registry) == registry_before


# ------------------------------------------------------------------------------------ weights, cards and configs
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_when_loading_and_when_exporting(value, tmp_path, capsys):
    folder = make_export(tmp_path / "export")
    weights = load_file(folder / "model.safetensors")
    key = sorted(weights)[0]
    weights[key] = torch.full_like(weights[key], value)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ZooError) as err:
        zoo.load_encoder(folder)
    assert str(err.value) == (f"{folder}: model.safetensors holds NaN or infinite values (in {key}): these weights "
                              "are broken, e.g. by a training run that diverged; export them again from a good "
                              "checkpoint")

    ckpt = torch.load(make_checkpoint(tmp_path / "diverged.ckpt"), weights_only=True)
    ckpt["state_dict"] = {k: torch.full_like(v, value) if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "diverged.ckpt")
    out = tmp_path / "diverged"
    assert main(["export", "--ckpt", str(tmp_path / "diverged.ckpt"), "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert message.startswith(f"error: the encoder to export to {out} holds NaN or infinite values (in ")
    assert message.endswith(" more): these weights are broken, e.g. by a training run that diverged; export them "
                            "again from a good checkpoint\n") and message.count("\n") == 1
    assert not out.exists()


def test_a_card_that_is_not_text_is_one_line(tmp_path):
    folder = make_export(tmp_path / "export")
    (folder / "README.md").write_bytes(b"---\nlicense: apache-2.0\n---\n\xff\xfe damaged")
    with pytest.raises(ZooError) as err:
        zoo.get_card(folder)
    assert str(err.value) == (f"{folder}: README.md is not UTF-8 text (byte 28 cannot be decoded), so it is not a "
                              "model card; the file is damaged: publish or export it again")


def test_an_incomplete_input_config_is_one_line_naming_the_field(tmp_path):
    with pytest.raises(ZooError) as err:
        zoo.eval_transform({"input": {"size": [28, 28]}})
    assert str(err.value) == "eval_transform's config: input.channels is missing"
    with pytest.raises(ZooError) as err:
        zoo.eval_transform({"input": {"channels": 1, "size": [28, 28], "mean": [0.5], "std": "wide"}})
    assert str(err.value) == "eval_transform's config: input.std must be 1 numbers, got 'wide'"

    registry = tmp_path / "registry.json"
    from training.release.publish import publish

    publish(str(make_export(tmp_path / "export")), repo_id=REPO, to=str(tmp_path / "hub"), registry=str(registry))
    data = json.loads(registry.read_text())
    data["entries"]["yadim.tiny"]["input"] = {"channels": 1}
    registry.write_text(json.dumps(data))
    with pytest.raises(ZooError) as err:
        zoo.eval_transform("yadim.tiny", registry=registry)
    assert str(err.value) == "weights registry entry yadim.tiny: input.size is missing"


# ------------------------------------------------------------------------------------------- the demo's download
@pytest.mark.parametrize("unreachable, reason", [
    ("silent", "timed out"),
    ("refused", "Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno 111] Connection refused>"),
], indirect=["unreachable"])
def test_a_failed_dataset_download_ends_the_demo_in_one_line(unreachable, reason, tmp_path, monkeypatch, capsys):
    from torchvision.datasets import FashionMNIST

    from training import demo

    monkeypatch.setattr(FashionMNIST, "mirrors", [f"{unreachable[0]}/"])
    monkeypatch.setattr("training.pretrain.data.DOWNLOAD_TIMEOUT_S", 1.0)
    root = tmp_path / "data"
    assert demo.main(["--out", str(tmp_path / "demo"), "--data-root", str(root), "--download"]) == 2
    assert capsys.readouterr().err == (f"error: downloading Fashion-MNIST into {root} failed: {reason}; check the "
                                       "network, or fetch the files by hand and pass their folder as --data.root "
                                       "DIR\n")
