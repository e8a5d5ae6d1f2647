"""A local directory hub: one bare git repository per model, laid out like the Hugging Face Hub.

``ROOT/models/ORG/NAME`` is a git repository whose commits are revisions, exactly what the Hub stores. Air-gapped
teams publish into such a folder with ``python -m training publish DIR --to ROOT``; ``zoo.load_encoder`` reads
it directly (``git cat-file``), and olah (``mirrors-path = ROOT``) serves the same folder to any Hugging Face
client through ``HF_ENDPOINT``. Commits are made with git plumbing (``hash-object``, ``mktree``, ``commit-tree``)
and land with one compare-and-swap ``update-ref``, so a reader sees either the old revision or the new one.

A commit is all or nothing, as with the Hub: a new repository is made in a folder beside its place and renamed into
place with its first commit, and the objects of a commit to an existing one are written to a quarantine folder
(git's alternates: the repository's objects stay readable) and moved in only once all of them are written. A
failure (a full disk, a read-only hub, git dying) leaves no empty repository and no stray or temporary objects.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from zoo.atomic import temp_dir_beside, write_error
from zoo.errors import ZooError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# a branch, tag or sha: names of letters, digits, '.', '_', '+', '-' (none starting with '.' or '-'), joined by '/'
REVISION = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*(/[A-Za-z0-9_+][A-Za-z0-9._+-]*)*$")
_LOOSE_OBJECT = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{38,62}$")
BRANCH = "main"
_IDENTITY = {"GIT_AUTHOR_NAME": "contrastive-zoo", "GIT_AUTHOR_EMAIL": "zoo@localhost",
             "GIT_COMMITTER_NAME": "contrastive-zoo", "GIT_COMMITTER_EMAIL": "zoo@localhost"}


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or ".." in repo_id:
        raise ZooError(f"repo id {repo_id!r} is not of the form ORG/NAME (letters, digits, '.', '_', '-')")
    return repo_id


def check_revision(revision: str) -> str:
    """A revision is used in URLs, cache paths and git commands: refuse anything but a branch, tag or sha name."""
    if not isinstance(revision, str) or len(revision) > 255 or not REVISION.match(revision) or ".." in revision:
        raise ZooError(f"revision {revision!r} is not a branch, tag or commit sha (names of letters, digits, '.', "
                       "'_', '+', '-', joined by '/', with no '..'); give one such as 'main' or 'v1.0'")
    return revision


def repo_path(root: str | os.PathLike, repo_id: str) -> Path:
    return Path(root) / "models" / check_repo_id(repo_id)


class GitFailed(ZooError):
    """A git command of a commit failed (its first line of stderr, or the signal that killed it)."""


def _git(git_dir: Path, *args: str, data: Optional[bytes] = None, objects: Optional[Path] = None) -> bytes:
    """Run git on ``git_dir``; ``objects``: write new objects there, reading the repository's own as well."""
    if shutil.which("git") is None:
        raise ZooError("the local directory hub needs the git command, which is not installed")
    env = {**os.environ, **_IDENTITY, "GIT_DIR": str(git_dir)}
    if objects is not None:
        env.update(GIT_OBJECT_DIRECTORY=str(objects), GIT_ALTERNATE_OBJECT_DIRECTORIES=str(git_dir / "objects"))
    proc = subprocess.run(["git", *args], input=data, capture_output=True, env=env)
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitFailed(f"git {args[0]} failed: {said[0] if said else f'exit status {proc.returncode}'}")
    return proc.stdout


def _head(git_dir: Path) -> Optional[str]:
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{BRANCH}"],
                         capture_output=True, env={**os.environ, "GIT_DIR": str(git_dir)})
    return out.stdout.decode().strip() or None


def head(root: str | os.PathLike, repo_id: str) -> Optional[str]:
    """The commit ``main`` points at, or None when the repository does not exist yet or has no commit."""
    git_dir = repo_path(root, repo_id)
    return _head(git_dir) if (git_dir / "HEAD").is_file() else None


def reset_branch(root: str | os.PathLike, repo_id: str, commit: str, parent: Optional[str]) -> None:
    """Undo ``commit`` on ``main``: point the branch back at ``parent`` (delete it when ``parent`` is None), only
    if it still points at ``commit`` (compare-and-swap, like the commit itself). The commit's objects stay,
    unreachable, as after any discarded commit."""
    git_dir = repo_path(root, repo_id)
    if parent is None:
        _git(git_dir, "update-ref", "-d", f"refs/heads/{BRANCH}", commit)
    else:
        _git(git_dir, "update-ref", f"refs/heads/{BRANCH}", parent, commit)


def commit_files(root: str | os.PathLike, repo_id: str, files: Mapping[str, bytes], message: str,
                 parent: Optional[str] = None) -> str:
    """Commit ``files`` (flat names -> bytes) on top of ``main`` and return the new commit sha.

    Files of the parent revision that are not in ``files`` are kept, as with ``HfApi.upload_folder``. When
    ``parent`` is given, the commit only lands if ``main`` still points there (the Hub's ``parentCommit``).
    All or nothing (see the module docstring); a failure is one ZooError line.
    """
    git_dir = repo_path(root, repo_id)
    for name in files:
        if not name or "/" in name or name.startswith("."):
            raise ZooError(f"{repo_id}: file name {name!r} is not allowed (flat, visible names only)")
    if git_dir.is_dir() and not (git_dir / "HEAD").is_file() and any(git_dir.iterdir()):
        raise ZooError(f"{git_dir} is in the place of {repo_id} but is not a git repository (no HEAD); move it away")
    action = f"cannot publish {repo_id} into the local hub {root}"
    try:
        if (git_dir / "HEAD").is_file():
            return _commit_to_existing(git_dir, repo_id, files, message, parent)
        if parent is not None:
            raise ZooError(f"{repo_id}: main is at None, not at the expected parent {parent}")
        return _create_with_commit(git_dir, repo_id, files, message)
    except OSError as err:
        raise write_error(err, action, root) from None
    except GitFailed as err:
        raise ZooError(f"{action}: {err}; nothing was changed") from None


