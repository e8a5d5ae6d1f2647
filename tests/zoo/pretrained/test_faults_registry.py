"""Registry and publish paths stay inside their roots, the package is read-only unless a maintainer asks, user
registries compose with the package's, and publishing is all or nothing (issue 26, items 1, 8, 9 and 10).

Read-only folders are simulated by making ``os.open``/``os.mkdir`` raise ``EACCES`` for new files in them (the
tests run as root, which ignores permission bits); full disks by an ``ENOSPC`` from the registry's atomic write.
"""

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import zoo
from tests.helpers.zoo_exports import make_export
from training.cli import main
from training.release import publish as publish_module
from training.release.publish import publish
from zoo.errors import ZooError
from zoo.pretrained import weights_registry
from zoo.pretrained.weights_registry import PACKAGE_REGISTRY, open_registry

PACKAGE = Path(zoo.__file__).resolve().parent
REPO = "lab/yadim-tiny"
NAME_RULE = ("is not a weights entry name: use lower-case letters, digits, '_', '.' and '-', starting with a letter "
             "or digit (e.g. 'yadim.fashion_mnist')")
NO_REGISTRY = ("error: publish needs --registry FILE, a weights registry of your own to record the entry in (layer "
               "it on the package's with ZOO_REGISTRY); only maintainers record into the package's (--maintainer "
               "true)\n")


def tree(folder: Path) -> dict:
    """Every file under ``folder`` (relative path -> bytes) and every folder (-> None)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def package_files():
    """The package's weights folder as it was; put back after the test if the test changed it, so that a
    regression cannot leave the checkout broken (the test itself asserts that nothing changed)."""
    weights = PACKAGE / "_weights"
    before = tree(weights)
    yield before
    after = tree(weights)
    for rel in sorted(set(after) - set(before), reverse=True):
        path = weights / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    for rel, data in before.items():
        if data is not None and after.get(rel) != data:
            (weights / rel).parent.mkdir(parents=True, exist_ok=True)
            (weights / rel).write_bytes(data)


def own_registry(tmp_path: Path) -> Path:
    """A registry of one's own holding ``yadim.tiny``, its weights in the folder beside it."""
    reg = tmp_path / "weights" / "registry.json"
    publish(str(make_export(tmp_path / "exp0", seed=0)), package=True, registry=str(reg))
    return reg


def hub_head(hub: Path) -> str:
    git_dir = hub / "models" / REPO
    return subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "main"], capture_output=True, text=True,
                          check=True).stdout.strip()


def read_only(monkeypatch, folder: Path) -> None:
    """No file or folder can be created directly in ``folder`` any more (EACCES), as when it is read-only."""
    folder = folder.resolve()
    real_open, real_mkdir = os.open, os.mkdir

    def refused(path) -> bool:
        return Path(path).resolve().parent == folder

    def guarded_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and refused(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if refused(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


def test_publish_refuses_names_that_are_not_entry_names_before_writing(tmp_path, capsys):
    reg = own_registry(tmp_path)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("mine")
    folder = make_export(tmp_path / "exp1", seed=1)
    before = tree(tmp_path)
    assert main(["publish", str(folder), "--package", "true", "--registry", str(reg), "--name", "."]) == 2
    assert capsys.readouterr().err == f"error: --name '.' {NAME_RULE}\n"
    assert tree(tmp_path) == before
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "name": "../outside"}))
    before = tree(tmp_path)
    assert main(["publish", str(folder), "--package", "true", "--registry", str(reg)]) == 2
    assert capsys.readouterr().err == f"error: {folder}/config.json: name '../outside' {NAME_RULE}\n"
    assert tree(tmp_path) == before


def test_export_refuses_a_name_that_is_not_an_entry_name(tmp_path, capsys):
    make_export(tmp_path / "exp", seed=0)
    before = tree(tmp_path)
    assert main(["export", "--ckpt", str(tmp_path / "exp.seed0.ckpt"), "--out", str(tmp_path / "out"),
                 "--name", "../outside"]) == 2
    assert capsys.readouterr().err == f"error: --name '../outside' {NAME_RULE}\n"
    assert tree(tmp_path) == before


