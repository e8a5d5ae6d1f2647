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

import os
import stat
from pathlib import Path

import pytest

from tests.zoo_exports import make_checkpoint
from training.cli import main
from zoo.atomic import atomic_write_text

ROOT_DIR = str(Path(__file__).resolve().parents[1])
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