def _create_with_commit(git_dir: Path, repo_id: str, files: Mapping[str, bytes], message: str) -> str:
    """A new repository holding one commit of ``files``, assembled beside ``git_dir`` and renamed into place."""
    created = [folder for folder in git_dir.parents if not folder.exists()]  # removed again on failure
    staging = None
    try:
        staging = temp_dir_beside(git_dir)
        _git(staging, "init", "--quiet", "--bare", f"--initial-branch={BRANCH}")
        commit = _commit(staging, None, files, message)
        _git(staging, "update-ref", f"refs/heads/{BRANCH}", commit, "0" * 40)
        try:
            os.rename(staging, git_dir)  # onto nothing (or an empty folder)
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            raise ZooError(f"{repo_id} was created in the local hub by another publisher meanwhile; publish "
                           "again to commit on top of it") from None
        return commit
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass
        raise


def _commit_to_existing(git_dir: Path, repo_id: str, files: Mapping[str, bytes], message: str,
                        parent: Optional[str]) -> str:
    """Commit on top of ``main``: objects written in quarantine, moved in, then one compare-and-swap of ``main``."""
    head = _head(git_dir)
    if parent is not None and parent != head:
        raise ZooError(f"{repo_id}: main is at {head}, not at the expected parent {parent}")
    quarantine = temp_dir_beside(git_dir)
    try:
        commit = _commit(git_dir, head, files, message, objects=quarantine)
        _move_objects(quarantine, git_dir / "objects")
    finally:
        shutil.rmtree(quarantine, ignore_errors=True)
    # as in git's own receive-pack, the objects are in before the ref moves: should main have moved meanwhile,
    # they stay unreferenced (whole objects, which git gc removes) and this commit is refused
    _git(git_dir, "update-ref", f"refs/heads/{BRANCH}", commit, head or "0" * 40)
    return commit


def _commit(git_dir: Path, head: Optional[str], files: Mapping[str, bytes], message: str,
            objects: Optional[Path] = None) -> str:
    """Write the blobs, tree and commit of ``files`` on top of ``head`` (into ``objects`` when given); the sha."""
    entries: Dict[str, str] = {}
    if head:
        for line in _git(git_dir, "ls-tree", head).decode().splitlines():
            meta, name = line.split("\t", 1)
            entries[name] = meta
    for name, data in files.items():
        blob = _git(git_dir, "hash-object", "-w", "--stdin", data=bytes(data), objects=objects).decode().strip()
        entries[name] = f"100644 blob {blob}"
    tree_input = "".join(f"{meta}\t{name}\n" for name, meta in sorted(entries.items())).encode()
    tree = _git(git_dir, "mktree", data=tree_input, objects=objects).decode().strip()
    args = ["commit-tree", tree, "-m", message] + (["-p", head] if head else [])
    return _git(git_dir, *args, objects=objects).decode().strip()


def _move_objects(quarantine: Path, objects: Path) -> None:
    """Move the loose objects of ``quarantine`` into the repository's ``objects`` folder; on failure, take back
    those already moved (objects the repository had already are left alone)."""
    moved: List[Path] = []
    try:
        for path in sorted(quarantine.glob("*/*")):
            relative = path.relative_to(quarantine).as_posix()
            target = objects / relative
            if not _LOOSE_OBJECT.match(relative) or target.exists():
                continue
            if not target.parent.is_dir():
                target.parent.mkdir()
                target.parent.chmod(stat.S_IMODE(objects.stat().st_mode))  # as git's own (core.sharedRepository)
            os.rename(path, target)
            moved.append(target)
    except BaseException:
        for target in moved:
            target.unlink(missing_ok=True)
        raise


def resolve_revision(root: str | os.PathLike, repo_id: str, revision: Optional[str] = None) -> str:
    """The commit sha of ``revision`` (a branch, tag or sha; default ``main``)."""
    git_dir = repo_path(root, repo_id)
    if not (git_dir / "HEAD").is_file():
        raise ZooError(f"{repo_id} is not in the local hub {root} (no repository at {git_dir})")
    rev = check_revision(revision or BRANCH)
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True,
                         env={**os.environ, "GIT_DIR": str(git_dir)})
    sha = out.stdout.decode().strip()
    if out.returncode != 0 or not sha:
        raise ZooError(f"revision {rev!r} not found in {repo_id} (local hub {root})")
    return sha


def read_file(root: str | os.PathLike, repo_id: str, revision: str, filename: str) -> bytes:
    """The bytes of ``filename`` at ``revision``."""
    sha = resolve_revision(root, repo_id, revision)
    git_dir = repo_path(root, repo_id)
    out = subprocess.run(["git", "cat-file", "blob", f"{sha}:{filename}"], capture_output=True,
                         env={**os.environ, "GIT_DIR": str(git_dir)})
    if out.returncode != 0:
        raise ZooError(f"{repo_id}@{sha[:12]} has no file {filename!r} (local hub {root})")
    return out.stdout