def test_export_into_the_package_is_refused(tmp_path, capsys, package_files):
    make_export(tmp_path / "exp", seed=0)
    out = PACKAGE / "_weights" / "yadim.fashion_mnist"
    assert main(["export", "--ckpt", str(tmp_path / "exp.seed0.ckpt"), "--out", str(out), "--overwrite", "true"]) == 2
    assert capsys.readouterr().err == (
        f"error: --out {out} is inside the installed package ({PACKAGE}); write to a file of your own, or pass "
        "--maintainer true (or set ZOO_MAINTAINER=1) to change what ships with the zoo\n")
    assert tree(PACKAGE / "_weights") == package_files


def test_registry_folders_and_hub_roots_must_stay_inside_the_registry_folder(tmp_path, fmnist_dir, capsys):
    reg = own_registry(tmp_path)
    shutil.copytree(reg.parent / "yadim.tiny", tmp_path / "victim")  # loads fine: same files, same sha256
    data = json.loads(reg.read_text())
    data["entries"]["yadim.tiny"]["source"]["folder"] = "../victim"
    reg.write_text(json.dumps(data))
    before = tree(tmp_path)
    expected = (f"{reg}: entry 'yadim.tiny': source.folder '../victim' must name a folder inside the registry's "
                f"folder {reg.parent.resolve()}")
    with pytest.raises(ZooError) as err:
        zoo.load_encoder("yadim.tiny", registry=reg)
    assert str(err.value) == expected
    assert main(["evaluate", "--encoder", "yadim.tiny", "--registry", str(reg), "--data", "fashion_mnist",
                 "--root", str(fmnist_dir), "--k", "5", "--record", str(reg)]) == 2
    assert capsys.readouterr().err == f"error: {expected}\n"
    assert tree(tmp_path) == before  # the victim's card was not rewritten
    for root in ("..", str(tmp_path / "hub")):
        data["entries"]["yadim.tiny"]["source"] = {"kind": "local-hub", "root": root, "repo_id": REPO,
                                                   "revision": "a" * 40}
        reg.write_text(json.dumps(data))
        with pytest.raises(ZooError) as err:
            open_registry(reg)
        assert str(err.value) == (f"{reg}: entry 'yadim.tiny': source.root {root!r} must name a folder inside the "
                                  f"registry's folder {reg.parent.resolve()}")


def test_publish_to_a_local_hub_outside_the_registry_folder_is_refused_before_the_commit(tmp_path, capsys):
    folder = make_export(tmp_path / "exp", seed=0)
    reg = tmp_path / "lab" / "registry.json"
    assert main(["publish", str(folder), "--repo-id", REPO, "--to", str(tmp_path / "hub"), "--registry",
                 str(reg)]) == 2
    assert capsys.readouterr().err == (f"error: --to {str(tmp_path / 'hub')!r} must name a folder inside the "
                                       f"registry's folder {reg.parent.resolve()} (a registry records its local hubs "
                                       "relative to itself: put the hub inside it)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "exp.seed0.ckpt"]


def test_a_package_entry_of_ones_own_registry_is_not_said_to_be_inside_the_package(tmp_path):
    reg = own_registry(tmp_path)
    folder = reg.parent / "yadim.tiny"
    card = (folder / "README.md").read_text()
    assert "inside the contrastive-zoo package" not in card
    assert f"Stored beside the weights registry `{reg}` (folder `yadim.tiny/`)" in card
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ZooError) as err:
        zoo.load_encoder("yadim.tiny", registry=reg)
    assert str(err.value).startswith(f"yadim.tiny (in the folder {folder} beside its weights registry): "
                                     "model.safetensors has sha256 ")


def test_publish_never_writes_into_the_package_without_the_maintainer_flag(tmp_path, capsys, package_files):
    folder = make_export(tmp_path / "exp", seed=0)
    hub = tmp_path / "hub"
    assert main(["publish", str(folder), "--repo-id", REPO, "--to", str(hub)]) == 2
    assert capsys.readouterr().err == NO_REGISTRY
    assert main(["publish", str(folder), "--package", "true"]) == 2
    assert capsys.readouterr().err == NO_REGISTRY
    assert main(["publish", str(folder), "--package", "true", "--registry", str(PACKAGE_REGISTRY)]) == 2
    assert capsys.readouterr().err == (
        f"error: --registry {PACKAGE_REGISTRY} is inside the installed package ({PACKAGE}); write to a file of "
        "your own, or pass --maintainer true (or set ZOO_MAINTAINER=1) to change what ships with the zoo\n")
    assert not hub.exists()
    assert tree(PACKAGE / "_weights") == package_files


def test_maintainers_publish_into_the_package_with_the_flag(tmp_path, monkeypatch, capsys, package_files):
    """A folder of the package's layout stands in for the installed package, so the real one is not touched."""
    fake = tmp_path / "zoo"
    registry = fake / "_weights" / "registry.json"
    monkeypatch.setattr(weights_registry, "PACKAGE_DIR", fake)
    monkeypatch.setattr(weights_registry, "PACKAGE_REGISTRY", registry)
    first, second = make_export(tmp_path / "exp0", seed=0), make_export(tmp_path / "exp1", seed=1)
    assert main(["publish", str(first), "--package", "true"]) == 2
    assert capsys.readouterr().err == NO_REGISTRY
    assert main(["publish", str(first), "--package", "true", "--maintainer", "true"]) == 0
    shipped = (fake / "_weights" / "yadim.tiny" / "model.safetensors").read_bytes()
    assert shipped == (first / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["publish", str(second), "--package", "true", "--registry", str(registry)]) == 2  # replacing
    assert capsys.readouterr().err == (
        f"error: --registry {registry} is inside the installed package ({fake}); write to a file of your own, or "
        "pass --maintainer true (or set ZOO_MAINTAINER=1) to change what ships with the zoo\n")
    assert (fake / "_weights" / "yadim.tiny" / "model.safetensors").read_bytes() == shipped
    monkeypatch.setenv("ZOO_MAINTAINER", "1")
    assert main(["publish", str(second), "--package", "true", "--registry", str(registry)]) == 0
    assert (fake / "_weights" / "yadim.tiny" / "model.safetensors").read_bytes() == \
        (second / "model.safetensors").read_bytes()
    assert tree(PACKAGE / "_weights") == package_files


def test_a_user_registry_default_overrides_the_packages_and_names_stay_unique(tmp_path, monkeypatch):
    reg = own_registry(tmp_path)
    assert json.loads(reg.read_text())["defaults"] == {"yadim": "yadim.tiny"}  # publish records a default
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    registry = open_registry()
    assert registry.get("yadim").name == "yadim.tiny"  # the later registry's default wins
    assert registry.get("moco_v2").name == "moco_v2.imagenet"  # the package's other defaults stand
    assert zoo.load_encoder("yadim.fashion_mnist").zoo_source["entry"] == "yadim.fashion_mnist"
    twin = tmp_path / "twin.json"
    shutil.copy(reg, twin)
    monkeypatch.setenv("ZOO_REGISTRY", os.pathsep.join([str(reg), str(twin)]))
    with pytest.raises(ZooError) as err:
        open_registry()
    assert str(err.value) == f"weights entry 'yadim.tiny' is defined in both {reg} and {twin}"


def test_a_registry_that_cannot_be_written_is_refused_before_anything_is_published(tmp_path, monkeypatch, capsys):
    lab = tmp_path / "lab"
    reg, hub = lab / "registry.json", lab / "hub"
    first = publish(str(make_export(tmp_path / "exp0", seed=0)), repo_id=REPO, to=str(hub), registry=str(reg))
    folder = make_export(tmp_path / "exp1", seed=1)
    before = tree(lab)
    uploads = []
    monkeypatch.setattr(publish_module, "_upload_to_hub", lambda *args: uploads.append(args) or "f" * 40)
    read_only(monkeypatch, lab)
    refused = (f"error: cannot write the weights registry {reg}: Permission denied; nothing was published (choose "
               "a --registry FILE in a folder you can write)\n")
    for destination in (["--to", str(hub)], ["--package", "true"], []):
        repo = [] if destination[:1] == ["--package"] else ["--repo-id", REPO]
        assert main(["publish", str(folder), *repo, *destination, "--registry", str(reg)]) == 2
        assert capsys.readouterr().err == refused
    assert tree(lab) == before and hub_head(hub) == first["revision"] and uploads == []


def test_a_registry_write_failing_after_the_commit_undoes_what_can_be_undone(tmp_path, monkeypatch, capsys):
    lab = tmp_path / "lab"
    reg, hub = lab / "registry.json", lab / "hub"
    first = publish(str(make_export(tmp_path / "exp0", seed=0)), repo_id=REPO, to=str(hub), registry=str(reg))
    own = own_registry(tmp_path)
    folder = make_export(tmp_path / "exp1", seed=1)
    registry_text, shipped = reg.read_bytes(), tree(own.parent)

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(weights_registry, "atomic_write_text", full_disk)
    assert main(["publish", str(folder), "--repo-id", REPO, "--to", str(hub), "--registry", str(reg)]) == 2
    assert capsys.readouterr().err == (f"error: cannot write the weights registry {reg}: No space left on device; "
                                       f"the commit was undone ({REPO} main is back at {first['revision']}), "
                                       "nothing was published\n")
    assert reg.read_bytes() == registry_text and hub_head(hub) == first["revision"]
    assert main(["publish", str(folder), "--package", "true", "--registry", str(own)]) == 2
    assert capsys.readouterr().err == (f"error: cannot write the weights registry {own}: No space left on device; "
                                       f"{own.parent / 'yadim.tiny'} was put back as it was, nothing was "
                                       "published\n")
    assert tree(own.parent) == shipped
    monkeypatch.setattr(publish_module, "_upload_to_hub", lambda *args: "f" * 40)
    assert main(["publish", str(folder), "--repo-id", REPO, "--registry", str(reg)]) == 2
    assert capsys.readouterr().err == (f"error: cannot write the weights registry {reg}: No space left on device; "
                                       f"the Hub repository {REPO} keeps its new commit {'f' * 40}: publish again "
                                       "once the registry can be written\n")
    assert reg.read_bytes() == registry_text


def test_evaluate_refuses_a_record_target_it_cannot_write_before_evaluating(tmp_path, monkeypatch, capsys):
    """Issue 26, item 4: the whole evaluation ran, then its result was lost in a traceback. The data root below
    does not exist: an evaluation that started would fail on it, with another message."""
    reg = own_registry(tmp_path)
    before = reg.read_bytes()
    read_only(monkeypatch, reg.parent)
    data = ["--data", "fashion_mnist", "--root", str(tmp_path / "no-data"), "--k", "5"]
    assert main(["evaluate", "--encoder", "yadim.tiny", "--registry", str(reg), *data, "--record", str(reg)]) == 2
    assert capsys.readouterr().err == f"error: cannot write the weights registry {reg}: Permission denied\n"
    folder = tmp_path / "export"
    shutil.copytree(reg.parent / "yadim.tiny", folder)
    read_only(monkeypatch, folder)
    assert main(["evaluate", "--encoder", str(folder), *data, "--record", str(folder)]) == 2
    assert capsys.readouterr().err == (f"error: --record {folder}: cannot write in {folder} (Permission denied); "
                                       "nothing was evaluated\n")
    assert reg.read_bytes() == before and not (tmp_path / "no-data").exists()
